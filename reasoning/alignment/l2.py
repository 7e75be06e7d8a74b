r"""L2 regularisation between paired embeddings."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["L2Alignment"]


class L2Alignment(nn.Module):
    r"""Mean squared distance between paired embeddings.

    .. math::
        \mathcal{L} = \frac{1}{B}\sum_i \lVert \hat{\mathbf{z}}_{a,i}
        - \hat{\mathbf{z}}_{b,i} \rVert_2^2

    with :math:`\hat{\mathbf{z}} = \mathbf{z}/\lVert\mathbf{z}\rVert_2` when ``normalize``
    (then :math:`\mathcal{L} = \frac{1}{B}\sum_i 2 - 2\cos(\mathbf{z}_{a,i},
    \mathbf{z}_{b,i})`), else :math:`\hat{\mathbf{z}} = \mathbf{z}`.

    It has no negatives: on its own it is minimised by collapsing both towers to one point,
    so use it as a regulariser next to a contrastive loss, or to pull a trainable tower
    onto a frozen one.

    Shapes: ``z_a: [B, D]``, ``z_b: [B, D]`` -> scalar. ``targets`` is accepted and ignored.
    """

    def __init__(self, normalize: bool = True) -> None:
        super().__init__()
        self.normalize = normalize

    def reset_parameters(self) -> None:
        """No parameters; present for a uniform interface."""

    def forward(self, z_a: Tensor, z_b: Tensor, targets: Tensor | None = None) -> Tensor:
        if z_a.shape != z_b.shape:
            raise ValueError(f"L2Alignment needs paired batches, got {tuple(z_a.shape)} and "
                             f"{tuple(z_b.shape)}")
        if self.normalize:
            z_a, z_b = F.normalize(z_a, dim=-1), F.normalize(z_b, dim=-1)
        return (z_a - z_b).pow(2).sum(dim=-1).mean()

    def extra_repr(self) -> str:
        return f"normalize={self.normalize}"
