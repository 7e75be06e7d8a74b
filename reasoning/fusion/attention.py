r"""Additive (Bahdanau-style) attention over modality vectors and, optionally, tokens."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .early import FusionInputs, FusionOutput, masked_softmax

__all__ = ["AttentionFusion"]

#: Candidate kinds, in the order they appear in ``attention["weights"]``.
KINDS = ("img_global", "txt_global", "img_tokens", "txt_tokens")


class AttentionFusion(nn.Module):
    r"""Attention-weighted sum of projected modality vectors.

    .. math::
        \mathbf{x}_i = \mathbf{P}_{m(i)} \mathbf{f}_i + \mathbf{c}_{m(i)}, \qquad
        e_i = \mathbf{w}^\top \tanh(\mathbf{W}_{k(i)} \mathbf{x}_i + \mathbf{b}_{k(i)}),

        \alpha = \mathrm{softmax}(\mathbf{e}) \text{ (over real candidates)}, \qquad
        \mathbf{q} = \sum_i \alpha_i \mathbf{x}_i

    The candidates :math:`\mathbf{f}_i` are the image global vector and the text global
    vector and, with ``use_tokens=True``, every real image patch and every real question token
    (masked tokens get :math:`\alpha_i = 0`). :math:`\mathbf{P}_m` projects modality
    :math:`m` to ``D_out`` (shared by its global vector and its tokens);
    :math:`\mathbf{W}_k, \mathbf{b}_k` are per candidate kind
    :math:`k \in` {img_global, txt_global, img_tokens, txt_tokens}; :math:`\mathbf{w}` is shared.
    A missing global vector is the masked mean of the modality's tokens. :math:`\mathbf{w}`
    starts near zero, so the attention starts near uniform (an early, saturated choice of
    one modality tends to stick).

    Args:
        d_img: image feature size ``D_img``.
        d_txt: text feature size ``D_txt``.
        d_out: output size ``D_out``.
        hidden: size of the scoring layer (default ``d_out``).
        use_tokens: also attend over image patches and question tokens.
        dropout: dropout on the attention weights during training (as in GAT); the returned
            weights are the ones before dropout.

    Shapes:
        output ``FusionOutput`` with ``q: [B, D_out]`` and
        ``attention["weights"]: [B, N]`` with ``N = 2`` (``2 + P + T`` with tokens), summing to
        1 per row, in the order image global, text global, patches, tokens; also split as
        ``attention["global"]: [B, 2]`` and, with tokens, ``attention["img_tokens"]: [B, P]``,
        ``attention["txt_tokens"]: [B, T]``.
    """

    def __init__(self, d_img: int, d_txt: int, d_out: int, hidden: int | None = None,
                 use_tokens: bool = False, dropout: float = 0.0) -> None:
        super().__init__()
        self.d_img, self.d_txt, self.d_out = d_img, d_txt, d_out
        self.use_tokens = use_tokens
        hidden = hidden or d_out
        self.proj_img = nn.Linear(d_img, d_out)
        self.proj_txt = nn.Linear(d_txt, d_out)
        n_kinds = 4 if use_tokens else 2
        self.score = nn.ModuleList(nn.Linear(d_out, hidden) for _ in range(n_kinds))
        self.w = nn.Parameter(torch.empty(hidden))
        self.dropout = dropout
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.proj_img.reset_parameters()
        self.proj_txt.reset_parameters()
        for lin in self.score:
            lin.reset_parameters()
        bound = 0.01 / self.w.numel() ** 0.5  # near-uniform attention at the start
        nn.init.uniform_(self.w, -bound, bound)

    def _energy(self, kind: int, x: Tensor) -> Tensor:
        return torch.tanh(self.score[kind](x)) @ self.w

    def forward(self, inputs: FusionInputs) -> FusionOutput:
        g_img = self.proj_img(inputs.image_vector())  # [B, D_out]
        g_txt = self.proj_txt(inputs.text_vector())
        cands = [g_img.unsqueeze(1), g_txt.unsqueeze(1)]
        energies = [self._energy(0, g_img).unsqueeze(1), self._energy(1, g_txt).unsqueeze(1)]
        mask: Tensor | None = None
        if self.use_tokens:
            img, img_mask, txt, txt_mask = inputs.require_tokens()
            t_img, t_txt = self.proj_img(img), self.proj_txt(txt)  # [B, P, D], [B, T, D]
            cands += [t_img, t_txt]
            energies += [self._energy(2, t_img), self._energy(3, t_txt)]
            ones = torch.ones(g_img.shape[0], 2, dtype=torch.bool, device=g_img.device)
            mask = torch.cat([ones, img_mask, txt_mask], dim=1)
        x = torch.cat(cands, dim=1)  # [B, N, D_out]
        alpha = masked_softmax(torch.cat(energies, dim=1), mask)  # [B, N]
        a = F.dropout(alpha, self.dropout, self.training)
        q = (a.unsqueeze(-1) * x).sum(dim=1)
        attention = {"weights": alpha, "global": alpha[:, :2]}
        if self.use_tokens:
            n_img = cands[2].shape[1]
            attention["img_tokens"] = alpha[:, 2:2 + n_img]
            attention["txt_tokens"] = alpha[:, 2 + n_img:]
        return FusionOutput(q=q, attention=attention)

    def extra_repr(self) -> str:
        return (f"d_img={self.d_img}, d_txt={self.d_txt}, d_out={self.d_out}, "
                f"use_tokens={self.use_tokens}")
