r"""Adversarial modality alignment: a discriminator behind a gradient-reversal layer."""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["AdversarialAlignment", "AdversarialOutput", "GradientReversal", "grad_reverse"]


class _GradientReversalFn(torch.autograd.Function):
    """Identity forward; gradient multiplied by ``-lambda`` backward."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, lambd: float) -> Tensor:
        ctx.lambd = lambd
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return grad.neg() * ctx.lambd, None


def grad_reverse(x: Tensor, lambd: float = 1.0) -> Tensor:
    r"""Gradient reversal (Ganin & Lempitsky, 2015): :math:`R(\mathbf{x}) = \mathbf{x}`,
    :math:`\partial R / \partial \mathbf{x} = -\lambda \mathbf{I}`."""
    return _GradientReversalFn.apply(x, lambd)


class GradientReversal(nn.Module):
    r"""Module form of :func:`grad_reverse`; ``lambd`` may be changed during training."""

    def __init__(self, lambd: float = 1.0) -> None:
        super().__init__()
        self.lambd = lambd

    def forward(self, x: Tensor) -> Tensor:
        return grad_reverse(x, self.lambd)

    def extra_repr(self) -> str:
        return f"lambd={self.lambd}"


class AdversarialOutput(NamedTuple):
    """``loss``: the discriminator loss (scalar, differentiable); ``accuracy``: the
    discriminator's accuracy on the batch (scalar, detached)."""

    loss: Tensor
    accuracy: Tensor


class AdversarialAlignment(nn.Module):
    r"""Modality-adversarial alignment of image and text embeddings.

    A discriminator :math:`D` (MLP, :math:`D(\mathbf{z}) = \sigma(\mathrm{MLP}(\mathbf{z}))`
    = probability that :math:`\mathbf{z}` is an image embedding) plays

    .. math::
        \min_{enc} \max_D \; \mathbb{E}[\log D(\mathbf{z}_{img})]
        + \mathbb{E}[\log(1 - D(\mathbf{z}_{txt}))].

    The returned loss is the discriminator's binary cross-entropy

    .. math::
        \mathcal{L}_D = -\frac{1}{B_i}\sum \log D(R(\mathbf{z}_{img}))
        - \frac{1}{B_t}\sum \log\big(1 - D(R(\mathbf{z}_{txt}))\big)

    with :math:`R` the gradient-reversal layer (:math:`-\lambda` on the backward pass).
    Minimising :math:`\mathcal{L}_D` therefore trains :math:`D` to separate the
    modalities while the encoders receive :math:`-\lambda\,\partial\mathcal{L}_D/\partial
    \mathbf{z}`, i.e. they ascend :math:`\mathcal{L}_D` and make the modalities
    indistinguishable — one optimiser, one backward pass. At the equilibrium
    :math:`\mathcal{L}_D = 2\log 2` and the accuracy is 0.5.

    Args:
        dim: embedding size.
        hidden: discriminator hidden size (default ``dim``).
        grl_lambda: :math:`\lambda` (attribute ``grl.lambd``, may be scheduled).
        dropout: dropout in the discriminator.

    Shapes: ``z_img: [B_i, dim]``, ``z_txt: [B_t, dim]`` (unpaired is fine) ->
    ``AdversarialOutput(loss: [], accuracy: [])``. ``targets`` is accepted and ignored.
    """

    def __init__(self, dim: int, hidden: int | None = None, grl_lambda: float = 1.0,
                 dropout: float = 0.0) -> None:
        super().__init__()
        hidden = hidden or dim
        self.dim = dim
        self.grl = GradientReversal(grl_lambda)
        self.discriminator = nn.Sequential(
            nn.Linear(dim, hidden), nn.LeakyReLU(0.2), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, 1))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in self.discriminator:
            if isinstance(m, nn.Linear):
                m.reset_parameters()

    def logits(self, z: Tensor) -> Tensor:
        """Discriminator logits ``[B]`` (positive = image), without gradient reversal."""
        return self.discriminator(z).squeeze(-1)

    def forward(self, z_img: Tensor, z_txt: Tensor,
                targets: Tensor | None = None) -> AdversarialOutput:
        s_img = self.logits(self.grl(z_img))
        s_txt = self.logits(self.grl(z_txt))
        loss = (F.binary_cross_entropy_with_logits(s_img, torch.ones_like(s_img))
                + F.binary_cross_entropy_with_logits(s_txt, torch.zeros_like(s_txt)))
        with torch.no_grad():
            correct = (s_img > 0).sum() + (s_txt <= 0).sum()
            accuracy = correct.float() / (s_img.numel() + s_txt.numel())
        return AdversarialOutput(loss, accuracy)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"
