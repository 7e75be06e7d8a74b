"""Re-ranking any candidate list from any retriever, with evidence.

The query is a text (text→image: candidates are images) or an image (image→text: candidates
are captions). A candidate is a :class:`Candidate` or a dict with the same fields; a plain
string is a caption candidate, a path or PIL image an image candidate. Its KG concepts come
from, in order of preference: ``entities`` (a scene graph, concept tags), the ``image`` (the
scene parser on the aligned image features), or the ``text`` (its caption, linked through the
lexicon). The first-stage ``score`` is optional (without it the given order is the first
stage).

Methods: ``"dual"`` (first stage only), ``"cross"``, ``"kg"``, ``"cross+kg"`` (see
:mod:`.engine`). Errors: an empty query, a candidate with nothing to link or score, an entity
id that is not in the KG — each an :class:`~kgmm.graph.errors.InputError` naming the input.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kgmm.graph.errors import InputError

from .cross import FeatureRows, score_pairs
from .engine import ranker_inputs
from .features import FeatureTable
from .kg_features import FEATURES
from .linking import ConceptGroup, link_entities, link_text
from .model import RANKERS, RetrievalModel

MAX_QUERY_CHARS = 1000


class QueryInputError(InputError):
    """A query that is empty, too long or of an unsupported type."""


class CandidateInputError(InputError):
    """A candidate that cannot be linked or scored."""


@dataclass
class Candidate:
    """One first-stage result: an id, its score and whatever describes it."""

    id: Any
    score: float | None = None
    text: str | None = None
    image: Any = None
    entities: list[Any] | None = None
    payload: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def coerce(cls, item: Any, position: int) -> Candidate:
        if isinstance(item, Candidate):
            return item
        if isinstance(item, str):
            return cls(id=position, text=item)
        if isinstance(item, Path) or type(item).__module__.startswith("PIL"):
            return cls(id=str(item) if isinstance(item, Path) else position, image=item)
        if isinstance(item, dict):
            known = {"id", "score", "text", "image", "entities", "caption", "concepts"}
            payload = {k: v for k, v in item.items() if k not in known}
            return cls(id=item.get("id", position), score=item.get("score"),
                       text=item.get("text", item.get("caption")), image=item.get("image"),
                       entities=item.get("entities"), payload=payload
                       | ({"concepts": item["concepts"]} if "concepts" in item else {}))
        raise CandidateInputError(f"unsupported candidate type {type(item).__name__}",
                                  record=position, field="candidate")


@dataclass
class RerankEvidence:
    """Why a candidate is where it is."""

    query_entities: list[dict[str, Any]]
    candidate_entities: list[dict[str, Any]]
    matches: list[dict[str, Any]]
    features: dict[str, float]
    linked: bool


@dataclass
class RankedCandidate:
    """A re-ranked candidate: new score and rank, the first-stage ones, the evidence."""

    id: Any
    score: float
    rank: int
    first_stage_rank: int
    first_stage_score: float | None
    text: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    evidence: RerankEvidence | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["id"] = self.id if isinstance(self.id, int | str) else str(self.id)
        return data


def check_query(query: Any) -> str | Any:
    """A stripped text query, or an image query as given; empty/oversized text is an error."""
    if isinstance(query, str):
        text = " ".join(query.split())
        if not text:
            raise QueryInputError("the query is empty", field="query")
        if len(text) > MAX_QUERY_CHARS:
            raise QueryInputError(f"the query has {len(text):,} characters; at most "
                                  f"{MAX_QUERY_CHARS:,} are accepted", field="query")
        return text
    if query is None:
        raise QueryInputError("the query is missing", field="query")
    return query


def _image_table(model: RetrievalModel, images: list[Any], keys: list[str]) -> FeatureTable:
    return model.encode_images(images, keys)


def candidate_concepts(model: RetrievalModel, cands: list[Candidate],
                       image_table: FeatureTable | None, image_rows: dict[int, int],
                       text_table: FeatureTable | None, text_rows: dict[int, int]
                       ) -> list[list[ConceptGroup]]:
    """Concept groups of each candidate (module docstring: entities, image, text)."""
    kg = model.kg
    out: list[list[ConceptGroup]] = []
    parsed = model.image_concepts(image_table) if image_table is not None else []
    for n, cand in enumerate(cands):
        where = f"candidate {cand.id!r}"
        if cand.entities is not None:
            out.append(link_entities(kg, cand.entities, where=where))
        elif "concepts" in cand.payload:
            out.append([ConceptGroup.from_json(g, kg, where) for g in cand.payload["concepts"]])
        elif n in image_rows:
            out.append(parsed[image_rows[n]])
        elif n in text_rows and text_table is not None:
            row = text_rows[n]
            out.append(link_text(kg, text_table.keys[row],
                                 sentence_vector=text_table.pooled[row],
                                 node_embeddings=model.node_embeddings))
        else:
            out.append([])
    return out


def _concat(a: FeatureTable | None, b: FeatureTable | None) -> FeatureTable | None:
    """Rows of ``a`` then ``b`` (token tables padded to the longer length)."""
    if a is None or b is None:
        return a if b is None else b
    tokens = mask = None
    if a.tokens is not None and b.tokens is not None and a.mask is not None \
            and b.mask is not None:
        length = max(a.tokens.shape[1], b.tokens.shape[1])

        def pad(t: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.pad(t, (0, 0, 0, length - t.shape[1])) if t.dim() == 3 \
                else torch.nn.functional.pad(t, (0, length - t.shape[1]))

        tokens = torch.cat([pad(a.tokens.half()), pad(b.tokens.half())])
        mask = torch.cat([pad(a.mask), pad(b.mask)])
    return FeatureTable(a.keys + b.keys, torch.cat([a.pooled, b.pooled]), tokens, mask,
                        a.encoder_key)


def rerank_candidates(model: RetrievalModel, query: Any, candidates: list[Any], *,
                      k: int | None = 10, method: str = "kg", evidence: bool = True,
                      strict: bool = False, query_features: FeatureTable | None = None
                      ) -> list[RankedCandidate]:
    """Re-rank ``candidates`` for ``query`` (module docstring); the best ``k`` (all if None).

    ``strict``: a candidate that links to no KG entity is an error instead of scoring 0 on
    the KG features. ``query_features``: the query's frozen features when the first stage
    already computed them (one row; with tokens for the cross-attention re-rankers)."""
    query = check_query(query)
    if method not in RANKERS:
        raise InputError(f"unknown re-ranker {method!r}; choose one of {', '.join(RANKERS)}",
                         field="method")
    if method != "dual" and method not in model.rankers():
        raise InputError(f"this retriever has no {method!r} re-ranker "
                         f"(it has {', '.join(model.rankers())})", field="method")
    if k is not None and k < 1:
        raise InputError(f"k must be at least 1, got {k}", field="k")
    cands = [Candidate.coerce(c, i) for i, c in enumerate(candidates)]
    if not cands:
        return []
    text_query = isinstance(query, str)
    direction = "t2i" if text_query else "i2t"
    for n, cand in enumerate(cands):
        has_text = isinstance(cand.text, str) and cand.text.strip() != ""
        usable = cand.entities is not None or "concepts" in cand.payload or \
            (cand.image is not None if text_query else has_text)
        if text_query and not usable and has_text:
            usable = method in ("dual", "kg")  # a caption can stand in for the image's concepts
        if not usable and method != "dual":
            need = "an image, entities or a caption" if text_query else "a caption (text) or " \
                "entities"
            raise CandidateInputError(f"candidate {cand.id!r} has nothing to link: it needs "
                                      f"{need}", record=n, field="candidate")
    first = np.array([c.score for c in cands], dtype=np.float64) \
        if all(c.score is not None for c in cands) else None

    need_cross = method in ("cross", "cross+kg")
    need_kg = method in ("kg", "cross+kg")
    texts: list[str] = []
    text_rows: dict[int, int] = {}
    images: list[Any] = []
    image_rows: dict[int, int] = {}
    if not text_query and not need_cross and not need_kg and not evidence:
        pass
    elif text_query:
        texts.append(query)
        for n, cand in enumerate(cands):
            if cand.image is not None and (need_cross or (need_kg and cand.entities is None
                                                          and "concepts" not in cand.payload)):
                image_rows[n] = len(images)
                images.append(cand.image)
            elif isinstance(cand.text, str) and cand.text.strip():
                text_rows[n] = len(texts)
                texts.append(cand.text)
    else:
        images.append(query)
        for n, cand in enumerate(cands):
            if isinstance(cand.text, str) and cand.text.strip():
                text_rows[n] = len(texts)
                texts.append(cand.text)
    if need_cross and text_query and len(image_rows) < len(cands):
        missing = next(c for n, c in enumerate(cands) if n not in image_rows)
        raise CandidateInputError(f"candidate {missing.id!r} has no image: the cross-attention "
                                  "re-ranker scores (text, image) pairs", field="image")
    if need_cross and not text_query and len(text_rows) < len(cands):
        missing = next(c for n, c in enumerate(cands) if n not in text_rows)
        raise CandidateInputError(f"candidate {missing.id!r} has no text: the cross-attention "
                                  "re-ranker scores (text, image) pairs", field="text")
    usable_query = query_features is not None and len(query_features) == 1 and \
        (query_features.tokens is not None or not need_cross)
    if text_query:
        head = query_features if usable_query else model.encode_texts(texts[:1],
                                                                       tokens=need_cross)
        rest = model.encode_texts(texts[1:], tokens=need_cross) if len(texts) > 1 else None
        text_table = _concat(head, rest)
        image_table = _image_table(model, images, [str(i) for i in range(len(images))]) \
            if images else None
    else:
        text_table = model.encode_texts(texts, tokens=need_cross) if texts else None
        head = query_features if usable_query else None
        rest = _image_table(model, images[1:] if head is not None else images,
                            [str(i) for i in range(int(head is not None), len(images))]) \
            if len(images) > int(head is not None) else None
        image_table = _concat(head, rest)
        if image_table is not None:
            image_table.keys = [str(i) for i in range(len(image_table))]

    feats: dict[str, Any] = {}
    if need_cross and text_table is not None and image_table is not None:
        trows = FeatureRows(text_table.pooled, text_table.tokens, text_table.mask)
        irows = FeatureRows(image_table.pooled, image_table.tokens, image_table.mask)
        if text_query:
            t_idx, i_idx = [0] * len(cands), [image_rows[n] for n in range(len(cands))]
        else:
            t_idx, i_idx = [text_rows[n] for n in range(len(cands))], [0] * len(cands)
        for kind, scorer in model.cross.items():
            feats[kind] = score_pairs(scorer, trows, irows, t_idx, i_idx).numpy()

    kg_result: Any = None
    query_groups: list[ConceptGroup] = []
    cand_groups: list[list[ConceptGroup]] = [[] for _ in cands]
    cheap = all(c.entities is not None or "concepts" in c.payload for c in cands)
    if need_kg or (evidence and (cheap or not text_query)):
        if text_query:
            assert text_table is not None
            query_groups = link_text(model.kg, query, sentence_vector=text_table.pooled[0],
                                     node_embeddings=model.node_embeddings)
            img_rows = {n: r for n, r in image_rows.items()}
            cand_groups = candidate_concepts(model, cands, image_table if img_rows else None,
                                             img_rows, text_table, text_rows)
        else:
            assert image_table is not None
            query_groups = model.image_concepts(image_table.select(["0"]))[0]
            cand_groups = candidate_concepts(model, cands, None, {}, text_table, text_rows)
        if strict:
            for n, groups in enumerate(cand_groups):
                if not groups:
                    raise CandidateInputError(f"candidate {cands[n].id!r} links to no entity "
                                              "of the knowledge graph", record=n,
                                              field="candidate")
        graph = model.graph
        kg_result = graph.features(query_groups, cand_groups) if text_query else \
            graph.features(cand_groups, [query_groups] * len(cands))
        feats["kg"] = kg_result.values

    if method == "dual":
        scores = first if first is not None else -np.arange(len(cands), dtype=np.float64)
    else:
        combiner = model.combiners[method][direction]
        scores = combiner.score(first, ranker_inputs(model, method, feats))
    order = np.argsort(-np.asarray(scores), kind="stable")
    first_order = np.argsort(-first, kind="stable") if first is not None else \
        np.arange(len(cands))
    first_rank = np.empty(len(cands), dtype=np.int64)
    first_rank[first_order] = np.arange(len(cands))
    kg = model.kg
    out = []
    for rank, n in enumerate(order[:k] if k is not None else order):
        n = int(n)
        ev = None
        if evidence and kg_result is not None:
            matches = kg_result.evidence(n)
            ev = RerankEvidence(
                [g.to_json(kg) for g in query_groups], [g.to_json(kg) for g in cand_groups[n]],
                [m.to_dict() for m in matches],
                {f: round(float(v), 4) for f, v in zip(FEATURES, feats["kg"][n], strict=True)}
                | {kind: round(float(feats[kind][n]), 4) for kind in model.cross
                   if kind in feats},
                bool(query_groups) and bool(cand_groups[n]))
        cand = cands[n]
        out.append(RankedCandidate(cand.id, float(scores[n]), rank, int(first_rank[n]),
                                   cand.score, cand.text, dict(cand.payload), ev))
    return out


def encode_query(model: RetrievalModel, query: Any, tokens: bool = False
                 ) -> tuple[torch.Tensor, str, FeatureTable]:
    """The dual-tower vector of a text or image query, the direction it searches, and the
    query's frozen features (reusable by :func:`rerank_candidates`)."""
    query = check_query(query)
    with torch.no_grad():
        if isinstance(query, str):
            table = model.encode_texts([query], tokens=tokens)
            return model.dual.encode_text(table.pooled)[0], "t2i", table
        table = model.encode_images([query], ["0"], tokens=True)
        return model.dual.encode_image(table.pooled)[0], "i2t", table
