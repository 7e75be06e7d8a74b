"""A plain image folder with captions in JSON Lines: reader and writer of retrieval records.

Layout::

    root/images/...                 the image files, in any sub-folders
    root/captions.jsonl             {"image": "dogs/rex.png", "captions": ["a dog", ...]}
    root/captions_{split}.jsonl     the same for a named split

``image`` is relative to ``root/images/`` (no absolute paths, no ``..``). ``image_id``, when
a line has one, is the id; otherwise the ``image`` path is. Other keys go to ``extra``.
A duplicate id is an :class:`InputError`; so is a line without ``image`` or ``captions``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from kgmm.graph.errors import InputError

from ._io import Checker, ImageFinder, safe_relative
from .coco import record_file_name
from .jsonl import read_jsonl, write_jsonl
from .records import CaptionDataset, RecordId, RetrievalRecord

IMAGES_DIR = "images"
_CORE = ("image", "captions", "image_id")


def captions_jsonl(root: str | os.PathLike[str], split: str | None = None) -> Path:
    """``root/captions.jsonl``, or ``root/captions_{split}.jsonl`` for a named split."""
    return Path(root) / ("captions.jsonl" if split is None else f"captions_{split}.jsonl")


def load_image_captions(root: str | os.PathLike[str], split: str | None = None) -> CaptionDataset:
    """Read an image folder with a captions JSONL file (layout in the module docstring).

    Returns:
        A :class:`CaptionDataset` in line order; images not on disk are in its
        ``missing_images`` and have ``image_path=None``.

    Raises:
        SourceNotFoundError: no captions file.
        InputError: a malformed line, naming the file, the line and the field.
    """
    root = Path(root)
    path = captions_jsonl(root, split)
    finder = ImageFinder([root / IMAGES_DIR])
    records = []
    seen: set[RecordId] = set()
    for line, obj in read_jsonl(path):
        check = Checker(path, obj, None, line)
        image = check.text("image")
        assert image is not None
        check.record = f"image {image!r}"
        if not safe_relative(image):
            raise check.error("expected a path relative to images/, without '..'", "image")
        captions = check.texts("captions")
        image_id = check.ident("image_id", required=False)
        if image_id is None:
            image_id = image
        if image_id in seen:
            raise check.error(f"duplicate image id {image_id!r}", "image_id")
        seen.add(image_id)
        records.append(RetrievalRecord(
            image_id=image_id,
            image_path=finder.find(image),
            captions=tuple(captions or ()),
            file_name=image,
            extra={k: v for k, v in obj.items() if k not in _CORE},
        ))
    finder.warn(f"image captions {path}")
    return CaptionDataset(records, missing_images=finder.missing, sources=[path])


def write_image_captions(
    records: Iterable[RetrievalRecord],
    root: str | os.PathLike[str],
    split: str | None = None,
    *,
    copy_images: bool = False,
) -> Path:
    """Write records as ``root/captions[_{split}].jsonl``; return its path.

    Each line is ``{"image": file name, "captions": [...], **extra}``, plus ``"image_id"``
    when the id differs from the file name. The file name is the record's ``file_name``,
    else its image file's name. With ``copy_images``, each record's image (when on disk) is
    copied to ``root/images/<file name>``.

    Raises:
        InputError: a duplicate image id, a record with no usable file name.
    """
    root = Path(root)
    path = captions_jsonl(root, split)
    lines: list[dict[str, Any]] = []
    seen: set[RecordId] = set()
    for i, rec in enumerate(records):
        label = f"{i} (image_id {rec.image_id!r})"
        if rec.image_id in seen:
            raise InputError("duplicate image id", source="<records>", record=label,
                             field="image_id")
        seen.add(rec.image_id)
        name = record_file_name(rec, i)
        if not safe_relative(name):
            raise InputError(f"expected a relative path without '..', got {name!r}",
                             source="<records>", record=label, field="file_name")
        line: dict[str, Any] = {"image": name, "captions": list(rec.captions)}
        if rec.image_id != name:
            line["image_id"] = rec.image_id
        line.update((k, v) for k, v in rec.extra.items() if k not in _CORE)
        lines.append(line)
        if copy_images and rec.image_path is not None:
            target = root / IMAGES_DIR / name
            if target.resolve() != rec.image_path.resolve():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(rec.image_path, target)
    return write_jsonl(path, lines)
