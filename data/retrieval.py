"""One entry point for image–text retrieval sets: COCO captions or an image folder."""

from __future__ import annotations

import os
from pathlib import Path

from kgmm.graph.errors import SourceNotFoundError

from .coco import coco_captions_file, load_coco_captions
from .imagefolder import captions_jsonl, load_image_captions
from .records import CaptionDataset


def load_retrieval(root: str | os.PathLike[str], split: str | None = None) -> CaptionDataset:
    """Read a retrieval set from ``root``, whichever of the two layouts it has.

    With a ``split``: COCO ``captions_{sub}.json`` when present, else
    ``captions_{split}.jsonl``. Without one: ``captions.jsonl``.

    Raises:
        SourceNotFoundError: neither layout is there.
    """
    root = Path(root)
    if split is not None and coco_captions_file(root, split) is not None:
        return load_coco_captions(root, split)
    if captions_jsonl(root, split).is_file():
        return load_image_captions(root, split)
    coco = f"COCO captions for split {split!r} or " if split is not None else ""
    raise SourceNotFoundError(f"{root}: no {coco}{captions_jsonl(root, split).name}")
