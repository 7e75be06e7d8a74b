"""The 1000 ImageNet-1k classes as WordNet synsets, in classifier output order.

Class ``i`` of an ImageNet-1k classifier is the ``i``-th wnid in sorted order (``n01440764``
tench … ``n15075141`` toilet tissue). The wnids are WordNet **3.0** noun offsets (``n`` +
8 digits); they differ from WordNet 3.1 offsets, so join them to other WordNet versions through
sense keys, never by offset.

Source: the data files that ``timm`` ships (``timm/data/_info/imagenet_synsets.txt`` for the
order, ``imagenet_synset_to_lemma.txt`` for the lemmas), read directly from the installed
package without importing ``timm`` itself. ``name`` is the first lemma (``"tabby"`` of
``"tabby, tabby cat"``); two names occur twice (``crane``: bird and machine; ``maillot``), so
use the wnid as the key.
"""

from __future__ import annotations

import csv
import functools
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

NUM_CLASSES = 1000
_WNID = re.compile(r"^n\d{8}$")


@dataclass(frozen=True)
class ImageNetClass:
    """One ImageNet-1k class: its index, WordNet 3.0 id, display name and all lemmas."""

    index: int
    wnid: str
    name: str
    lemmas: tuple[str, ...]


def _timm_info_dir() -> Path:
    spec = importlib.util.find_spec("timm")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("the ImageNet class list comes from the 'timm' package "
                                  "(pip install timm)")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "_info"
    if not (path / "imagenet_synsets.txt").is_file():
        raise FileNotFoundError(f"imagenet_synsets.txt not found under {path}")
    return path


@functools.cache
def imagenet_classes() -> tuple[ImageNetClass, ...]:
    """All 1000 classes in classifier index order (read once, then cached)."""
    info = _timm_info_dir()
    wnids = (info / "imagenet_synsets.txt").read_text(encoding="utf-8").split()
    if len(wnids) != NUM_CLASSES or not all(_WNID.match(w) for w in wnids):
        raise ValueError("unexpected content in timm's imagenet_synsets.txt")
    if wnids != sorted(wnids):
        raise ValueError("timm's imagenet_synsets.txt is not in class-index (sorted) order")
    wanted = set(wnids)
    lemmas: dict[str, tuple[str, ...]] = {}
    with open(info / "imagenet_synset_to_lemma.txt", encoding="utf-8", newline="") as fh:
        for row in csv.reader(fh, delimiter="\t"):
            if len(row) >= 2 and row[0] in wanted:
                lemmas[row[0]] = tuple(x.strip() for x in row[1].split(",") if x.strip())
    missing = wanted - lemmas.keys()
    if missing:
        raise ValueError(f"no lemmas for {len(missing)} ImageNet classes, e.g. {min(missing)}")
    return tuple(ImageNetClass(i, w, lemmas[w][0], lemmas[w]) for i, w in enumerate(wnids))


def imagenet_wnids() -> list[str]:
    """The 1000 wnids, index ``i`` = classifier output ``i``."""
    return [c.wnid for c in imagenet_classes()]


def imagenet_names() -> list[str]:
    """Display names (first lemma) in classifier order."""
    return [c.name for c in imagenet_classes()]


def top_synsets(logits: Tensor, k: int = 5) -> list[list[tuple[str, str, float]]]:
    """Top-``k`` classes per row of ``[B, 1000]`` (or ``[1000]``) logits.

    Returns, for each image, ``[(wnid, name, probability), …]`` best first; probabilities are
    the softmax over all 1000 classes.
    """
    if logits.dim() == 1:
        logits = logits.unsqueeze(0)
    if logits.dim() != 2 or logits.shape[1] != NUM_CLASSES:
        raise ValueError(f"expected [B, {NUM_CLASSES}] logits, got {tuple(logits.shape)}")
    classes = imagenet_classes()
    k = max(0, min(int(k), NUM_CLASSES))
    probs = torch.softmax(logits.detach().float(), dim=-1)
    values, indices = probs.topk(k, dim=-1)
    return [[(classes[i].wnid, classes[i].name, float(p))
             for p, i in zip(vals.tolist(), idx.tolist(), strict=True)]
            for vals, idx in zip(values, indices, strict=True)]
