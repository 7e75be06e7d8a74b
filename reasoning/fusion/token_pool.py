r"""Multi-head attention pooling of question tokens: a question summary that keeps its key
words.

A mean-pooled sentence vector barely moves between "What is the leftmost object?" and "What
is the rightmost object?"; each head here learns which tokens matter (a direction, a
relation word, the asked-for kind) and keeps their contextual embeddings:

.. math::
    e_{h,j} = \mathbf{w}_h^\top \tanh(\mathbf{W}\mathbf{x}_j + \mathbf{b}), \qquad
    a_{h,j} = \mathrm{softmax}_j(e_{h,j}) \text{ over real tokens},

    \mathbf{z} = \mathbf{W}_o \big[\textstyle\sum_j a_{1,j}\mathbf{x}_j ; \dots ;
    \sum_j a_{H,j}\mathbf{x}_j\big] + \mathbf{b}_o
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .early import masked_softmax

__all__ = ["MultiHeadTokenPool"]


class MultiHeadTokenPool(nn.Module):
    """See the module docstring.

    Shapes: ``tokens [B, T, d_in]``, ``mask [B, T]`` (True = real token) → ``z [B, d_out]``;
    :attr:`last_attention` keeps ``a [B, H, T]`` of the latest call (for inspection).
    """

    def __init__(self, d_in: int, heads: int, d_out: int, hidden: int | None = None) -> None:
        super().__init__()
        if heads < 1:
            raise ValueError(f"heads must be >= 1, got {heads}")
        hidden = hidden or d_in
        self.heads = heads
        self.score = nn.Linear(d_in, hidden)
        self.w = nn.Parameter(torch.empty(heads, hidden))
        self.out = nn.Linear(heads * d_in, d_out)
        self.last_attention: Tensor | None = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.score.reset_parameters()
        self.out.reset_parameters()
        bound = 1.0 / self.w.shape[1] ** 0.5
        nn.init.uniform_(self.w, -bound, bound)

    def forward(self, tokens: Tensor, mask: Tensor | None = None) -> Tensor:
        energy = torch.tanh(self.score(tokens)) @ self.w.t()  # [B, T, H]
        a = masked_softmax(energy.transpose(1, 2),
                           None if mask is None else mask.unsqueeze(1))  # [B, H, T]
        self.last_attention = a.detach()
        pooled = a @ tokens  # [B, H, d_in]
        return self.out(pooled.flatten(1))
