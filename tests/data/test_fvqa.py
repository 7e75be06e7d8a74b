"""FVQA release reader."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from kgmm.data import load_fvqa, vqa_accuracy
from kgmm.graph.errors import InputError, SourceNotFoundError

FVQA = Path(__file__).resolve().parent.parent / "fixtures" / "fvqa"
RELEASE = FVQA / "new_dataset_release"


def test_reads_every_question() -> None:
    ds = load_fvqa(FVQA)
    assert [r.question_id for r in ds] == ["270", "999", "1001"]
    rec = ds[0]
    assert rec.image_id == "ILSVRC2012_test_00050748.JPEG"
    assert rec.image_path == RELEASE / "images" / "ILSVRC2012_test_00050748.JPEG"
    assert rec.answers == ("trumpet",) * 10 and rec.multiple_choice_answer == "trumpet"
    assert rec.question_type is None and rec.answer_type is None
    fact = rec.extra["supporting_fact"]
    assert (fact["id"], fact["e1"], fact["r"], fact["e2"]) == (
        "conceptnet/e/1", "/c/en/trumpet", "/r/AtLocation", "/c/en/jazz_club")
    assert fact["e1_label"] == "a trumpet" and fact["KB"] == "conceptnet"
    assert rec.extra["supporting_facts"] == [fact]
    assert rec.extra["kb_source"] == "conceptnet" and rec.extra["visual_concept"] == "obj"
    assert "question_id" not in rec.extra
    assert ds.missing_images == (RELEASE / "images" / "COCO_val2014_000000000536.jpg",)
    assert ds.sources == (RELEASE / "all_qs_dict_release.json",
                          RELEASE / "all_fact_triples_release.json")


def test_release_folder_itself_as_root() -> None:
    assert len(load_fvqa(RELEASE)) == 3
    assert [r.question_id for r in load_fvqa(RELEASE, "test")] == ["999"]


def test_folds() -> None:
    assert [r.question_id for r in load_fvqa(FVQA, "train", fold=0)] == ["270", "1001"]
    test = load_fvqa(FVQA, "test")
    assert [r.question_id for r in test] == ["999"] and test.missing_images == ()
    with pytest.raises(SourceNotFoundError, match=r"test_list_3\.txt"):
        load_fvqa(FVQA, "test", fold=3)
    with pytest.raises(ValueError):
        load_fvqa(FVQA, "val")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        load_fvqa(FVQA, "train", fold=5)


def test_single_answer_accuracy_is_exact_match_after_normalisation() -> None:
    answers = load_fvqa(FVQA)[1].answers  # ten × "gove truck"
    assert vqa_accuracy("Gove truck.", answers) == 1.0
    assert vqa_accuracy("truck", answers) == 0.0


def _broken(tmp_path: Path, name: str, change: Any) -> Path:
    root = tmp_path / "fvqa"
    shutil.copytree(FVQA, root)
    path = root / "new_dataset_release" / name
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    return root


@pytest.mark.parametrize(
    ("name", "change", "message", "record", "field"),
    [
        ("all_qs_dict_release.json", lambda d: d["999"].update(fact=["nowhere/e/9"]),
         "not in all_fact_triples_release.json", "question_id '999'", "fact"),
        ("all_qs_dict_release.json", lambda d: d["999"].pop("answer"),
         "missing required field", "question_id '999'", "answer"),
        ("all_qs_dict_release.json", lambda d: d["999"].update(fact=[]),
         "no supporting fact", "question_id '999'", "fact"),
        ("all_qs_dict_release.json", lambda d: d["999"].update(img_file="../x.jpg"),
         "inside images/", "question_id '999'", "img_file"),
        ("all_qs_dict_release.json", lambda d: d.update({"5": "text"}),
         "expected an object", "question_id '5'", None),
        ("all_fact_triples_release.json", lambda d: d["webchild/e/2"].pop("r"),
         "missing required field", "fact 'webchild/e/2'", "r"),
    ],
)
def test_malformed_release(tmp_path: Path, name: str, change: Any, message: str,
                           record: str, field: str | None) -> None:
    root = _broken(tmp_path, name, change)
    with pytest.raises(InputError, match=message) as err:
        load_fvqa(root)
    assert err.value.record == record and err.value.field == field
    expected = "all_fact_triples_release.json" if "fact '" in record else (
        "all_qs_dict_release.json")
    assert err.value.source == str(root / "new_dataset_release" / expected)


def test_single_fact_id_string_is_accepted(tmp_path: Path) -> None:
    root = _broken(tmp_path, "all_qs_dict_release.json",
                   lambda d: d["999"].update(fact="webchild/e/2"))
    assert load_fvqa(root)[1].extra["supporting_fact"]["id"] == "webchild/e/2"


def test_missing_release(tmp_path: Path) -> None:
    with pytest.raises(SourceNotFoundError, match=r"all_qs_dict_release\.json"):
        load_fvqa(tmp_path)
    root = tmp_path / "r"
    shutil.copytree(RELEASE, root)
    (root / "all_fact_triples_release.json").unlink()
    with pytest.raises(SourceNotFoundError, match=r"all_fact_triples_release\.json"):
        load_fvqa(root)
