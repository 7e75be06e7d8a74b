r"""Co-attention fusion: bidirectional cross-attention between patches and question tokens."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .early import FeedForward, FusionInputs, FusionOutput, masked_softmax

__all__ = ["AttentionPooling", "CoAttentionFusion", "CoAttentionLayer", "CrossAttention"]


class CrossAttention(nn.Module):
    r"""Multi-head scaled dot-product attention of queries ``x`` over keys/values ``y``.

    .. math::
        \mathbf{A}_h = \mathrm{softmax}\Big(\frac{(\mathbf{X}\mathbf{W}^Q_h)
        (\mathbf{Y}\mathbf{W}^K_h)^\top}{\sqrt{d_h}}\Big), \qquad
        \mathrm{out} = \big[\mathbf{A}_1 \mathbf{Y}\mathbf{W}^V_1 \,\Vert\, \cdots \,\Vert\,
        \mathbf{A}_H \mathbf{Y}\mathbf{W}^V_H\big]\,\mathbf{W}^O

    (each projection with a bias), the softmax taken over the real keys only.

    Shapes: ``x: [B, N, d]``, ``y: [B, M, d]``, ``y_mask: [B, M]`` ->
    ``out: [B, N, d]``, ``A: [B, H, N, M]``.
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim={dim} is not divisible by heads={heads}")
        self.dim, self.heads = dim, heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.o = nn.Linear(dim, dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for lin in (self.q, self.k, self.v, self.o):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)

    def _split(self, x: Tensor) -> Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.heads, self.dim // self.heads).transpose(1, 2)

    def forward(self, x: Tensor, y: Tensor, y_mask: Tensor | None) -> tuple[Tensor, Tensor]:
        q, k, v = self._split(self.q(x)), self._split(self.k(y)), self._split(self.v(y))
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.dim // self.heads)  # [B, H, N, M]
        attn = masked_softmax(scores, None if y_mask is None else y_mask[:, None, None, :])
        out = (attn @ v).transpose(1, 2).reshape(x.shape[0], x.shape[1], self.dim)
        return self.o(out), attn


class CoAttentionLayer(nn.Module):
    r"""One co-attention block (post-LayerNorm, both directions computed in parallel).

    .. math::
        \tilde{\mathbf{T}} = \mathrm{LN}(\mathbf{T} + \mathrm{Att}_{t\leftarrow i}(\mathbf{T},
        \mathbf{I})), \quad
        \tilde{\mathbf{I}} = \mathrm{LN}(\mathbf{I} + \mathrm{Att}_{i\leftarrow t}(\mathbf{I},
        \mathbf{T}))

        \mathbf{T}' = \mathrm{LN}(\tilde{\mathbf{T}} + \mathrm{FFN}_t(\tilde{\mathbf{T}})), \quad
        \mathbf{I}' = \mathrm{LN}(\tilde{\mathbf{I}} + \mathrm{FFN}_i(\tilde{\mathbf{I}}))

    (dropout on each residual branch). Returns ``(T', I', A_t2i [B,H,T,P], A_i2t [B,H,P,T])``.
    """

    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.t2i = CrossAttention(dim, heads)
        self.i2t = CrossAttention(dim, heads)
        self.ffn_t = FeedForward(dim, ffn_dim, dim, dropout)
        self.ffn_i = FeedForward(dim, ffn_dim, dim, dropout)
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(4))
        self.dropout = nn.Dropout(dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in (self.t2i, self.i2t, self.ffn_t, self.ffn_i, *self.norms):
            m.reset_parameters()

    def forward(self, t: Tensor, t_mask: Tensor, i: Tensor,
                i_mask: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        dt, a_t2i = self.t2i(t, i, i_mask)
        di, a_i2t = self.i2t(i, t, t_mask)
        t = self.norms[0](t + self.dropout(dt))
        i = self.norms[1](i + self.dropout(di))
        t = self.norms[2](t + self.dropout(self.ffn_t(t)))
        i = self.norms[3](i + self.dropout(self.ffn_i(i)))
        return t, i, a_t2i, a_i2t


class AttentionPooling(nn.Module):
    r"""Masked attention pooling of a token sequence.

    .. math::
        a_j = \mathrm{softmax}_j\big(\mathbf{w}^\top \tanh(\mathbf{W}\mathbf{x}_j + \mathbf{b})
        \big) \text{ over real tokens}, \qquad \mathbf{h} = \sum_j a_j \mathbf{x}_j

    Shapes: ``x: [B, N, d]``, ``mask: [B, N]`` -> ``h: [B, d]``, ``a: [B, N]``.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.lin = nn.Linear(dim, dim)
        self.w = nn.Parameter(torch.empty(dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.lin.reset_parameters()
        bound = 1.0 / self.w.numel() ** 0.5
        nn.init.uniform_(self.w, -bound, bound)

    def forward(self, x: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
        a = masked_softmax(torch.tanh(self.lin(x)) @ self.w, mask)
        return (a.unsqueeze(-1) * x).sum(dim=1), a


class CoAttentionFusion(nn.Module):
    r"""Bidirectional co-attention between image patches and question tokens.

    Both sides are projected to ``hidden`` (:math:`\mathbf{T}^0 = \mathbf{X}_{txt}
    \mathbf{P}_t`, :math:`\mathbf{I}^0 = \mathbf{X}_{img}\mathbf{P}_i`), pass through
    ``n_layers`` :class:`CoAttentionLayer` blocks — text attends to image and image attends
    to text, each with residual + LayerNorm + FFN — and are pooled by masked attention:

    .. math::
        \mathbf{A}^{\ell}_{t\to i} = \mathrm{softmax}\Big(\frac{\mathbf{Q}_t^{\ell}
        {\mathbf{K}_i^{\ell}}^\top}{\sqrt{d_h}}\Big) \text{ per head, over real patches}

        \mathbf{h}_t = \mathrm{AttnPool}(\mathbf{T}^L), \quad
        \mathbf{h}_i = \mathrm{AttnPool}(\mathbf{I}^L), \quad
        \mathbf{q} = \mathbf{W}_2\,\mathrm{Dropout}(\mathrm{GELU}(\mathbf{W}_1
        [\mathbf{h}_t \,\Vert\, \mathbf{h}_i] + \mathbf{b}_1)) + \mathbf{b}_2

    Padding (``mask == False``) is never attended to and never pooled, so its content does
    not change the output. Global vectors in ``FusionInputs`` are not used.

    Args:
        d_img: image feature size ``D_img``.
        d_txt: text feature size ``D_txt``.
        d_out: output size ``D_out``.
        hidden: model width ``d`` of the co-attention layers (default ``d_out``); must be
            divisible by ``heads``.
        heads: attention heads ``H``.
        n_layers: number of co-attention blocks ``L``.
        dropout: dropout on residual branches and inside the MLPs.
        ffn_dim: FFN hidden size (default ``2 * hidden``).

    Shapes:
        input tokens ``[B, P, D_img]``, ``[B, T, D_txt]`` with masks ``[B, P]``, ``[B, T]``;
        output ``FusionOutput`` with ``q: [B, D_out]`` and attention
        ``"txt2img": [B, H, T, P]`` and ``"img2txt": [B, H, P, T]`` (last layer; earlier
        layers as ``"txt2img_0"``, ``"img2txt_0"``, …), ``"txt_pool": [B, T]``,
        ``"img_pool": [B, P]``. Rows of every map sum to 1 over the real keys.
    """

    def __init__(self, d_img: int, d_txt: int, d_out: int, hidden: int | None = None,
                 heads: int = 4, n_layers: int = 1, dropout: float = 0.1,
                 ffn_dim: int | None = None) -> None:
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}")
        self.d_img, self.d_txt, self.d_out = d_img, d_txt, d_out
        self.hidden = hidden = hidden or d_out
        if hidden % heads:
            raise ValueError(f"hidden={hidden} is not divisible by heads={heads}")
        self.heads, self.n_layers = heads, n_layers
        self.proj_img = nn.Linear(d_img, hidden)
        self.proj_txt = nn.Linear(d_txt, hidden)
        self.layers = nn.ModuleList(
            CoAttentionLayer(hidden, heads, ffn_dim or 2 * hidden, dropout)
            for _ in range(n_layers))
        self.pool_txt = AttentionPooling(hidden)
        self.pool_img = AttentionPooling(hidden)
        self.out = FeedForward(2 * hidden, hidden, d_out, dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.proj_img.reset_parameters()
        self.proj_txt.reset_parameters()
        for m in (*self.layers, self.pool_txt, self.pool_img, self.out):
            m.reset_parameters()

    def forward(self, inputs: FusionInputs) -> FusionOutput:
        img, img_mask, txt, txt_mask = inputs.require_tokens()
        i, t = self.proj_img(img), self.proj_txt(txt)
        attention: dict[str, Tensor] = {}
        for n, layer in enumerate(self.layers):
            t, i, a_t2i, a_i2t = layer(t, txt_mask, i, img_mask)
            attention[f"txt2img_{n}"], attention[f"img2txt_{n}"] = a_t2i, a_i2t
        attention["txt2img"] = attention.pop(f"txt2img_{self.n_layers - 1}")
        attention["img2txt"] = attention.pop(f"img2txt_{self.n_layers - 1}")
        h_t, attention["txt_pool"] = self.pool_txt(t, txt_mask)
        h_i, attention["img_pool"] = self.pool_img(i, img_mask)
        q = self.out(torch.cat([h_t, h_i], dim=-1))
        return FusionOutput(q=q, attention=attention)

    def extra_repr(self) -> str:
        return (f"d_img={self.d_img}, d_txt={self.d_txt}, d_out={self.d_out}, "
                f"hidden={self.hidden}, heads={self.heads}, n_layers={self.n_layers}")
