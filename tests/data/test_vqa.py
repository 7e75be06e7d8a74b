"""VQA v2 / OK-VQA reader and writer on the official layout."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from kgmm.data import VQARecord, load_vqa, vqa_paths, write_vqa
from kgmm.data.vqa import find_vqa_files
from kgmm.graph.errors import InputError, SourceNotFoundError

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
VQA = FIXTURES / "vqa"
OKVQA = FIXTURES / "okvqa"
Q_FILE = "v2_OpenEnded_mscoco_val2014_questions.json"
A_FILE = "v2_mscoco_val2014_annotations.json"


def _copy(src: Path, tmp_path: Path) -> Path:
    root = tmp_path / src.name
    shutil.copytree(src, root)
    return root


def _edit(path: Path, change: Callable[[Any], None]) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


# -- reading ---------------------------------------------------------------------------------


def test_reads_the_v2_fixture() -> None:
    ds = load_vqa(VQA, "val")
    assert [r.question_id for r in ds] == [420, 421, 730, 731, 740, 741]
    first = ds[0]
    assert first.image_id == 42 and first.question == "Is the cat asleep?"
    assert first.answers == ("yes",) * 10
    assert first.answer_confidences == ("yes",) * 9 + ("maybe",)
    assert (first.question_type, first.answer_type, first.multiple_choice_answer) == (
        "is the", "yes/no", "yes")
    assert first.image_path == VQA / "val2014" / "COCO_val2014_000000000042.jpg"
    assert first.extra == {} and first.answer_entity_ids == ()
    assert ds[2].answer_entity_ids == ("wn:hotdog.n.02",)  # the annotation's extension field
    assert ds.sources == (VQA / Q_FILE, VQA / A_FILE)


def test_missing_image_is_reported_not_fatal() -> None:
    ds = load_vqa(VQA, "val")
    expected = VQA / "val2014" / "COCO_val2014_000000000074.jpg"
    assert ds.missing_images == (expected,)  # two questions, one image, reported once
    assert [r.image_path for r in ds if r.image_id == 74] == [None, None]


def test_missing_images_are_summarised_in_the_log(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="kgmm.data"):
        load_vqa(VQA, "val")
    assert "1 referenced image(s) not found" in caplog.text


def test_reads_okvqa_with_its_extra_fields_and_the_flat_images_folder() -> None:
    ds = load_vqa(OKVQA, "val")
    assert len(ds) == 3
    rec = ds[0]
    assert rec.answers[:4] == ("race",) * 4 and len(rec.answers) == 10
    assert rec.multiple_choice_answer is None  # OK-VQA has none
    assert rec.question_type == "four" and rec.answer_type == "other"
    assert rec.extra["confidence"] == 3
    assert [a["raw_answer"] for a in rec.extra["answers_extra"]][:2] == ["racing", "racing"]
    assert rec.image_path == OKVQA / "images" / "COCO_val2014_000000000297.jpg"
    assert ds.missing_images == (OKVQA / "images" / "COCO_val2014_000000000536.jpg",)


def test_test_dev_split_has_no_answers_and_uses_test2015_images() -> None:
    ds = load_vqa(VQA, "test-dev")
    assert [r.question_id for r in ds] == [150, 151]
    assert all(r.answers == () and r.question_type is None for r in ds)
    assert ds.missing_images == (VQA / "test2015" / "COCO_test2015_000000000015.jpg",)


def test_split_names() -> None:
    assert load_vqa(VQA, "val2014")[0].question_id == 420  # a data subtype works too
    with pytest.raises(SourceNotFoundError, match="v2_OpenEnded_mscoco_train2014_questions"):
        load_vqa(VQA, "train")
    with pytest.raises(SourceNotFoundError):
        load_vqa(VQA / "nowhere", "val")


def test_official_folder_layout(tmp_path: Path) -> None:
    # Questions/, Annotations/ and Images/mscoco/val2014/ as in the official API's demo.
    root = tmp_path / "VQA"
    (root / "Questions").mkdir(parents=True)
    (root / "Annotations").mkdir()
    shutil.copy(VQA / Q_FILE, root / "Questions")
    shutil.copy(VQA / A_FILE, root / "Annotations")
    shutil.copytree(VQA / "val2014", root / "Images" / "mscoco" / "val2014")
    ds = load_vqa(root, "val")
    assert ds[0].image_path == root / "Images" / "mscoco" / "val2014" / (
        "COCO_val2014_000000000042.jpg")
    assert ds.missing_images == (root / "Images" / "mscoco" / "val2014" /
                                 "COCO_val2014_000000000074.jpg",)


def test_annotations_required_except_for_test(tmp_path: Path) -> None:
    root = tmp_path / "v"
    root.mkdir()
    shutil.copy(VQA / Q_FILE, root)
    with pytest.raises(SourceNotFoundError, match="no annotations file"):
        load_vqa(root, "val")
    ds = load_vqa(root, "val", require_annotations=False)
    assert len(ds) == 6 and all(r.answers == () for r in ds)


def test_variant_detection(tmp_path: Path) -> None:
    assert find_vqa_files(VQA, "val")[0] == "v2"
    assert find_vqa_files(OKVQA, "val")[0] == "okvqa"
    root = _copy(VQA, tmp_path)
    for name in ("OpenEnded_mscoco_val2014_questions.json", "mscoco_val2014_annotations.json"):
        shutil.copy(OKVQA / name, root)
    with pytest.raises(InputError, match="variant="):
        load_vqa(root, "val")
    assert len(load_vqa(root, "val", variant="okvqa")) == 3
    assert len(load_vqa(root, "val", variant="v2")) == 6


def test_file_name_field_overrides_the_official_image_name(tmp_path: Path) -> None:
    root = _copy(VQA, tmp_path)
    (root / "images" / "pics").mkdir(parents=True)
    (root / "images" / "pics" / "cat.png").write_bytes(b"not opened")

    def add(data: Any) -> None:
        data["questions"][0]["file_name"] = "pics/cat.png"
        data["questions"][1]["file_name"] = "pics/absent.png"

    _edit(root / Q_FILE, add)
    ds = load_vqa(root, "val")
    assert ds[0].image_path == root / "images" / "pics" / "cat.png"
    assert ds[0].extra == {"file_name": "pics/cat.png"}
    assert ds[1].image_path is None
    assert root / "pics" / "absent.png" in ds.missing_images


# -- malformed input -------------------------------------------------------------------------


def _q(i: int) -> Callable[[Any], dict[str, Any]]:
    return lambda data: data["questions"][i]


def _a(i: int) -> Callable[[Any], dict[str, Any]]:
    return lambda data: data["annotations"][i]


MALFORMED = [
    # (file, change, message, record, field)
    (Q_FILE, lambda d: _q(1)(d).pop("question"), "missing required field",
     "1 (question_id 421)", "question"),
    (Q_FILE, lambda d: _q(2)(d).update(question=7), "expected a string",
     "2 (question_id 730)", "question"),
    (Q_FILE, lambda d: _q(0)(d).update(question_id=4.5), "integer or a non-empty string", 0,
     "question_id"),
    (Q_FILE, lambda d: _q(0)(d).update(question_id=True), "integer or a non-empty string", 0,
     "question_id"),
    (Q_FILE, lambda d: _q(1)(d).update(question_id=420), "duplicate question_id",
     "1 (question_id 420)", "question_id"),
    (Q_FILE, lambda d: d["questions"].pop(3), "annotation has no matching question",
     "3 (question_id 731)", "question_id"),
    (Q_FILE, lambda d: d["questions"].append(
        {"image_id": 42, "question": "Extra?", "question_id": 999}),
     "no annotation for this question", "6 (question_id 999)", "question_id"),
    (Q_FILE, lambda d: d.update(questions={}), "expected an array", None, "questions"),
    (Q_FILE, lambda d: d.pop("questions"), "missing required top-level field", None,
     "questions"),
    (Q_FILE, lambda d: d["questions"].__setitem__(2, ["not", "an", "object"]),
     "expected an object", 2, None),
    (A_FILE, lambda d: _a(4)(d)["answers"].pop(), "expected 10 answers, got 9",
     "4 (question_id 740)", "answers"),
    (A_FILE, lambda d: _a(4)(d).update(answers=[]), "no answers", "4 (question_id 740)",
     "answers"),
    (A_FILE, lambda d: _a(0)(d)["answers"][3].pop("answer"), "missing required field",
     "0 (question_id 420), answer 3", "answer"),
    (A_FILE, lambda d: _a(0)(d)["answers"].__setitem__(3, "yes"), "answer 3: expected an object",
     "0 (question_id 420)", "answers"),
    (A_FILE, lambda d: _a(1)(d).pop("answer_type"), "missing required field",
     "1 (question_id 421)", "answer_type"),
    (A_FILE, lambda d: _a(1)(d).update(image_id=43), "differs from the question's",
     "1 (question_id 421)", "image_id"),
    (A_FILE, lambda d: _a(1)(d).update(answer_entity_ids="wn:dog.n.01"), "expected an array",
     "1 (question_id 421)", "answer_entity_ids"),
    (A_FILE, lambda d: _a(1)(d).update(question_id=420), "duplicate question_id",
     "1 (question_id 420)", "question_id"),
]


@pytest.mark.parametrize(("name", "change", "message", "record", "field"), MALFORMED)
def test_malformed_entry_names_file_record_and_field(
    tmp_path: Path, name: str, change: Callable[[Any], None], message: str,
    record: str | int | None, field: str | None,
) -> None:
    root = _copy(VQA, tmp_path)
    _edit(root / name, change)
    with pytest.raises(InputError, match=message) as err:
        load_vqa(root, "val")
    # A question without annotation is reported on the questions file, the rest where it is.
    expected_file = Q_FILE if "no annotation for this" in message else name
    if "no matching question" in message:
        expected_file = A_FILE
    assert err.value.source == str(root / expected_file)
    assert err.value.record == record
    assert err.value.field == field


def test_num_answers_none_accepts_other_counts(tmp_path: Path) -> None:
    root = _copy(VQA, tmp_path)
    _edit(root / A_FILE, lambda d: _a(4)(d)["answers"].pop())
    assert len(load_vqa(root, "val", num_answers=None)[4].answers) == 9


def test_bad_json_and_unsafe_file_name(tmp_path: Path) -> None:
    root = _copy(VQA, tmp_path)
    (root / A_FILE).write_text('{"annotations": [\n  {"question_id": 1,\n  oops\n')
    with pytest.raises(InputError, match="not valid JSON") as err:
        load_vqa(root, "val")
    assert err.value.line == 3
    root = _copy(VQA, tmp_path / "b")
    _edit(root / Q_FILE, lambda d: _q(0)(d).update(file_name="../../etc/passwd"))
    with pytest.raises(InputError, match="relative path") as err:
        load_vqa(root, "val")
    assert err.value.field == "file_name"


# -- writing -----------------------------------------------------------------------------------


def _header(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text())
    return {"info": data["info"], "license": data["license"],
            "data_subtype": data["data_subtype"]}


@pytest.mark.parametrize(("src", "variant"), [(VQA, "v2"), (OKVQA, "okvqa")])
def test_round_trip_reproduces_the_official_files(tmp_path: Path, src: Path,
                                                  variant: str) -> None:
    ds = load_vqa(src, "val")
    q_src, a_src = ds.sources
    out = tmp_path / "out"
    shutil.copytree(src, out, ignore=shutil.ignore_patterns("*.json"))  # images only
    q_out, a_out = vqa_paths(out, "val", variant)  # type: ignore[arg-type]
    write_vqa(ds, q_out, a_out, **_header(a_src))
    assert json.loads(q_out.read_text()) == json.loads(q_src.read_text())
    assert json.loads(a_out.read_text()) == json.loads(a_src.read_text())
    again = load_vqa(out, "val")
    assert [r.image_path and r.image_path.relative_to(out) for r in again] == [
        r.image_path and r.image_path.relative_to(src) for r in ds]
    assert [_strip_path(r) for r in again] == [_strip_path(r) for r in ds]


def _strip_path(rec: VQARecord) -> VQARecord:
    return replace(rec, image_path=None)


def test_round_trip_keeps_extra_fields_and_entity_ids(tmp_path: Path) -> None:
    recs = [
        VQARecord(question_id=1, image_id=5, question="How many red cubes?",
                  answers=("2",) * 10, question_type="how many", answer_type="number",
                  answer_entity_ids=("num:2",),
                  extra={"question_family": "count", "program": [{"op": "filter", "arg": "red"}],
                         "file_name": "scene_5.png"}),
        VQARecord(question_id=2, image_id=5, question="Is it a cube?",
                  answers=("yes",) * 6 + ("no",) * 4, question_type="is it",
                  answer_type="yes/no", multiple_choice_answer="yes",
                  answer_confidences=("yes",) * 5 + ("maybe",) * 5,
                  extra={"supporting_facts": [{"e1": "cube", "r": "IsA", "e2": "shape"}]}),
    ]
    q, a = vqa_paths(tmp_path, "val")
    write_vqa(recs, q, a, data_subtype="val2014")
    written = json.loads(a.read_text())["annotations"]
    assert "multiple_choice_answer" not in written[0]  # None is not invented
    assert written[0]["answers"][0] == {"answer": "2", "answer_confidence": "yes",
                                        "answer_id": 1}
    assert written[0]["question_family"] == "count"
    again = load_vqa(tmp_path, "val")
    # Unknown confidences are written as "yes"; everything else comes back as it was.
    assert list(again) == [replace(recs[0], answer_confidences=("yes",) * 10), recs[1]]
    assert again.missing_images == (tmp_path / "scene_5.png",
                                    tmp_path / "val2014" / "COCO_val2014_000000000005.jpg")


def test_writing_questions_only_keeps_extras_on_questions(tmp_path: Path) -> None:
    ds = load_vqa(VQA, "test-dev")
    recs = [VQARecord(question_id=r.question_id, image_id=r.image_id, question=r.question,
                      extra={"question_family": "f"}) for r in ds]
    q, _ = vqa_paths(tmp_path, "test-dev")
    assert write_vqa(recs, q, data_subtype="test-dev2015") == (q, None)
    again = load_vqa(tmp_path, "test-dev")
    assert [r.extra for r in again] == [{"question_family": "f"}] * 2


@pytest.mark.parametrize(
    ("recs", "message", "field"),
    [
        ([VQARecord(question_id=1, image_id=1, question="q")], "no answers", "answers"),
        ([VQARecord(question_id=1, image_id=1, question="q", answers=("a",) * 10)],
         "required by the annotations file", "question_type"),
        ([VQARecord(question_id=1, image_id=1, question="q", answers=("a",) * 10,
                    question_type="t", answer_type="other", extra={"question_type": "x"})],
         "shadows an official field", "question_type"),
        ([VQARecord(question_id=1, image_id=1, question="q", answers=("a",) * 10,
                    question_type="t", answer_type="other", extra={"answers_extra": [{}]})],
         "one object per answer", "answers_extra"),
        ([VQARecord(question_id=1, image_id=1, question="q", answers=("a",) * 10,
                    question_type="t", answer_type="other")] * 2,
         "duplicate question_id", "question_id"),
    ],
)
def test_writer_refuses_records_it_cannot_write(tmp_path: Path, recs: list[VQARecord],
                                                message: str, field: str) -> None:
    with pytest.raises(InputError, match=message) as err:
        write_vqa(recs, tmp_path / "q.json", tmp_path / "a.json")
    assert err.value.field == field
    assert not (tmp_path / "q.json").exists()  # nothing half-written
