"""ImageNet classes as KG entities: a visual entity linker that needs no training.

An ImageNet-1k classifier's classes are WordNet 3.0 synsets. The KG may be another WordNet
version (3.1 offsets differ) or another graph altogether, so classes are joined by *meaning*,
not by offset: for each class, the KG entities named by any of its lemmas are candidates, and
the candidate whose description is closest to the class's WordNet definition (character
similarity, ``difflib``) wins; a class with no named candidate stays unlinked. Glosses rarely
change between WordNet versions, so on WordNet 3.1 almost every class links to its own synset.

:func:`imagenet_observation` turns a classifier's probabilities into one whole-image
:class:`~.scene_graph.ObjectObservation` — how ``kgmm.answer`` still links entities when the
scene parser (trained on one picture style) finds nothing, e.g. on a real photograph.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from kgmm.graph.compiled import CompiledKG

from .encoders.imagenet import _timm_info_dir, imagenet_classes
from .scene_graph import ObjectObservation

_CACHE: dict[str, np.ndarray] = {}


def imagenet_definitions() -> dict[str, str]:
    """``wnid → WordNet 3.0 definition`` (timm's ``imagenet_synset_to_definition.txt``)."""
    text = (_timm_info_dir() / "imagenet_synset_to_definition.txt").read_text(encoding="utf-8")
    out = {}
    for line in text.splitlines():
        wnid, _, definition = line.partition("\t")
        out[wnid.strip()] = definition.strip()
    return out


def link_imagenet_classes(kg: CompiledKG) -> np.ndarray:
    """``[1000]`` KG node index of each ImageNet class (``-1``: not in the KG); cached per
    snapshot content hash."""
    cached = _CACHE.get(kg.content_hash)
    if cached is not None:
        return cached
    definitions = imagenet_definitions()
    out = np.full(len(imagenet_classes()), -1, dtype=np.int64)
    for cls in imagenet_classes():
        candidates: list[int] = []
        for lemma in cls.lemmas:
            candidates += [i for i in kg.lookup(lemma, fold_plurals=False)
                           if i not in candidates]
        if not candidates:
            continue
        definition = definitions.get(cls.wnid, "").lower()

        def similarity(index: int, definition: str = definition) -> float:
            desc = kg.description(index).lower()
            return difflib.SequenceMatcher(None, definition, desc).ratio()

        out[cls.index] = max(candidates, key=similarity)
    _CACHE[kg.content_hash] = out
    return out


@dataclass(frozen=True)
class VisualLinkConfig:
    """How many classes to keep and how sure they must be."""

    top_k: int = 5
    min_probability: float = 0.05


def imagenet_candidates(logits: Tensor, links: np.ndarray,
                        config: VisualLinkConfig = VisualLinkConfig()) -> list[tuple[int, float]]:
    """``[(KG index, probability)]`` of the top classes of one image's ``logits [1000]``,
    probabilities ``softmax(logits)`` summed over classes that link to the same entity."""
    probs = torch.softmax(logits.float(), dim=-1)
    top = torch.topk(probs, min(config.top_k, probs.numel()))
    merged: dict[int, float] = {}
    for p, c in zip(top.values.tolist(), top.indices.tolist(), strict=True):
        index = int(links[c])
        if index >= 0 and p >= config.min_probability:
            merged[index] = merged.get(index, 0.0) + p
    return sorted(merged.items(), key=lambda kv: -kv[1])


def imagenet_observation(candidates: list[tuple[int, float]],
                         node_embeddings: Callable[[np.ndarray], Tensor]) -> ObjectObservation:
    """One whole-image object at the centre whose embedding is the probability-weighted mean
    of its candidates' node embeddings, ``e = Σ_i p_i n_i / Σ_i p_i`` (the scene parser's
    embedding space)."""
    index = np.asarray([i for i, _ in candidates], dtype=np.int64)
    weights = torch.tensor([p for _, p in candidates])
    embedding = (node_embeddings(index).float() * weights[:, None]).sum(0) / weights.sum()
    total = float(weights.sum())
    return ObjectObservation(x=0.5, y=0.5, objectness=min(total, 1.0),
                             candidates=[(i, p / total) for i, p in candidates],
                             embedding=embedding)
