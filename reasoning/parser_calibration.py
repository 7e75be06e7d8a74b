r"""Choosing the scene parser's detection threshold and suppression on validation scenes.

Training fixes what the parser scores; how many of its peaks become detections is decided
after it, by two settings of :class:`~.scene_parser.SceneParserConfig`: the least objectness
``objectness_threshold`` and ``nms_iou`` (a stronger neighbour suppresses a cell only when their
boxes overlap this much; 0 = plain local maximum, which also removes an adjacent second
object). :func:`calibrate_detection` tries each pair of a small grid on held-out scenes and
keeps the one with the best detection F1,

.. math::
    F_1 = \frac{2 P R}{P + R}, \quad P = \frac{\text{matched}}{\text{detections}},\;
    R = \frac{\text{matched}}{\text{objects}},

matching as :func:`~.scene_parser.match_detections` (ties: the earlier pair of the grid, so the
defaults win when nothing is better).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from .scene_parser import SceneParser, SceneTargets, evaluate_scene_parser

__all__ = ["DetectionCalibration", "calibrate_detection"]

THRESHOLDS = (0.2, 0.1, 0.15, 0.3)
NMS_IOUS = (0.0, 0.1, 0.3)


@dataclass(frozen=True)
class DetectionCalibration:
    """The chosen settings and the validation scores they reached."""

    objectness_threshold: float
    nms_iou: float
    precision: float
    recall: float
    f1: float


def _f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def calibrate_detection(parser: SceneParser, features: Tensor, targets: SceneTargets,
                        entity_embeddings: Tensor, scenes: Sequence[Mapping[str, Any]],
                        entity_ids: Sequence[str], *, grid_size: Sequence[int] | None = None,
                        thresholds: Sequence[float] = THRESHOLDS,
                        nms_ious: Sequence[float] = NMS_IOUS,
                        detail: Tensor | None = None) -> DetectionCalibration:
    """Set ``parser.config.objectness_threshold`` and ``nms_iou`` to the validation-F1-best
    pair of the grid (``features`` / ``targets`` / ``scenes`` / ``detail``: the validation
    scenes) and return it with its scores."""
    if not scenes:
        raise ValueError("calibration needs at least one validation scene")
    best: DetectionCalibration | None = None
    for threshold in thresholds:
        for iou in nms_ious:
            parser.config.objectness_threshold = float(threshold)
            parser.config.nms_iou = float(iou)
            res = evaluate_scene_parser(parser, features, targets, entity_embeddings,
                                        scenes=scenes, entity_ids=entity_ids,
                                        grid_size=grid_size, detail=detail)
            p, r = res["det_precision"], res["det_recall"]
            found = DetectionCalibration(float(threshold), float(iou), p, r, _f1(p, r))
            if best is None or found.f1 > best.f1:
                best = found
    assert best is not None
    parser.config.objectness_threshold = best.objectness_threshold
    parser.config.nms_iou = best.nms_iou
    return best
