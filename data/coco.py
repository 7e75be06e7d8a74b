"""COCO captions (``captions_{sub}.json``): reader and writer of retrieval records.

The file::

    {"info": {...}, "licenses": [...],
     "images": [{"id", "file_name", "width", "height", ...}],
     "annotations": [{"id", "image_id", "caption"}]}

is looked for in ``root``, ``root/annotations`` and ``root/Annotations``; ``{sub}`` is the
data subtype (``train`` → ``train2014``, ``val`` → ``val2014``, others as given, e.g.
``val2017``). Images are looked for as ``file_name`` in ``root/{sub}/``,
``root/images/{sub}/`` and ``root/images/``.

Decisions: one record per entry of ``images``, in file order, with every caption of that
image in file order (none for an image without captions); the image entry's other fields
(``width``, ``coco_url`` …) go to ``extra``. A caption whose ``image_id`` is not an image of
the file, or a duplicate image or caption id, is an :class:`InputError`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from kgmm.graph.errors import InputError, SourceNotFoundError

from ._io import (
    Checker,
    ImageFinder,
    data_subtype,
    entry_object,
    find_file,
    read_json,
    safe_relative,
    top_level,
    write_json,
)
from .records import CaptionDataset, RecordId, RetrievalRecord

_JSON_DIRS = ("", "annotations", "Annotations")


def coco_captions_file(root: str | os.PathLike[str], split: str) -> Path | None:
    """The captions file of ``split`` under ``root``, or ``None``."""
    root = Path(root)
    return find_file([f"captions_{data_subtype(split)}.json"], [root / d for d in _JSON_DIRS])


def load_coco_captions(root: str | os.PathLike[str], split: str) -> CaptionDataset:
    """Read the COCO captions of ``split`` from ``root`` (layout in the module docstring).

    Returns:
        A :class:`CaptionDataset`; images not on disk are in its ``missing_images`` and
        have ``image_path=None``. Images are never opened.

    Raises:
        SourceNotFoundError: no captions file.
        InputError: a malformed file or entry, naming the file, entry and field.
    """
    root = Path(root)
    path = coco_captions_file(root, split)
    sub = data_subtype(split)
    if path is None:
        raise SourceNotFoundError(
            f"{root}: no captions_{sub}.json (looked in {', '.join(d or '.' for d in _JSON_DIRS)})"
        )
    images, annotations = top_level(read_json(path), path, "images", "annotations")

    order: dict[RecordId, tuple[str, dict[str, Any]]] = {}
    for i, entry in enumerate(images):
        entry = entry_object(entry, path, f"images[{i}]")
        image_id = Checker(path, entry, f"images[{i}]").ident("id")
        check = Checker(path, entry, f"images[{i}] (id {image_id!r})")
        file_name = check.text("file_name")
        assert image_id is not None and file_name is not None
        if not safe_relative(file_name):
            raise check.error(f"expected a relative path, got {file_name!r}", "file_name")
        if image_id in order:
            raise check.error("duplicate image id", "id")
        order[image_id] = (file_name, {k: v for k, v in entry.items()
                                       if k not in ("id", "file_name")})

    captions: dict[RecordId, list[tuple[RecordId, str]]] = {k: [] for k in order}
    caption_ids: set[RecordId] = set()
    for i, entry in enumerate(annotations):
        entry = entry_object(entry, path, f"annotations[{i}]")
        ann_id = Checker(path, entry, f"annotations[{i}]").ident("id")
        check = Checker(path, entry, f"annotations[{i}] (id {ann_id!r})")
        image_id = check.ident("image_id")
        caption = check.text("caption")
        assert ann_id is not None and image_id is not None and caption is not None
        if image_id not in captions:
            raise check.error(f"image {image_id!r} is not in the file's images", "image_id")
        if ann_id in caption_ids:
            raise check.error("duplicate caption id", "id")
        caption_ids.add(ann_id)
        captions[image_id].append((ann_id, caption))

    finder = ImageFinder([root / sub, root / "images" / sub, root / "images"])
    records = [
        RetrievalRecord(
            image_id=image_id,
            image_path=finder.find(file_name),
            captions=tuple(c for _, c in captions[image_id]),
            file_name=file_name,
            caption_ids=tuple(k for k, _ in captions[image_id]),
            extra=extra,
        )
        for image_id, (file_name, extra) in order.items()
    ]
    finder.warn(f"COCO captions {root} {split}")
    return CaptionDataset(records, missing_images=finder.missing, sources=[path])


def record_file_name(rec: RetrievalRecord, index: int, source: str = "<records>") -> str:
    """The name a writer gives a record's image: ``file_name``, else the image file's name."""
    if rec.file_name:
        return rec.file_name
    if rec.image_path is not None:
        return rec.image_path.name
    raise InputError("the record has neither file_name nor image_path", source=source,
                     record=f"{index} (image_id {rec.image_id!r})", field="file_name")


def write_coco_captions(
    records: Iterable[RetrievalRecord],
    path: str | os.PathLike[str],
    *,
    info: Mapping[str, Any] | None = None,
    licenses: Iterable[Mapping[str, Any]] = (),
) -> Path:
    """Write records as a COCO captions file; return its path.

    Image entries are ``{"id", "file_name", **extra}``; the file name is the record's
    ``file_name``, else its image file's name. Captions keep their ``caption_ids`` when every
    record that has captions carries them; otherwise all captions are numbered 1…n. Images
    are not copied.

    Raises:
        InputError: a duplicate image id or caption id, or a record with no file name.
    """
    images: list[dict[str, Any]] = []
    pending: list[tuple[RecordId, tuple[RecordId, ...], tuple[str, ...]]] = []
    seen: set[RecordId] = set()
    for i, rec in enumerate(records):
        if rec.image_id in seen:
            raise InputError("duplicate image id", source="<records>",
                             record=f"{i} (image_id {rec.image_id!r})", field="image_id")
        seen.add(rec.image_id)
        extra = {k: v for k, v in rec.extra.items() if k not in ("id", "file_name")}
        images.append({"id": rec.image_id, "file_name": record_file_name(rec, i), **extra})
        pending.append((rec.image_id, rec.caption_ids, rec.captions))

    keep_ids = all(ids or not caps for _, ids, caps in pending)
    annotations: list[dict[str, Any]] = []
    used: set[RecordId] = set()
    counter = 0
    for image_id, ids, caps in pending:
        for j, caption in enumerate(caps):
            counter += 1
            ann_id = ids[j] if keep_ids else counter
            if ann_id in used:
                raise InputError("duplicate caption id", source="<records>",
                                 record=f"image_id {image_id!r}", field="caption_ids")
            used.add(ann_id)
            annotations.append({"image_id": image_id, "id": ann_id, "caption": caption})
    return write_json(path, {"info": dict(info or {}), "images": images,
                             "licenses": [dict(x) for x in licenses],
                             "annotations": annotations})
