r"""Ranking metrics with binary relevance, averaged over queries (in percent).

For a query with relevant set :math:`\mathcal{R}` and ranked list :math:`c_1, c_2, \dots`:

* R@K (recall at K, the retrieval-literature hit rate): :math:`\mathbb{1}[\exists\, i \le K:
  c_i \in \mathcal{R}]` — with one relevant item (COCO text→image) it is the usual recall;
* MRR: :math:`1 / \min\{i : c_i \in \mathcal{R}\}` (0 when no relevant item is ranked);
* nDCG@K: :math:`\mathrm{DCG@K} / \mathrm{IDCG@K}` with
  :math:`\mathrm{DCG@K} = \sum_{i \le K} \mathbb{1}[c_i \in \mathcal{R}] / \log_2(i + 1)` and
  IDCG@K the DCG of a list with every relevant item first.

Queries without relevant items are skipped (and counted in ``skipped``).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Sequence
from typing import Any

KS = (1, 5, 10)


def query_metrics(ranked: Sequence[Hashable], relevant: Iterable[Hashable],
                  ks: Sequence[int] = KS, ndcg_k: int = 10) -> dict[str, float]:
    """R@K, MRR and nDCG@``ndcg_k`` of one ranked list (fractions in [0, 1])."""
    rel = set(relevant)
    first = next((i for i, c in enumerate(ranked) if c in rel), None)
    out = {f"R@{k}": float(first is not None and first < k) for k in ks}
    out["MRR"] = 0.0 if first is None else 1.0 / (first + 1)
    dcg = sum(1.0 / math.log2(i + 2) for i, c in enumerate(ranked[:ndcg_k]) if c in rel)
    idcg = sum(1.0 / math.log2(i + 2) for i in range(min(len(rel), ndcg_k)))
    out[f"nDCG@{ndcg_k}"] = dcg / idcg if idcg else 0.0
    return out


def mean_metrics(rankings: Iterable[tuple[Sequence[Hashable], Iterable[Hashable]]],
                 ks: Sequence[int] = KS, ndcg_k: int = 10) -> dict[str, Any]:
    """Average :func:`query_metrics` over ``(ranked, relevant)`` pairs, in percent, rounded to
    0.01, plus ``queries`` and ``skipped`` counts."""
    sums: dict[str, float] = {}
    n = skipped = 0
    for ranked, relevant in rankings:
        rel = set(relevant)
        if not rel:
            skipped += 1
            continue
        for key, value in query_metrics(ranked, rel, ks, ndcg_k).items():
            sums[key] = sums.get(key, 0.0) + value
        n += 1
    keys = [*(f"R@{k}" for k in ks), "MRR", f"nDCG@{ndcg_k}"]
    out: dict[str, Any] = {k: round(100.0 * sums.get(k, 0.0) / n, 2) if n else 0.0 for k in keys}
    out["queries"] = n
    out["skipped"] = skipped
    return out
