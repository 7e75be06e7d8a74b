"""Image folder + captions.jsonl reader and writer; JSONL helpers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kgmm.data import (
    RetrievalRecord,
    load_coco_captions,
    load_image_captions,
    load_retrieval,
    read_jsonl,
    write_image_captions,
    write_jsonl,
)
from kgmm.graph.errors import InputError, SourceNotFoundError

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
FOLDER = FIXTURES / "imagefolder"


def test_reads_the_fixture() -> None:
    ds = load_image_captions(FOLDER)
    assert [r.image_id for r in ds] == ["red.png", "green", "blue.png"]
    red, green, blue = ds
    assert red.captions == ("a red square", "a small red image")
    assert red.image_path == FOLDER / "images" / "red.png" and red.file_name == "red.png"
    assert green.image_path == FOLDER / "images" / "animals" / "green.png"
    assert green.file_name == "animals/green.png" and green.extra == {"source": "pillow"}
    assert blue.image_path is None
    assert ds.missing_images == (FOLDER / "images" / "blue.png",)
    assert load_retrieval(FOLDER)[1].image_id == "green"


def test_round_trip_with_copied_images(tmp_path: Path) -> None:
    ds = load_image_captions(FOLDER)
    out = tmp_path / "out"
    path = write_image_captions(ds, out, copy_images=True)
    assert path == out / "captions.jsonl"
    assert [json.loads(line) for line in path.read_text().splitlines()] == [
        json.loads(line) for line in (FOLDER / "captions.jsonl").read_text().splitlines()]
    again = load_image_captions(out)
    assert [(r.image_id, r.captions, r.file_name, r.extra) for r in again] == [
        (r.image_id, r.captions, r.file_name, r.extra) for r in ds]
    assert again[1].image_path == out / "images" / "animals" / "green.png"
    assert again.missing_images == (out / "images" / "blue.png",)


def test_coco_to_image_folder(tmp_path: Path) -> None:
    coco = load_coco_captions(FIXTURES / "coco", "val")
    write_image_captions(coco, tmp_path, split="val", copy_images=True)
    ds = load_retrieval(tmp_path, "val")  # no COCO file here: captions_val.jsonl
    assert [r.image_id for r in ds] == [42, 73, 74]  # ids differ from file names: kept
    assert ds[0].captions == coco[0].captions
    assert ds[0].extra["coco_url"].endswith("000000000042.jpg")
    assert ds[0].image_path == tmp_path / "images" / "COCO_val2014_000000000042.jpg"
    assert ds.missing_images == (tmp_path / "images" / "COCO_val2014_000000000074.jpg",)


@pytest.mark.parametrize(
    ("line", "message", "field"),
    [
        ('{"image": "a.png", "captions": ["x"]', "not valid JSON", None),
        ('["a.png"]', "expected a JSON object", None),
        ('{"captions": ["x"]}', "missing required field", "image"),
        ('{"image": "a.png"}', "missing required field", "captions"),
        ('{"image": "a.png", "captions": "x"}', "expected an array", "captions"),
        ('{"image": "a.png", "captions": ["x", 1]}', "item 1: expected a string", "captions"),
        ('{"image": "/etc/a.png", "captions": []}', "relative to images/", "image"),
        ('{"image": "../a.png", "captions": []}', "relative to images/", "image"),
        ('{"image": "b.png", "captions": [], "image_id": "red.png"}', "duplicate image id",
         "image_id"),
        ('{"image": "b.png", "captions": [], "image_id": 1.5}', "integer", "image_id"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path: Path, line: str, message: str,
                                            field: str | None) -> None:
    path = tmp_path / "captions.jsonl"
    path.write_text('{"image": "red.png", "captions": []}\n\n' + line + "\n")
    with pytest.raises(InputError, match=message) as err:
        load_image_captions(tmp_path)
    assert err.value.source == str(path)
    assert err.value.line == 3  # the blank line 2 is skipped but counted
    assert err.value.field == field


def test_writer_errors(tmp_path: Path) -> None:
    rec = RetrievalRecord(image_id=1, image_path=None, captions=("a",), file_name="x.png")
    with pytest.raises(InputError, match="duplicate image id"):
        write_image_captions([rec, rec], tmp_path)
    bad = RetrievalRecord(image_id=2, image_path=None, captions=(), file_name="../x.png")
    with pytest.raises(InputError, match="relative path"):
        write_image_captions([bad], tmp_path)
    assert not (tmp_path / "captions.jsonl").exists()


def test_jsonl_helpers(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "sub" / "x.jsonl", [{"a": 1}, {"b": "é"}])
    assert path.read_text(encoding="utf-8") == '{"a": 1}\n{"b": "é"}\n'
    assert list(read_jsonl(path)) == [(1, {"a": 1}), (2, {"b": "é"})]
    with pytest.raises(SourceNotFoundError):
        list(read_jsonl(tmp_path / "absent.jsonl"))
    with pytest.raises(SourceNotFoundError):
        load_image_captions(tmp_path / "absent")
    (tmp_path / "bin.jsonl").write_bytes(b'{"a": 1}\n\xff\xfe\n')
    with pytest.raises(InputError, match="UTF-8"):
        list(read_jsonl(tmp_path / "bin.jsonl"))
