r"""Folding batch normalisation into the preceding convolution for frozen inference.

In eval mode a BatchNorm after a convolution is an affine map per output channel, so

.. math::
    \mathrm{BN}(W * x + b) = \gamma \frac{W * x + b - \mu}{\sqrt{\sigma^2 + \epsilon}} + \beta
    = W' * x + b', \quad W' = \frac{\gamma}{\sqrt{\sigma^2+\epsilon}} W,\;
    b' = \frac{\gamma (b - \mu)}{\sqrt{\sigma^2+\epsilon}} + \beta

and one convolution does the work of two. TensorFlow-style "same" padding is moved into the
convolution itself wherever it is symmetric (stride 1, odd kernel), which removes a ``pad``
copy per layer. The result is a separate module: the trainable encoder keeps its own weights.
"""

from __future__ import annotations

import copy
import math

import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

#: (conv attribute, batch-norm attribute) pairs of EfficientNet(-Lite) blocks and stem/head.
EFFICIENTNET_PAIRS = (("_expand_conv", "_bn0"), ("_depthwise_conv", "_bn1"),
                      ("_project_conv", "_bn2"), ("_conv_stem", "_bn0"), ("_conv_head", "_bn1"))


class SamePaddingConv2d(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow "same" padding: ``out = ceil(in / stride)``.

    The padding ``p = max((⌈i/s⌉ − 1)·s + (k − 1)·d + 1 − i, 0)`` is split as ``⌊p/2⌋`` before
    and ``p − ⌊p/2⌋`` after; when it is the same on both sides for every input size (stride 1,
    odd kernel) the convolution pads itself.
    """

    def __init__(self, conv: nn.Conv2d) -> None:
        k, s, d = conv.kernel_size, conv.stride, conv.dilation
        symmetric = all(st == 1 and ((kk - 1) * dd) % 2 == 0 for kk, st, dd in zip(k, s, d,
                                                                                 strict=True))
        padding = tuple((kk - 1) * dd // 2 for kk, dd in zip(k, d, strict=True)) if symmetric \
            else (0, 0)
        super().__init__(conv.in_channels, conv.out_channels, k, s, padding, d, conv.groups,
                         bias=True, device=conv.weight.device, dtype=conv.weight.dtype)
        self.dynamic = not symmetric

    def forward(self, x: Tensor) -> Tensor:
        if self.dynamic:
            pads = []
            for size, k, s, d in zip(reversed(x.shape[-2:]), reversed(self.kernel_size),
                                     reversed(self.stride), reversed(self.dilation), strict=True):
                total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
                pads += [total // 2, total - total // 2]
            if any(pads):
                x = F.pad(x, pads)
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                        self.groups)


def fuse_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> SamePaddingConv2d:
    """One :class:`SamePaddingConv2d` computing ``bn(conv(x))`` in eval mode."""
    fused = SamePaddingConv2d(conv)
    assert bn.running_mean is not None and bn.running_var is not None
    weight, bias = fuse_conv_bn_weights(conv.weight, conv.bias, bn.running_mean, bn.running_var,
                                        bn.eps, bn.weight, bn.bias)
    fused.weight = nn.Parameter(weight.detach(), requires_grad=False)
    fused.bias = nn.Parameter(bias.detach(), requires_grad=False)
    return fused


def fused_efficientnet(net: nn.Module) -> nn.Module:
    """A frozen eval-mode copy of an EfficientNet(-Lite) with every conv+BN pair folded."""
    fused = copy.deepcopy(net).eval()
    for module in fused.modules():
        for conv_name, bn_name in EFFICIENTNET_PAIRS:
            conv, bn = getattr(module, conv_name, None), getattr(module, bn_name, None)
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                setattr(module, conv_name, fuse_conv_bn(conv, bn))
                setattr(module, bn_name, nn.Identity())
    for p in fused.parameters():
        p.requires_grad_(False)
    return fused
