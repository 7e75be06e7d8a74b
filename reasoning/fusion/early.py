r"""Early fusion, and the interface every fusion module shares.

Every fusion module in :mod:`kgmm.reasoning.fusion` is called the same way::

    out = module(FusionInputs(img_tokens=..., img_mask=..., txt_tokens=..., txt_mask=...))
    out.q                # [B, D_out] fused query vector
    out.attention        # name -> attention weights (empty where the module has none)
    out.per_modality     # name -> per-modality predictions (LateFusion)

``FusionInputs``, ``FusionOutput``, ``FeedForward`` and the masked helpers live in this file
because early fusion is the simplest user of them; the other modules import them from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "EarlyFusion",
    "FeedForward",
    "FusionInputs",
    "FusionOutput",
    "masked_mean",
    "masked_softmax",
]


def masked_mean(x: Tensor, mask: Tensor | None) -> Tensor:
    r"""Mean of ``x: [B, N, D]`` over the ``N`` entries where ``mask: [B, N]`` is True.

    Rows without any real entry give zeros. Masked-out entries never reach the result (they
    are replaced, not multiplied, so even NaN padding is harmless). Returns ``[B, D]``.
    """
    if mask is None:
        return x.mean(dim=1)
    m = mask.unsqueeze(-1)
    total = torch.where(m, x, torch.zeros((), dtype=x.dtype, device=x.device)).sum(dim=1)
    count = mask.sum(dim=1, keepdim=True).clamp(min=1).to(x.dtype)
    return total / count


def masked_softmax(scores: Tensor, mask: Tensor | None, dim: int = -1) -> Tensor:
    r"""Softmax of ``scores`` along ``dim`` over the entries where ``mask`` is True.

    Masked entries get weight exactly 0; a slice without any True entry gets all zeros
    (instead of NaN). ``mask`` must broadcast to ``scores``.
    """
    if mask is None:
        return torch.softmax(scores, dim=dim)
    mask = mask.expand_as(scores)
    filled = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    return torch.softmax(filled, dim=dim) * mask.to(scores.dtype)


def _check_modality(name: str, tokens: Tensor | None, mask: Tensor | None,
                    glob: Tensor | None) -> Tensor | None:
    """Validate one modality's tensors; return the mask as bool (or None)."""
    if tokens is None and glob is None:
        raise ValueError(f"FusionInputs: {name}_tokens and {name}_global are both None")
    if tokens is not None and tokens.dim() != 3:
        raise ValueError(f"{name}_tokens must be [B, N, D], got {tuple(tokens.shape)}")
    if glob is not None and glob.dim() != 2:
        raise ValueError(f"{name}_global must be [B, D], got {tuple(glob.shape)}")
    if mask is None:
        return None
    if tokens is None:
        raise ValueError(f"{name}_mask given without {name}_tokens")
    if mask.shape != tokens.shape[:2]:
        raise ValueError(f"{name}_mask must be {tuple(tokens.shape[:2])}, got {tuple(mask.shape)}")
    return mask if mask.dtype == torch.bool else mask.bool()


@dataclass
class FusionInputs:
    r"""The features one fusion module sees.

    Attributes:
        img_tokens: patch/grid features ``[B, P, D_img]`` or None.
        txt_tokens: question token features ``[B, T, D_txt]`` or None.
        img_mask: ``[B, P]`` bool, True = real patch; None = all real.
        txt_mask: ``[B, T]`` bool, True = real token; None = all real.
        img_global: ``[B, D_img]`` or None (then the masked mean of ``img_tokens``).
        txt_global: ``[B, D_txt]`` or None (then the masked mean of ``txt_tokens``).

    Each modality needs its tokens, its global vector, or both.
    """

    img_tokens: Tensor | None = None
    txt_tokens: Tensor | None = None
    img_mask: Tensor | None = None
    txt_mask: Tensor | None = None
    img_global: Tensor | None = None
    txt_global: Tensor | None = None

    def __post_init__(self) -> None:
        self.img_mask = _check_modality("img", self.img_tokens, self.img_mask, self.img_global)
        self.txt_mask = _check_modality("txt", self.txt_tokens, self.txt_mask, self.txt_global)
        sizes = {t.shape[0] for t in (self.img_tokens, self.txt_tokens, self.img_global,
                                       self.txt_global) if t is not None}
        if len(sizes) != 1:
            raise ValueError(f"FusionInputs: inconsistent batch sizes {sorted(sizes)}")

    @property
    def batch_size(self) -> int:
        for t in (self.img_global, self.txt_global, self.img_tokens, self.txt_tokens):
            if t is not None:
                return int(t.shape[0])
        raise AssertionError("unreachable")  # pragma: no cover

    def image_vector(self) -> Tensor:
        """``img_global``, or the masked mean of ``img_tokens``: ``[B, D_img]``."""
        if self.img_global is not None:
            return self.img_global
        assert self.img_tokens is not None
        return masked_mean(self.img_tokens, self.img_mask)

    def text_vector(self) -> Tensor:
        """``txt_global``, or the masked mean of ``txt_tokens``: ``[B, D_txt]``."""
        if self.txt_global is not None:
            return self.txt_global
        assert self.txt_tokens is not None
        return masked_mean(self.txt_tokens, self.txt_mask)

    def require_tokens(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(img_tokens, img_mask, txt_tokens, txt_mask)`` with full masks filled in.

        Masked-out tokens are replaced by zeros, so whatever padding holds never matters.
        """
        if self.img_tokens is None or self.txt_tokens is None:
            raise ValueError("this fusion module needs img_tokens and txt_tokens")
        img, txt = self.img_tokens, self.txt_tokens
        img_mask = self.img_mask if self.img_mask is not None else torch.ones(
            img.shape[:2], dtype=torch.bool, device=img.device)
        txt_mask = self.txt_mask if self.txt_mask is not None else torch.ones(
            txt.shape[:2], dtype=torch.bool, device=txt.device)
        img = img.masked_fill(~img_mask.unsqueeze(-1), 0.0)
        txt = txt.masked_fill(~txt_mask.unsqueeze(-1), 0.0)
        return img, img_mask, txt, txt_mask


@dataclass
class FusionOutput:
    r"""What a fusion module returns.

    Attributes:
        q: the fused query vector ``[B, D_out]``.
        attention: attention weights by name (see each module's docstring).
        per_modality: per-modality predictions by name (``LateFusion``: ``"image"``,
            ``"text"``, each ``[B, D_out]``), for per-modality losses.
    """

    q: Tensor
    attention: dict[str, Tensor] = field(default_factory=dict)
    per_modality: dict[str, Tensor] = field(default_factory=dict)


class FeedForward(nn.Module):
    r"""Two-layer perceptron used throughout the fusion modules.

    .. math::
        \mathbf{y} = \mathbf{W}_2\,\mathrm{Dropout}\big(\mathrm{GELU}(\mathbf{W}_1\mathbf{x}
        + \mathbf{b}_1)\big) + \mathbf{b}_2,
        \qquad \text{followed by } \mathrm{LayerNorm}(\mathbf{y}) \text{ if } layer\_norm.

    Shapes: ``[..., d_in] -> [..., d_out]``.
    """

    def __init__(self, d_in: int, hidden: int, d_out: int, dropout: float = 0.0,
                 layer_norm: bool = False) -> None:
        super().__init__()
        self.lin1 = nn.Linear(d_in, hidden)
        self.lin2 = nn.Linear(hidden, d_out)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(d_out) if layer_norm else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.lin1.reset_parameters()
        self.lin2.reset_parameters()
        if self.norm is not None:
            self.norm.reset_parameters()

    def forward(self, x: Tensor) -> Tensor:
        y = self.lin2(self.dropout(F.gelu(self.lin1(x))))
        return self.norm(y) if self.norm is not None else y


class EarlyFusion(nn.Module):
    r"""Early fusion: concatenate the two global vectors and run an MLP.

    .. math::
        \mathbf{q} = \mathrm{LayerNorm}\Big(\mathbf{W}_2\,\mathrm{Dropout}\big(\mathrm{GELU}
        (\mathbf{W}_1[\mathbf{x}_{img} \,\Vert\, \mathbf{x}_{txt}] + \mathbf{b}_1)\big)
        + \mathbf{b}_2\Big)

    where :math:`\mathbf{x}_m` is the modality's global vector, or the masked mean of its
    tokens when the global vector is None.

    Args:
        d_img: image feature size ``D_img``.
        d_txt: text feature size ``D_txt``.
        d_out: output size ``D_out``.
        hidden: hidden size of the MLP (default ``d_out``).
        dropout: dropout after the GELU.

    Shapes:
        input ``FusionInputs`` (globals ``[B, D_img]``, ``[B, D_txt]`` or tokens + masks);
        output ``FusionOutput`` with ``q: [B, D_out]`` and no attention weights.
    """

    def __init__(self, d_img: int, d_txt: int, d_out: int, hidden: int | None = None,
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.d_img, self.d_txt, self.d_out = d_img, d_txt, d_out
        self.mlp = FeedForward(d_img + d_txt, hidden or d_out, d_out, dropout, layer_norm=True)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.mlp.reset_parameters()

    def forward(self, inputs: FusionInputs) -> FusionOutput:
        x = torch.cat([inputs.image_vector(), inputs.text_vector()], dim=-1)
        return FusionOutput(q=self.mlp(x))

    def extra_repr(self) -> str:
        return f"d_img={self.d_img}, d_txt={self.d_txt}, d_out={self.d_out}"
