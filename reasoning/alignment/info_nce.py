r"""Symmetric InfoNCE (CLIP) loss with a learnable temperature and multi-positive targets."""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["InfoNCELoss"]


class InfoNCELoss(nn.Module):
    r"""Symmetric InfoNCE between paired embeddings ``z_a[i] <-> z_b[i]``.

    .. math::
        \hat{\mathbf{z}} = \mathbf{z} / \lVert\mathbf{z}\rVert_2, \qquad
        \mathbf{L} = e^{\min(t,\, \log s_{max})}\,\hat{\mathbf{Z}}_a \hat{\mathbf{Z}}_b^\top
        \in \mathbb{R}^{B \times B}

        \mathcal{L} = \tfrac{1}{2}\big[\mathrm{CE}(\mathbf{L}, \mathbf{I})
        + \mathrm{CE}(\mathbf{L}^\top, \mathbf{I})\big]
        = -\frac{1}{2B}\sum_i \Big[\log \frac{e^{L_{ii}}}{\sum_k e^{L_{ik}}}
        + \log \frac{e^{L_{ii}}}{\sum_k e^{L_{ki}}}\Big]

    with :math:`t` a learnable log-scale initialised to :math:`\log(1/\tau)` and clamped to
    :math:`\log s_{max}` (CLIP: :math:`\tau = 0.07`, :math:`s_{max} = 100`).

    **Multi-positive** (``targets`` given, pair ids ``y: [B]``): pairs with the same id are
    positives of each other, never negatives. With :math:`P(i) = \{j : y_j = y_i\}`, row
    :math:`i` of :math:`\mathbf{L}` (and likewise of :math:`\mathbf{L}^\top`) contributes

    .. math::
        \ell_i^{sum} = -\log \frac{\sum_{j \in P(i)} e^{L_{ij}}}{\sum_k e^{L_{ik}}}
        \quad (\texttt{multi\_positive="sum"}, \text{minimum } 0),

        \ell_i^{mean} = -\frac{1}{|P(i)|}\sum_{j \in P(i)} \log
        \frac{e^{L_{ij}}}{\sum_k e^{L_{ik}}}
        \quad (\texttt{multi\_positive="mean"}: \text{cross-entropy with soft targets}
        \ \mathbb{1}[j \in P(i)]/|P(i)|),

    and :math:`\mathcal{L}` is the mean over rows of both directions. With distinct ids
    both reduce to the loss above.

    Args:
        temperature: initial temperature :math:`\tau`.
        max_scale: upper bound :math:`s_{max}` on the logit scale :math:`e^t`.
        learnable: learn :math:`t` (else it stays at :math:`\log(1/\tau)`).
        multi_positive: ``"sum"`` or ``"mean"`` (see above).

    Shapes: ``z_a: [B, D]``, ``z_b: [B, D]``, ``targets: [B]`` (int) or None -> scalar.
    """

    def __init__(self, temperature: float = 0.07, max_scale: float = 100.0,
                 learnable: bool = True, multi_positive: Literal["sum", "mean"] = "sum") -> None:
        super().__init__()
        if temperature <= 0 or max_scale <= 0:
            raise ValueError("temperature and max_scale must be positive")
        if multi_positive not in ("sum", "mean"):
            raise ValueError(f"multi_positive must be 'sum' or 'mean', got {multi_positive!r}")
        self.temperature, self.max_scale = temperature, max_scale
        self.multi_positive = multi_positive
        log_scale = torch.empty(())
        if learnable:
            self.log_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_scale", log_scale)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.log_scale.fill_(math.log(1.0 / self.temperature))

    @property
    def scale(self) -> Tensor:
        r"""The logit scale :math:`e^{\min(t, \log s_{max})}` (a 0-d tensor)."""
        return self.log_scale.clamp(max=math.log(self.max_scale)).exp()

    def logits(self, z_a: Tensor, z_b: Tensor) -> Tensor:
        """Scaled cosine similarities ``[B_a, B_b]``."""
        return self.scale * F.normalize(z_a, dim=-1) @ F.normalize(z_b, dim=-1).T

    def _rows(self, logits: Tensor, pos: Tensor) -> Tensor:
        log_p = logits.log_softmax(dim=-1)
        if self.multi_positive == "sum":
            return -log_p.masked_fill(~pos, float("-inf")).logsumexp(dim=-1)
        return -(log_p * pos).sum(dim=-1) / pos.sum(dim=-1)

    def forward(self, z_a: Tensor, z_b: Tensor, targets: Tensor | None = None) -> Tensor:
        if z_a.shape[0] != z_b.shape[0]:
            raise ValueError(f"InfoNCE needs paired batches, got {z_a.shape[0]} and {z_b.shape[0]}")
        logits = self.logits(z_a, z_b)
        if targets is None:
            labels = torch.arange(logits.shape[0], device=logits.device)
            return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))
        if targets.shape != (logits.shape[0],):
            raise ValueError(f"targets must be [{logits.shape[0]}], got {tuple(targets.shape)}")
        pos = targets.view(-1, 1) == targets.view(1, -1)
        return 0.5 * (self._rows(logits, pos).mean() + self._rows(logits.T, pos).mean())

    def extra_repr(self) -> str:
        return (f"temperature={self.temperature}, max_scale={self.max_scale}, "
                f"multi_positive={self.multi_positive!r}")
