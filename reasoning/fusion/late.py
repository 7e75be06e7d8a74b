r"""Late fusion: one head per modality, mixed by input-conditioned softmax weights."""

from __future__ import annotations

import torch
from torch import nn

from .early import FeedForward, FusionInputs, FusionOutput

__all__ = ["LateFusion"]


class LateFusion(nn.Module):
    r"""Late fusion with learned, input-conditioned modality weights.

    .. math::
        \mathbf{p}_m = \mathrm{MLP}_m(\mathbf{x}_m), \quad m \in \{img, txt\}

        \mathbf{w} = \mathrm{softmax}\big(g([\mathbf{x}_{img} \,\Vert\, \mathbf{x}_{txt}])\big)
        \in \Delta^{1}

        \mathbf{q} = \sum_m w_m \, \mathbf{p}_m

    with :math:`\mathrm{MLP}_m` and the gate :math:`g` two-layer GELU perceptrons and
    :math:`\mathbf{x}_m` the global vector (or masked token mean) of modality :math:`m`.
    The gate's output layer starts near zero (weights ×0.01, bias 0), so training starts
    from an even mix :math:`\mathbf{w} \approx (\tfrac12, \tfrac12)`; a gate that
    saturates early tends to leave one modality unused.

    Args:
        d_img: image feature size ``D_img``.
        d_txt: text feature size ``D_txt``.
        d_out: output size ``D_out``.
        hidden: hidden size of the heads and of the gate (default ``d_out``).
        dropout: dropout inside the heads.

    Shapes:
        output ``FusionOutput`` with ``q: [B, D_out]``,
        ``attention["modality"]: [B, 2]`` (columns: image, text; rows sum to 1) and
        ``per_modality["image"]``, ``per_modality["text"]``: ``[B, D_out]``.
    """

    def __init__(self, d_img: int, d_txt: int, d_out: int, hidden: int | None = None,
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.d_img, self.d_txt, self.d_out = d_img, d_txt, d_out
        hidden = hidden or d_out
        self.head_img = FeedForward(d_img, hidden, d_out, dropout)
        self.head_txt = FeedForward(d_txt, hidden, d_out, dropout)
        self.gate = FeedForward(d_img + d_txt, hidden, 2)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.head_img.reset_parameters()
        self.head_txt.reset_parameters()
        self.gate.reset_parameters()
        with torch.no_grad():  # start from an even mix, w ≈ (1/2, 1/2)
            self.gate.lin2.weight.mul_(0.01)
            self.gate.lin2.bias.zero_()

    def forward(self, inputs: FusionInputs) -> FusionOutput:
        x_img, x_txt = inputs.image_vector(), inputs.text_vector()
        p_img, p_txt = self.head_img(x_img), self.head_txt(x_txt)
        w = torch.softmax(self.gate(torch.cat([x_img, x_txt], dim=-1)), dim=-1)
        q = w[:, :1] * p_img + w[:, 1:] * p_txt
        return FusionOutput(q=q, attention={"modality": w},
                            per_modality={"image": p_img, "text": p_txt})

    def extra_repr(self) -> str:
        return f"d_img={self.d_img}, d_txt={self.d_txt}, d_out={self.d_out}"
