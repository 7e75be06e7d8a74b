"""Evaluating a retriever on dataset folders, and the Markdown table of the results.

``metrics.json`` of a run::

    {"model": ..., "data": ..., "candidates": 100,
     "splits": {split: {direction: {level: {ranker: {"R@1", "R@5", "R@10", "MRR", "nDCG@10",
                                                      "queries", "skipped"}}}}}}

Directions are ``t2i`` (text→image) and ``i2t`` (image→text); levels are the query / caption
levels of the data (``specific`` and ``category`` in OpenMoji-scenes, ``caption`` for plain
COCO captions); rankers are ``dual``, ``cross``, ``kg`` and ``cross+kg``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .data import load_retrieval_split
from .engine import evaluate, prepare_split
from .model import RetrievalModel

COLUMNS = ("R@1", "R@5", "R@10", "MRR", "nDCG@10")
DIRECTION_NAMES = {"t2i": "text→image", "i2t": "image→text"}


def evaluate_folder(model: RetrievalModel, data: str | os.PathLike[str], splits: Sequence[str],
                    *, k: int = 100, rankers: Sequence[str] | None = None,
                    progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """Metrics of every split of a COCO-captions / OpenMoji-scenes folder."""
    out: dict[str, Any] = {"model": str(model.path) if model.path else None, "data": str(data),
                           "candidates": k, "rankers": list(rankers or model.rankers()),
                           "splits": {}}
    for split in splits:
        prepared = prepare_split(model, load_retrieval_split(data, split), progress=progress)
        out["splits"][split] = evaluate(model, prepared, k=k, rankers=rankers,
                                        progress=progress)
    return out


def markdown_table(metrics: dict[str, Any]) -> str:
    """One Markdown table per split: rows direction × level × ranker, metric columns."""
    lines = []
    for split, by_dir in metrics.get("splits", {}).items():
        lines += [f"**{split}**", "",
                  "| direction | queries | ranker | " + " | ".join(COLUMNS) + " |",
                  "|---|---|---|" + "---:|" * len(COLUMNS)]
        for direction in ("t2i", "i2t"):
            for level, by_ranker in by_dir.get(direction, {}).items():
                for ranker, m in by_ranker.items():
                    best = {c: max(r[c] for r in by_ranker.values()) for c in COLUMNS}
                    cells = [f"**{m[c]:.1f}**" if m[c] == best[c] and len(by_ranker) > 1
                             else f"{m[c]:.1f}" for c in COLUMNS]
                    lines.append(f"| {DIRECTION_NAMES.get(direction, direction)} | {level} "
                                 f"({m['queries']}) | {ranker} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def write_run(out: str | os.PathLike[str], metrics: dict[str, Any]) -> Path:
    """``RUN/metrics.json`` and ``RUN/report.md``."""
    path = Path(out)
    path.mkdir(parents=True, exist_ok=True)
    (path / "metrics.json").write_text(json.dumps(metrics, indent=1), encoding="utf-8")
    (path / "report.md").write_text(f"# Retrieval — {metrics.get('data')}\n\n"
                                    f"Model: `{metrics.get('model')}`; re-rankers re-order the "
                                    f"dual tower's top {metrics.get('candidates')}.\n\n"
                                    + markdown_table(metrics), encoding="utf-8")
    return path
