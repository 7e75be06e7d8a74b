"""Calibration, latency and grouping statistics against hand-computed values and numpy."""

from __future__ import annotations

import numpy as np
import pytest

from kgmm.evaluation import metrics as M


def test_ece_by_hand() -> None:
    # bin [0.2, 0.3): conf 0.25, acc 0; bin [0.9, 1.0]: confs 0.9 and 1.0 (mean 0.95), acc 0.5
    conf = [0.25, 0.9, 1.0]
    acc = [0.0, 1.0, 0.0]
    expected = (1 / 3) * abs(0.0 - 0.25) + (2 / 3) * abs(0.5 - 0.95)
    assert M.expected_calibration_error(conf, acc) == pytest.approx(expected)
    bins = M.reliability_bins(conf, acc)
    assert len(bins) == 10 and [b["count"] for b in bins] == [0, 0, 1, 0, 0, 0, 0, 0, 0, 2]
    assert bins[9]["confidence"] == pytest.approx(0.95) and bins[0]["accuracy"] is None
    assert M.expected_calibration_error([], []) is None
    assert M.expected_calibration_error([0.7] * 4, [0.7] * 4) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="2 confidences but 1"):
        M.reliability_bins([0.1, 0.2], [1.0])


def test_latency_percentiles_match_numpy() -> None:
    rng = np.random.default_rng(0)
    values = rng.exponential(30.0, 101).tolist()
    summary = M.latency_summary(values, digits=6)
    for name, q in (("p50", 50), ("p90", 90), ("p99", 99)):
        assert summary[name] == pytest.approx(np.percentile(values, q), abs=1e-5)
    assert summary["count"] == 101 and M.latency_summary([])["p50"] is None


def test_percent_grouping_and_comparison() -> None:
    items = [("a", 1.0), ("a", 0.3), ("b", 0.0), (None, 1.0), ("b", None)]
    assert M.grouped_percent(items, lambda x: x[0], lambda x: x[1]) == {"a": 65.0, "b": 0.0}
    assert M.percent([1, 0, 0]) == 33.33 and M.percent([]) is None
    table = M.compare({"x": 50.0, "y": 10.0}, {"x": 40.0})
    assert table["x"]["delta"] == 10.0 and table["y"]["delta"] is None
