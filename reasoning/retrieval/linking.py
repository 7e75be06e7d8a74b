"""Linking a query or a candidate to KG entities, as groups of alternatives.

A :class:`ConceptGroup` is one thing that was seen or said — a mention in a text, a detected
object in an image, a given concept — with its alternative entities and their probabilities
(they sum to at most 1) and a weight (1 for mentions and given concepts, the objectness for
detections):

* **text** (:func:`link_text`): :func:`~kgmm.reasoning.question_linking.find_mentions`
  (lexicon n-grams, longest first), senses re-scored against the sentence vector by
  :func:`~kgmm.reasoning.question_linking.rescore_mentions` when node embeddings are given.
  Number words and quantifiers ("two", "several") are not mentions.
* **image** (:func:`link_detections`): scene-parser detections; the listed candidates' linking
  scores become probabilities by a softmax (as in
  :func:`~kgmm.reasoning.scene_graph.observations_from_detections`).
* **given** (:func:`link_entities`): entity ids (a scene graph, concept tags), each its own
  group; an id not in the KG is an :class:`~kgmm.graph.errors.InputError`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from kgmm.graph.compiled import CompiledKG
from kgmm.graph.errors import InputError

#: Words that count things rather than name them.
NUMBER_WORDS = frozenset({
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "dozen", "several", "few", "couple", "pair", "lot", "lots", "plenty",
    "single", "double", "many", "some", "group", "bunch", "set",
})


_INDEX_CACHE: dict[str, dict[str, int | None]] = {}


def entity_index(kg: CompiledKG, entity_id: str) -> int | None:
    """``kg.find_index`` memoised per snapshot (index payloads repeat the same ids)."""
    cache = _INDEX_CACHE.setdefault(kg.content_hash, {})
    if entity_id not in cache:
        if len(cache) > 500_000:
            cache.clear()
        cache[entity_id] = kg.find_index(entity_id)
    return cache[entity_id]


@dataclass(frozen=True)
class ConceptGroup:
    """Alternative entities (KG indices with probabilities) for one mention/object/concept."""

    candidates: tuple[tuple[int, float], ...]
    weight: float = 1.0
    span: str = ""
    source: str = "text"  # "text", "image" or "given"

    def to_json(self, kg: CompiledKG) -> dict[str, Any]:
        return {"span": self.span, "source": self.source, "weight": round(self.weight, 4),
                "entities": [[kg.id_of(i), round(p, 4)] for i, p in self.candidates]}

    @classmethod
    def from_json(cls, data: dict[str, Any], kg: CompiledKG, where: str = "") -> ConceptGroup:
        """Inverse of :meth:`to_json`; unknown entity ids raise :class:`InputError`."""
        cands = []
        for entity, prob in data.get("entities", []):
            index = entity_index(kg, str(entity))
            if index is None:
                raise InputError(f"entity {entity!r} is not in the knowledge graph",
                                 record=where or None, field="entities")
            cands.append((index, float(prob)))
        return cls(tuple(cands), float(data.get("weight", 1.0)), str(data.get("span", "")),
                   str(data.get("source", "given")))


def link_text(kg: CompiledKG, text: str, *, sentence_vector: torch.Tensor | None = None,
              node_embeddings: Callable[[list[int]], torch.Tensor] | None = None,
              max_senses: int = 3) -> list[ConceptGroup]:
    """One group per lexical mention of ``text`` (see the module docstring)."""
    from kgmm.reasoning.question_linking import find_mentions, rescore_mentions

    mentions = [m for m in find_mentions(kg, text, max_senses=max_senses)
                if not set(m.text.split()) <= NUMBER_WORDS]
    if sentence_vector is not None and node_embeddings is not None:
        mentions = rescore_mentions(mentions, sentence_vector, node_embeddings)
    return [ConceptGroup(tuple(zip(m.candidates, m.scores, strict=True)), 1.0, m.text, "text")
            for m in mentions]


def link_detections(detections: Sequence[Any], *, min_objectness: float = 0.0
                    ) -> list[ConceptGroup]:
    """Scene-parser :class:`~kgmm.reasoning.scene_parser.Detection` s (entity ids = KG indices
    as strings) as groups weighted by objectness."""
    groups = []
    for det in detections:
        if det.objectness < min_objectness or not det.entities:
            continue
        scores = torch.tensor([s for _, s in det.entities], dtype=torch.float32)
        probs = torch.softmax(scores, dim=0).tolist()
        cands = tuple((int(e), float(p)) for (e, _), p in zip(det.entities, probs, strict=True))
        groups.append(ConceptGroup(cands, float(det.objectness),
                                   f"x={det.center[0]:.2f},y={det.center[1]:.2f}", "image"))
    return groups


def link_entities(kg: CompiledKG, entities: Iterable[str | tuple[str, float]], *,
                  where: str = "") -> list[ConceptGroup]:
    """Given entity ids (optionally with a confidence) as one group each."""
    groups = []
    for item in entities:
        entity, weight = (item, 1.0) if isinstance(item, str) else (str(item[0]),
                                                                    float(item[1]))
        index = entity_index(kg, entity)
        if index is None:
            raise InputError(f"entity {entity!r} is not in the knowledge graph",
                             record=where or None, field="entities")
        groups.append(ConceptGroup(((index, 1.0),), weight, kg.label(index), "given"))
    return groups


class ImageLinker:
    """Scene parser + its entity vocabulary: image grid tokens → concept groups."""

    def __init__(self, parser: Any, entity_indices: Sequence[int], node_embeddings: Any,
                 *, top_k: int = 3, min_objectness: float = 0.0) -> None:
        self.parser = parser.eval()
        self.entity_indices = [int(i) for i in entity_indices]
        self.matrix = node_embeddings(self.entity_indices) if self.entity_indices else None
        self.ids = [str(i) for i in self.entity_indices]
        self.top_k = top_k
        self.min_objectness = min_objectness

    def __call__(self, tokens: torch.Tensor, grid_size: Sequence[int] | None = None,
                 batch_size: int = 64, detail: torch.Tensor | None = None
                 ) -> list[list[ConceptGroup]]:
        """``tokens [B, P, D]`` (and the finer maps ``detail [B, D', H, W]`` a two-scale
        parser reads) → groups per image."""
        out: list[list[ConceptGroup]] = []
        if self.matrix is None:
            return [[] for _ in range(tokens.shape[0])]
        for start in range(0, tokens.shape[0], batch_size):
            chunk = tokens[start:start + batch_size].float()
            fine = None if detail is None else detail[start:start + batch_size].float()
            dets = self.parser.parse(chunk, self.matrix, self.ids, grid_size=grid_size,
                                     top_k=self.top_k, detail=fine)
            out.extend(link_detections(d, min_objectness=self.min_objectness) for d in dets)
        return out
