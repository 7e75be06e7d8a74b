"""PNG plots of a run (matplotlib, object API on the Agg canvas: no pyplot, no display).

Each function draws one figure from plain numbers, writes it to ``path`` and returns the path;
series are ``{name: values}`` so the same plots serve a model and its baseline, or several
retrieval re-rankers.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

#: Colours per series position (colour-blind safe, Okabe–Ito).
COLOURS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442")


def _figure(width: float, height: float, rows: int = 1, **grid: Any) -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    axes = fig.subplots(rows, 1, **grid)
    return fig, axes


def _save(fig: Any, path: str | os.PathLike[str]) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, format="png")
    return target


def grouped_bars(path: str | os.PathLike[str], categories: Sequence[str],
                 series: Mapping[str, Sequence[float | None]], *, title: str,
                 ylabel: str = "accuracy (%)", ymax: float | None = 100.0) -> Path:
    """One group of bars per category, one bar per series (None draws no bar); values are
    printed on the bars."""
    n = max(1, len(series))
    width = 0.8 / n
    fig, ax = _figure(max(6.0, 0.9 * len(categories) * max(1, n) / 1.5 + 2), 4.5)
    for k, (name, values) in enumerate(series.items()):
        xs = [i - 0.4 + width * (k + 0.5) for i in range(len(categories))]
        heights = [v if v is not None else 0.0 for v in values]
        bars = ax.bar(xs, heights, width, label=name, color=COLOURS[k % len(COLOURS)])
        for bar, v in zip(bars, values, strict=True):
            if v is not None:
                ax.annotate(f"{v:.0f}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                            ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(categories)), list(categories), rotation=30, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if ymax is not None:
        ax.set_ylim(0, ymax * 1.08)
    ax.grid(axis="y", alpha=0.3)
    if len(series) > 1:
        ax.legend()
    return _save(fig, path)


def histogram(path: str | os.PathLike[str], series: Mapping[str, Sequence[float]], *,
              title: str, xlabel: str, bins: int = 40, log_y: bool = False,
              log_x: bool | None = None) -> Path:
    """Overlaid histograms (shared bin edges) with each series' median marked.

    ``log_x=None`` picks logarithmic bins when the positive values span over 20×."""
    import numpy as np

    values = [np.asarray(v, dtype=float) for v in series.values() if len(v)]
    fig, ax = _figure(7.0, 4.0)
    if values:
        everything = np.concatenate(values)
        positive = everything[everything > 0]
        if log_x is None:
            log_x = bool(len(positive) == len(everything) and len(positive)
                         and positive.max() > 20 * positive.min())
        if log_x:
            from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

            edges = np.geomspace(positive.min(), positive.max() * 1.0001, bins + 1)
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.xaxis.set_minor_formatter(NullFormatter())
        else:
            edges = np.histogram_bin_edges(everything, bins=bins)
        for k, (name, v) in enumerate(series.items()):
            if not len(v):
                continue
            colour = COLOURS[k % len(COLOURS)]
            ax.hist(v, bins=edges, alpha=0.55, label=f"{name} (n={len(v)})", color=colour)
            ax.axvline(float(np.median(v)), color=colour, linestyle="--", linewidth=1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    ax.set_title(title)
    if log_y:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def reliability_diagram(path: str | os.PathLike[str],
                        curves: Mapping[str, Sequence[Mapping[str, Any]]], *, title: str,
                        eces: Mapping[str, float | None] | None = None) -> Path:
    """Top: mean accuracy against mean confidence per bin (the diagonal is perfect
    calibration). Bottom: how many items fall in each confidence bin. ``curves`` holds
    :func:`~kgmm.evaluation.metrics.reliability_bins` tables."""
    fig, (top, bottom) = _figure(6.0, 6.5, rows=2, sharex=True,
                                 gridspec_kw={"height_ratios": [3, 1]})
    top.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect calibration")
    n = max(1, len(curves))
    for k, (name, table) in enumerate(curves.items()):
        colour = COLOURS[k % len(COLOURS)]
        points = [(b["confidence"], b["accuracy"]) for b in table if b["count"]]
        label = name
        if eces and eces.get(name) is not None:
            label += f" (ECE {eces[name]:.3f})"
        if points:
            xs, ys = zip(*points, strict=True)
            top.plot(xs, ys, marker="o", color=colour, label=label)
        width = (table[0]["hi"] - table[0]["lo"]) / n if table else 0.1
        bottom.bar([b["lo"] + width * (k + 0.5) for b in table], [b["count"] for b in table],
                   width, color=colour, alpha=0.8)
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy")
    top.set_title(title)
    top.grid(alpha=0.3)
    top.legend(loc="upper left")
    bottom.set_xlabel("confidence (answer score)")
    bottom.set_ylabel("count")
    bottom.grid(alpha=0.3)
    return _save(fig, path)
