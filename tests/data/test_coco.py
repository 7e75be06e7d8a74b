"""COCO captions reader and writer, and the retrieval dispatcher."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from kgmm.data import (
    RetrievalRecord,
    load_coco_captions,
    load_retrieval,
    write_coco_captions,
)
from kgmm.graph.errors import InputError, SourceNotFoundError

COCO = Path(__file__).resolve().parent.parent / "fixtures" / "coco"
CAPTIONS = COCO / "annotations" / "captions_val2014.json"


def test_reads_all_captions_per_image() -> None:
    ds = load_coco_captions(COCO, "val")
    assert [r.image_id for r in ds] == [42, 73, 74]
    cat = ds[0]
    assert cat.captions == ("A cat sleeping on a red couch.", "A sleepy cat curled up on a sofa.",
                            "A grey cat naps.")
    assert cat.caption_ids == (1001, 1003, 1006)
    assert cat.file_name == "COCO_val2014_000000000042.jpg"
    assert cat.image_path == COCO / "val2014" / "COCO_val2014_000000000042.jpg"
    assert cat.extra["width"] == 8 and "id" not in cat.extra and "file_name" not in cat.extra
    assert ds[2].image_path is None
    assert ds.missing_images == (COCO / "val2014" / "COCO_val2014_000000000074.jpg",)
    assert ds.sources == (CAPTIONS,)


def test_round_trip(tmp_path: Path) -> None:
    ds = load_coco_captions(COCO, "val")
    original = json.loads(CAPTIONS.read_text())
    out = tmp_path / "captions_val2014.json"
    write_coco_captions(ds, out, info=original["info"], licenses=original["licenses"])
    written = json.loads(out.read_text())
    assert written["images"] == original["images"]
    # Captions come out grouped by image; the set of annotations is unchanged.
    key = lambda a: a["id"]  # noqa: E731
    assert sorted(written["annotations"], key=key) == sorted(original["annotations"], key=key)
    shutil.copytree(COCO / "val2014", tmp_path / "val2014")
    again = load_coco_captions(tmp_path, "val")
    assert [(r.image_id, r.captions, r.caption_ids, r.extra) for r in again] == [
        (r.image_id, r.captions, r.caption_ids, r.extra) for r in ds]
    assert [r.image_path for r in again] == [
        r.image_path and tmp_path / r.image_path.relative_to(COCO) for r in ds]


def test_writer_numbers_captions_without_ids_and_names_images(tmp_path: Path) -> None:
    recs = [
        RetrievalRecord(image_id=1, image_path=Path("/data/pics/one.png"), captions=("a", "b")),
        RetrievalRecord(image_id=2, image_path=None, captions=(), file_name="two.png"),
        RetrievalRecord(image_id=3, image_path=None, captions=("c",), caption_ids=(9,),
                        file_name="sub/three.jpg"),
    ]
    out = write_coco_captions(recs, tmp_path / "c.json")
    data = json.loads(out.read_text())
    assert [i["file_name"] for i in data["images"]] == ["one.png", "two.png", "sub/three.jpg"]
    # Record 1 has no caption ids, so every caption is numbered afresh (9 is not kept).
    assert [(a["id"], a["image_id"], a["caption"]) for a in data["annotations"]] == [
        (1, 1, "a"), (2, 1, "b"), (3, 3, "c")]


def test_writer_errors(tmp_path: Path) -> None:
    nameless = RetrievalRecord(image_id=1, image_path=None, captions=("a",))
    with pytest.raises(InputError, match="neither file_name nor image_path"):
        write_coco_captions([nameless], tmp_path / "c.json")
    rec = RetrievalRecord(image_id=1, image_path=None, captions=("a",), file_name="x.jpg",
                          caption_ids=(4,))
    with pytest.raises(InputError, match="duplicate image id"):
        write_coco_captions([rec, rec], tmp_path / "c.json")
    other = RetrievalRecord(image_id=2, image_path=None, captions=("b",), file_name="y.jpg",
                            caption_ids=(4,))
    with pytest.raises(InputError, match="duplicate caption id"):
        write_coco_captions([rec, other], tmp_path / "c.json")
    assert not (tmp_path / "c.json").exists()


def _broken(tmp_path: Path, change: Any) -> Path:
    root = tmp_path / "coco"
    shutil.copytree(COCO, root)
    path = root / "annotations" / "captions_val2014.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    return root


@pytest.mark.parametrize(
    ("change", "message", "record", "field"),
    [
        (lambda d: d["annotations"][3].update(image_id=99), "not in the file's images",
         "annotations[3] (id 1004)", "image_id"),
        (lambda d: d["annotations"][3].pop("caption"), "missing required field",
         "annotations[3] (id 1004)", "caption"),
        (lambda d: d["annotations"][3].update(id=1001), "duplicate caption id",
         "annotations[3] (id 1001)", "id"),
        (lambda d: d["images"][1].update(id=42), "duplicate image id", "images[1] (id 42)",
         "id"),
        (lambda d: d["images"][1].pop("file_name"), "missing required field",
         "images[1] (id 73)", "file_name"),
        (lambda d: d["images"][1].update(file_name="/abs.jpg"), "relative path",
         "images[1] (id 73)", "file_name"),
        (lambda d: d.pop("annotations"), "missing required top-level field", None,
         "annotations"),
    ],
)
def test_malformed_file(tmp_path: Path, change: Any, message: str, record: str | None,
                        field: str) -> None:
    root = _broken(tmp_path, change)
    with pytest.raises(InputError, match=message) as err:
        load_coco_captions(root, "val")
    assert err.value.source == str(root / "annotations" / "captions_val2014.json")
    assert (err.value.record, err.value.field) == (record, field)


def test_not_found_and_dispatch(tmp_path: Path) -> None:
    with pytest.raises(SourceNotFoundError, match=r"captions_train2014\.json"):
        load_coco_captions(COCO, "train")
    assert [r.image_id for r in load_retrieval(COCO, "val")] == [42, 73, 74]
    with pytest.raises(SourceNotFoundError, match=r"captions_train\.jsonl"):
        load_retrieval(COCO, "train")
    with pytest.raises(SourceNotFoundError):
        load_retrieval(tmp_path)
