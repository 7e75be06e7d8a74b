"""Ranking whole splits: first-stage lists, re-ranking features, combiners, metrics.

For each direction and level (text→image: the split's queries of that level against all its
images; image→text: each image against the distinct captions of that level) the dual tower
ranks the whole gallery; its top ``k`` form the candidate list that every re-ranker re-orders
(items below ``k`` keep their dual-tower order). Re-rankers:

* ``dual`` — the first stage alone;
* ``cross`` — a combiner over the additive and transformer cross-attention scores;
* ``kg`` — a combiner over the KG features (:mod:`.kg_features`);
* ``cross+kg`` — a combiner over both.

Every combiner sees the standardised first-stage score too (:mod:`.combiner`), and is fitted
on a split the dual tower was not trained on (validation).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .combiner import ScoreCombiner, train_combiner
from .cross import FeatureRows, score_pairs
from .data import RetrievalSplit
from .features import FeatureTable
from .kg_features import FEATURES, KGFeatures
from .linking import ConceptGroup
from .metrics import mean_metrics
from .model import DIRECTIONS, RetrievalModel

ProgressFn = Callable[[str, int, int], None]


@dataclass
class SplitData:
    """A split with its frozen features and linked concepts."""

    split: RetrievalSplit
    texts: FeatureTable
    images: FeatureTable
    image_groups: list[list[ConceptGroup]]
    _text_groups: dict[int, list[ConceptGroup]] = field(default_factory=dict)
    _text_row: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._text_row = self.texts.index()

    def text_row(self, text: str) -> int:
        return self._text_row[text]

    def text_groups(self, model: RetrievalModel, row: int) -> list[ConceptGroup]:
        found = self._text_groups.get(row)
        if found is None:
            found = model.text_concepts([self.texts.keys[row]],
                                        self.texts.pooled[row:row + 1])[0]
            self._text_groups[row] = found
        return found

    def rows(self) -> tuple[FeatureRows, FeatureRows]:
        return (FeatureRows(self.texts.pooled, self.texts.tokens, self.texts.mask),
                FeatureRows(self.images.pooled, self.images.tokens, self.images.mask))


def split_texts(split: RetrievalSplit) -> list[str]:
    """Every caption and query text of a split, each once."""
    return list(dict.fromkeys([c for caps in split.captions for c, _ in caps]
                              + [q.text for q in split.queries]))


def prepare_split(model: RetrievalModel, split: RetrievalSplit, *,
                  texts: FeatureTable | None = None, images: FeatureTable | None = None,
                  progress: ProgressFn | None = None) -> SplitData:
    """Encode (or take) the split's features and link its images' concepts."""
    wanted = split_texts(split)
    if texts is None:
        texts = model.encode_texts(wanted)
    elif not set(wanted) <= set(texts.keys):
        raise ValueError("the text feature table does not cover the split's texts")
    keys = [str(i) for i in split.image_ids]
    if images is None:
        missing = [p for p in split.image_paths if p is None]
        if missing:
            from kgmm.graph.errors import InputError

            raise InputError(f"{len(missing)} image files of split {split.split!r} are not on "
                             "disk", source=split.root)
        images = model.encode_images(list(split.image_paths), keys, progress=progress)
    else:
        images = images.select(keys)
    return SplitData(split, texts, images, model.image_concepts(images))


@dataclass
class RankList:
    """One query's candidates: ``candidates`` are image positions (t2i) or text rows (i2t)."""

    direction: str
    level: str
    query: int  # text row (t2i) or image position (i2t)
    candidates: np.ndarray  # top-k of the dual tower, best first
    first: np.ndarray  # their dual scores
    tail: np.ndarray  # the rest of the gallery in dual order
    relevant: set[int]


def build_lists(model: RetrievalModel, data: SplitData, direction: str, level: str,
                k: int = 100) -> list[RankList]:
    """Dual-tower candidate lists of every query of ``direction``/``level``."""
    with torch.no_grad():
        z_img = model.dual.encode_image(data.images.pooled)
        z_txt = model.dual.encode_text(data.texts.pooled)
    out = []
    if direction == "t2i":
        pos = {i: n for n, i in enumerate(data.split.image_ids)}
        queries = [q for q in data.split.queries if q.level == level]
        if not queries:
            return []
        rows = [data.text_row(q.text) for q in queries]
        scores = (z_txt[rows] @ z_img.T).numpy()
        for q, row, s in zip(queries, rows, scores, strict=True):
            order = np.argsort(-s, kind="stable")
            out.append(RankList("t2i", level, row, order[:k], s[order[:k]], order[k:],
                                {pos[i] for i in q.relevant}))
    else:
        gallery, relevant = data.split.gallery(level)
        if not gallery:
            return []
        rows = np.array([data.text_row(t) for t in gallery])
        scores = (z_img @ z_txt[rows].T).numpy()
        for i, s in enumerate(scores):
            if not relevant[i]:
                continue
            order = np.argsort(-s, kind="stable")
            out.append(RankList("i2t", level, i, rows[order[:k]], s[order[:k]], rows[order[k:]],
                                {int(rows[j]) for j in relevant[i]}))
    return out


def list_features(model: RetrievalModel, data: SplitData, lst: RankList,
                  want: Sequence[str] = ("cross", "kg")) -> dict[str, Any]:
    """Re-ranking inputs of one list: ``additive``/``transformer`` cross scores ``[K]``,
    ``kg`` features ``[K, len(FEATURES)]`` and the :class:`KGFeatures` objects (evidence)."""
    feats: dict[str, Any] = {}
    k = len(lst.candidates)
    if "cross" in want and model.cross:
        texts, images = data.rows()
        q = np.full(k, lst.query)
        t_rows, i_rows = (q, lst.candidates) if lst.direction == "t2i" else (lst.candidates, q)
        for kind, scorer in model.cross.items():
            feats[kind] = score_pairs(scorer, texts, images, t_rows, i_rows).numpy()
    if "kg" in want:
        graph = model.graph
        if lst.direction == "t2i":
            result = graph.features(data.text_groups(model, lst.query),
                                    [data.image_groups[c] for c in lst.candidates])
        else:
            image = data.image_groups[lst.query]
            result = graph.features([data.text_groups(model, int(c)) for c in lst.candidates],
                                    [image] * k)
        feats["kg"], feats["kg_result"] = result.values, result
    return feats


def input_names(model: RetrievalModel, ranker: str) -> list[str]:
    """Names of a ranker's combiner inputs (besides the first-stage score)."""
    cross = list(model.cross)
    kg = [f"kg_{f}" for f in FEATURES]
    return {"cross": cross, "kg": kg, "cross+kg": cross + kg}.get(ranker, [])


def ranker_inputs(model: RetrievalModel, ranker: str, feats: dict[str, Any]) -> np.ndarray:
    """The ``[K, F]`` inputs of ``ranker``'s combiner from :func:`list_features`."""
    cols = []
    if ranker in ("cross", "cross+kg"):
        cols += [feats[kind][:, None] for kind in model.cross]
    if ranker in ("kg", "cross+kg"):
        cols.append(feats["kg"])
    return np.concatenate(cols, axis=1).astype(np.float32)


def rerank_order(model: RetrievalModel, ranker: str, lst: RankList,
                 feats: dict[str, Any]) -> np.ndarray:
    """Positions into ``lst.candidates``, best first."""
    if ranker == "dual":
        return np.arange(len(lst.candidates))
    combiner = model.combiners[ranker][lst.direction]
    scores = combiner.score(lst.first, ranker_inputs(model, ranker, feats))
    return np.argsort(-scores, kind="stable")


def _want(rankers: Sequence[str]) -> list[str]:
    want = []
    if any(r in ("cross", "cross+kg") for r in rankers):
        want.append("cross")
    if any(r in ("kg", "cross+kg") for r in rankers):
        want.append("kg")
    return want


def collect(model: RetrievalModel, data: SplitData, *, k: int = 100,
            directions: Sequence[str] = DIRECTIONS, want: Sequence[str] = ("cross", "kg"),
            progress: ProgressFn | None = None) -> list[tuple[RankList, dict[str, Any]]]:
    """Every list of the split with its features."""
    lists = [lst for d in directions
             for level in (data.split.levels if d == "t2i" else data.split.caption_levels)
             for lst in build_lists(model, data, d, level, k)]
    out = []
    for n, lst in enumerate(lists):
        out.append((lst, list_features(model, data, lst, want)))
        if progress is not None:
            progress(f"re-rank {data.split.split}", n + 1, len(lists))
    return out


def fit_combiners(model: RetrievalModel, collected: list[tuple[RankList, dict[str, Any]]],
                  rankers: Sequence[str] = ("cross", "kg", "cross+kg"), *, hidden: int = 0,
                  log: Callable[[str], None] | None = None) -> None:
    """Fit one combiner per (ranker, direction) on collected lists; stored in the model."""
    for ranker in rankers:
        names = input_names(model, ranker)
        if not names or ("cross" in ranker and not model.cross):
            continue
        for direction in DIRECTIONS:
            lists = []
            for lst, feats in collected:
                if lst.direction != direction:
                    continue
                rel = np.array([int(c) in lst.relevant for c in lst.candidates])
                lists.append((lst.first, ranker_inputs(model, ranker, feats), rel))
            if not lists:
                continue
            combiner = ScoreCombiner(names, hidden)
            train_combiner(combiner, lists, log=log)
            model.combiners.setdefault(ranker, {})[direction] = combiner


def evaluate_collected(model: RetrievalModel, collected: list[tuple[RankList, dict[str, Any]]],
                       rankers: Sequence[str]) -> dict[str, Any]:
    """``metrics[direction][level][ranker]`` (:func:`~.metrics.mean_metrics`)."""
    groups: dict[tuple[str, str, str], list[tuple[list[int], set[int]]]] = {}
    for lst, feats in collected:
        for ranker in rankers:
            order = rerank_order(model, ranker, lst, feats)
            ranked = [int(c) for c in lst.candidates[order]] + [int(c) for c in lst.tail]
            groups.setdefault((lst.direction, lst.level, ranker), []).append(
                (ranked, lst.relevant))
    metrics: dict[str, Any] = {}
    for (direction, level, ranker), items in groups.items():
        metrics.setdefault(direction, {}).setdefault(level, {})[ranker] = mean_metrics(items)
    return metrics


def evaluate(model: RetrievalModel, data: SplitData, *, k: int = 100,
             rankers: Sequence[str] | None = None,
             progress: ProgressFn | None = None) -> dict[str, Any]:
    """The metrics table of one split for every ranker the model has."""
    rankers = list(rankers or model.rankers())
    collected = collect(model, data, k=k, want=_want(rankers), progress=progress)
    return evaluate_collected(model, collected, rankers)


def kg_evidence(result: KGFeatures, position: int) -> list[Any]:
    """The KG matches of candidate ``position`` of a list (either direction)."""
    return result.evidence(position)
