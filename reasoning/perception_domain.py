r"""Is an image in the picture style the scene parser was trained on?

The scene parser learns one picture style (e.g. emoji scenes); on a photograph it still
"detects" objects, with confident but meaningless links. The check is a one-class model of the
training images' pooled encoder features: with unit vectors :math:`\hat v_i` and their mean
direction :math:`\mu = \frac{\sum_i \hat v_i}{\lVert \sum_i \hat v_i \rVert}`, an image is in the
domain when

.. math::
    \cos(\hat v, \mu) \ge \tau, \qquad \tau = Q_{q}\big(\{\cos(\hat v_i, \mu)\}\big) - m

(the ``q``-quantile of the training images' similarities less a margin ``m``). Out of the
domain, ``kgmm.answer`` links the image through the ImageNet classifier instead
(:mod:`.imagenet_linking`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class PerceptionDomain:
    """The mean direction ``mean`` and threshold ``threshold`` of the module docstring."""

    mean: tuple[float, ...]
    threshold: float

    @classmethod
    def fit(cls, pooled: Tensor, *, quantile: float = 0.01,
            margin: float = 0.1) -> PerceptionDomain:
        """Fit on the training images' pooled features ``[N, D]``."""
        if pooled.dim() != 2 or pooled.shape[0] < 2:
            raise ValueError("PerceptionDomain.fit needs pooled features [N >= 2, D]")
        unit = F.normalize(pooled.float(), dim=-1)
        mean = F.normalize(unit.sum(0), dim=0)
        threshold = float(torch.quantile(unit @ mean, quantile)) - margin
        return cls(tuple(float(x) for x in mean), threshold)

    def similarity(self, pooled: Tensor) -> Tensor:
        """``cos(v, μ)`` per row of ``[N, D]`` (or for one ``[D]`` vector)."""
        mean = torch.tensor(self.mean, dtype=torch.float32)
        return F.normalize(pooled.float(), dim=-1) @ mean

    def contains(self, pooled: Tensor) -> bool:
        """Whether one image's pooled vector ``[D]`` is in the domain."""
        return bool(self.similarity(pooled) >= self.threshold)

    def to_dict(self) -> dict[str, Any]:
        return {"mean": list(self.mean), "threshold": self.threshold}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PerceptionDomain:
        return cls(tuple(float(x) for x in data["mean"]), float(data["threshold"]))
