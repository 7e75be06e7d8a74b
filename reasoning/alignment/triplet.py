r"""Triplet margin loss with in-batch hardest or semi-hard negatives."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["TripletMarginLoss", "pairwise_distance"]


def pairwise_distance(z_a: Tensor, z_b: Tensor,
                      distance: Literal["cosine", "euclidean"] = "cosine") -> Tensor:
    r"""``D[i, j] = d(z_a[i], z_b[j])``: cosine distance :math:`1 - \cos` or euclidean norm.

    Shapes: ``[B_a, D]``, ``[B_b, D]`` -> ``[B_a, B_b]``.
    """
    if distance == "cosine":
        return 1.0 - F.normalize(z_a, dim=-1) @ F.normalize(z_b, dim=-1).T
    if distance == "euclidean":
        sq = (z_a.unsqueeze(1) - z_b.unsqueeze(0)).pow(2).sum(dim=-1)
        return sq.clamp(min=1e-12).sqrt()  # clamp: finite gradient at 0
    raise ValueError(f"distance must be 'cosine' or 'euclidean', got {distance!r}")


class TripletMarginLoss(nn.Module):
    r"""Triplet margin loss over a batch of pairs, negatives mined in the batch.

    .. math::
        \mathcal{L}_{a \to b} = \frac{1}{B}\sum_i \max\big(0,\; m + d(\mathbf{z}^a_i,
        \mathbf{z}^b_i) - d(\mathbf{z}^a_i, \mathbf{z}^b_{j(i)})\big)

    where :math:`\mathbf{z}^b_i` is the positive of anchor :math:`\mathbf{z}^a_i` and
    :math:`j(i)` the mined negative among :math:`N(i) = \{j \ne i\}` (or
    :math:`\{j : y_j \ne y_i\}` when pair ids ``targets`` are given):

    * ``mining="hardest"``: :math:`j(i) = \arg\min_{j \in N(i)} d(\mathbf{z}^a_i,
      \mathbf{z}^b_j)`;
    * ``mining="semi_hard"`` (FaceNet; as ``tfa.losses.TripletSemiHardLoss``): the closest
      negative *farther* than the positive, :math:`\arg\min \{d_{ij} : j \in N(i),
      d_{ij} > d_{ii}\}`; if there is none, the farthest negative.

    ``symmetric=True`` returns :math:`\tfrac{1}{2}(\mathcal{L}_{a\to b} +
    \mathcal{L}_{b\to a})` (VSE++), the second term with the roles of ``z_a`` and ``z_b``
    swapped. Anchors without any negative are left out of the mean.

    Args:
        margin: :math:`m`.
        distance: ``"cosine"`` (:math:`1 - \cos`) or ``"euclidean"``.
        mining: ``"hardest"`` or ``"semi_hard"``.
        symmetric: average both directions.

    Shapes: ``z_a: [B, D]``, ``z_b: [B, D]``, ``targets: [B]`` or None -> scalar.
    """

    def __init__(self, margin: float = 0.2,
                 distance: Literal["cosine", "euclidean"] = "cosine",
                 mining: Literal["hardest", "semi_hard"] = "hardest",
                 symmetric: bool = True) -> None:
        super().__init__()
        if distance not in ("cosine", "euclidean"):
            raise ValueError(f"distance must be 'cosine' or 'euclidean', got {distance!r}")
        if mining not in ("hardest", "semi_hard"):
            raise ValueError(f"mining must be 'hardest' or 'semi_hard', got {mining!r}")
        self.margin, self.distance, self.mining = margin, distance, mining
        self.symmetric = symmetric

    def reset_parameters(self) -> None:
        """No parameters; present for a uniform interface."""

    def _direction(self, dist: Tensor, neg: Tensor) -> Tensor:
        pos = dist.diagonal().unsqueeze(1)  # [B, 1]
        inf = torch.tensor(float("inf"), dtype=dist.dtype, device=dist.device)
        hardest = torch.where(neg, dist, inf).min(dim=1).values
        if self.mining == "hardest":
            d_neg = hardest
        else:
            outside = neg & (dist > pos)
            semi = torch.where(outside, dist, inf).min(dim=1).values
            easiest = torch.where(neg, dist, -inf).max(dim=1).values
            d_neg = torch.where(outside.any(dim=1), semi, easiest)
        valid = neg.any(dim=1)
        loss = F.relu(self.margin + pos.squeeze(1) - d_neg)
        if not bool(valid.any()):
            return dist.sum() * 0.0
        return loss[valid].mean()

    def forward(self, z_a: Tensor, z_b: Tensor, targets: Tensor | None = None) -> Tensor:
        if z_a.shape[0] != z_b.shape[0]:
            raise ValueError(f"triplet loss needs paired batches, got {z_a.shape[0]} and "
                             f"{z_b.shape[0]}")
        dist = pairwise_distance(z_a, z_b, self.distance)
        b = dist.shape[0]
        if targets is None:
            neg = ~torch.eye(b, dtype=torch.bool, device=dist.device)
        elif targets.shape != (b,):
            raise ValueError(f"targets must be [{b}], got {tuple(targets.shape)}")
        else:
            neg = targets.view(-1, 1) != targets.view(1, -1)
        loss = self._direction(dist, neg)
        if self.symmetric:
            loss = 0.5 * (loss + self._direction(dist.T, neg.T))
        return loss

    def extra_repr(self) -> str:
        return (f"margin={self.margin}, distance={self.distance!r}, mining={self.mining!r}, "
                f"symmetric={self.symmetric}")
