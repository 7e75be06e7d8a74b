"""Summary statistics of an evaluation run: grouped accuracy, latency, calibration.

Pure Python over per-item values, so any evaluator (VQA, retrieval) can use them.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any


def percent(values: Sequence[float], digits: int = 2) -> float | None:
    """``round(100 · mean, digits)`` in the official VQA order of operations; None if empty."""
    if not values:
        return None
    return round(100 * float(sum(values)) / len(values), digits)


def grouped_percent(items: Iterable[Any], key: Callable[[Any], Any],
                    value: Callable[[Any], float | None], digits: int = 2) -> dict[str, float]:
    """``{group: percent(values)}`` sorted by group; items whose key or value is None are
    skipped."""
    groups: dict[str, list[float]] = defaultdict(list)
    for item in items:
        group, v = key(item), value(item)
        if group is not None and v is not None:
            groups[str(group)].append(v)
    return {g: percent(v, digits) for g, v in sorted(groups.items())}  # type: ignore[misc]


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile (numpy's default) of already sorted values."""
    if not sorted_values:
        raise ValueError("no values")
    pos = (len(sorted_values) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def latency_summary(ms: Iterable[float], digits: int = 2) -> dict[str, float | int | None]:
    """``count, mean, p50, p90, p95, p99, max`` of latencies in milliseconds."""
    values = sorted(float(v) for v in ms)
    if not values:
        return {"count": 0, "mean": None, "p50": None, "p90": None, "p95": None, "p99": None,
                "max": None}
    out: dict[str, float | int | None] = {"count": len(values),
                                          "mean": round(sum(values) / len(values), digits)}
    for name, q in (("p50", 0.5), ("p90", 0.9), ("p95", 0.95), ("p99", 0.99)):
        out[name] = round(quantile(values, q), digits)
    out["max"] = round(values[-1], digits)
    return out


def reliability_bins(confidences: Sequence[float], accuracies: Sequence[float],
                     bins: int = 10) -> list[dict[str, Any]]:
    """Equal-width confidence bins over [0, 1]: ``lo, hi, count, confidence`` (mean) and
    ``accuracy`` (mean; None for an empty bin). Bin ``b`` holds ``lo ≤ c < hi``; the last
    also holds ``c = 1``; confidences outside [0, 1] are clipped."""
    if len(confidences) != len(accuracies):
        raise ValueError(f"{len(confidences)} confidences but {len(accuracies)} accuracies")
    sums = [[0, 0.0, 0.0] for _ in range(bins)]
    for c, a in zip(confidences, accuracies, strict=True):
        c = min(1.0, max(0.0, float(c)))
        b = min(bins - 1, int(c * bins))
        sums[b][0] += 1
        sums[b][1] += c
        sums[b][2] += float(a)
    out = []
    for b, (n, conf, acc) in enumerate(sums):
        out.append({"lo": b / bins, "hi": (b + 1) / bins, "count": int(n),
                    "confidence": conf / n if n else None, "accuracy": acc / n if n else None})
    return out


def expected_calibration_error(confidences: Sequence[float], accuracies: Sequence[float],
                               bins: int = 10) -> float | None:
    """Expected calibration error over ``bins`` equal-width confidence bins.

    With ``S_b`` the items whose confidence falls in bin ``b`` and ``N`` the item count::

        ECE = Σ_b (|S_b| / N) · | acc(S_b) − conf(S_b) |

    where ``conf`` is the mean confidence (the answer's score) and ``acc`` the mean accuracy
    of the bin — for VQA the soft official accuracy in [0, 1], so ECE compares the score with
    the expected accuracy. In [0, 1]; None when there are no items.
    """
    table = reliability_bins(confidences, accuracies, bins)
    total = sum(b["count"] for b in table)
    if not total:
        return None
    return sum(b["count"] / total * abs(b["accuracy"] - b["confidence"])
               for b in table if b["count"])


def calibration(confidences: Sequence[float], accuracies: Sequence[float],
                bins: int = 10) -> dict[str, Any]:
    """``{"ece", "bins", "mean_confidence", "mean_accuracy"}`` (see
    :func:`expected_calibration_error`)."""
    n = len(confidences)
    ece = expected_calibration_error(confidences, accuracies, bins)
    return {"ece": round(ece, 4) if ece is not None else None, "num_bins": bins,
            "mean_confidence": round(sum(confidences) / n, 4) if n else None,
            "mean_accuracy": round(sum(accuracies) / n, 4) if n else None,
            "bins": reliability_bins(confidences, accuracies, bins)}


def compare(model: Mapping[str, float | None], baseline: Mapping[str, float | None],
            digits: int = 2) -> dict[str, dict[str, float | None]]:
    """Per key of either table: ``{"model", "baseline", "delta"}`` (delta = model − baseline)."""
    out = {}
    for key in sorted(set(model) | set(baseline)):
        a, b = model.get(key), baseline.get(key)
        out[key] = {"model": a, "baseline": b,
                    "delta": round(a - b, digits) if a is not None and b is not None else None}
    return out
