"""Records and the dataset object; the import-time promise of kgmm.data."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from kgmm.data import CaptionDataset, RetrievalRecord, VQADataset, VQARecord


def _record(**kw: object) -> VQARecord:
    base: dict[str, object] = {"question_id": 1, "image_id": 7, "question": "What is it?"}
    return VQARecord(**{**base, **kw})  # type: ignore[arg-type]


def test_sequences_become_tuples_and_paths_paths() -> None:
    rec = _record(answers=["a", "b"], answer_entity_ids=["wn:dog.n.01"], image_path="x/y.jpg")
    assert rec.answers == ("a", "b")
    assert rec.answer_entity_ids == ("wn:dog.n.01",)
    assert rec.image_path == Path("x/y.jpg")
    assert rec.extra == {}


def test_defaults_mean_unknown() -> None:
    rec = _record()
    assert rec.answers == () and rec.answer_entity_ids == () and rec.image_path is None
    assert rec.question_type is None and rec.multiple_choice_answer is None


def test_frozen_hashable_with_extra_and_picklable() -> None:
    rec = _record(answers=("yes",) * 10, extra={"program": [{"op": "scene"}]})
    with pytest.raises(AttributeError):
        rec.question = "other"  # type: ignore[misc]
    assert hash(rec) == hash(_record(answers=("yes",) * 10))  # extra is not hashed
    assert rec != _record(answers=("yes",) * 10)  # but it is compared
    assert pickle.loads(pickle.dumps(rec)) == rec
    cap = RetrievalRecord(image_id=1, image_path=None, captions=["a cat"], caption_ids=[5])
    assert pickle.loads(pickle.dumps(cap)) == cap
    assert cap.captions == ("a cat",) and cap.caption_ids == (5,)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"answers": "yes"}, TypeError),  # one string is not a list of answers
        ({"answers": ["yes", 3]}, TypeError),
        ({"answers": ["yes"], "answer_confidences": ["yes", "no"]}, ValueError),
    ],
)
def test_bad_fields_are_refused(kwargs: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        _record(**kwargs)


def test_retrieval_caption_ids_must_match_captions() -> None:
    with pytest.raises(ValueError):
        RetrievalRecord(image_id=1, image_path=None, captions=("a", "b"), caption_ids=(1,))


def test_dataset_is_a_sequence() -> None:
    recs = [_record(question_id=i) for i in range(3)]
    ds = VQADataset(recs, missing_images=[Path("a.jpg"), Path("a.jpg"), Path("b.jpg")],
                    sources=[Path("q.json")])
    assert len(ds) == 3 and list(ds) == recs and ds[1] is recs[1] and ds[-1] is recs[2]
    assert ds[:2] == tuple(recs[:2])
    assert ds.missing_images == (Path("a.jpg"), Path("b.jpg"))  # each once, in order
    assert "3 records" in repr(ds) and "q.json" in repr(ds)
    copy = pickle.loads(pickle.dumps(ds))  # for DataLoader workers
    assert list(copy) == recs and copy.missing_images == ds.missing_images
    assert len(CaptionDataset([])) == 0


def test_importing_kgmm_data_loads_neither_torch_nor_pillow() -> None:
    code = (
        "import sys, kgmm.data; "
        "bad = [m for m in ('torch', 'PIL') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
