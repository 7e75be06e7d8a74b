"""A small CNN trained from scratch: for tests and fast experiments.

Four blocks, each ``Conv3×3(stride 2) → BN → ReLU → Conv3×3 → BN → ReLU``; widths
``dim/8, dim/4, dim/2, dim`` (at least 8). Total stride 16: a 128 px image gives an 8×8 grid,
224 px a 14×14 grid. Output ``[B, dim, H/16, W/16]``.
"""

from __future__ import annotations

from torch import Tensor, nn


class ConvBlock(nn.Sequential):
    """``Conv3×3(stride) → BN → ReLU → Conv3×3 → BN → ReLU``."""

    def __init__(self, c_in: int, c_out: int, stride: int = 2) -> None:
        super().__init__(
            nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
        )


class SmallCNN(nn.Module):
    """Four :class:`ConvBlock` s; ``forward(x [B,3,H,W]) -> grid [B, dim, ⌈H/16⌉, ⌈W/16⌉]``."""

    def __init__(self, dim: int = 256, in_channels: int = 3) -> None:
        super().__init__()
        if dim < 8:
            raise ValueError(f"dim must be >= 8, got {dim}")
        widths = [max(8, dim // 8), max(8, dim // 4), max(8, dim // 2), dim]
        blocks, c_in = [], in_channels
        for w in widths:
            blocks.append(ConvBlock(c_in, w))
            c_in = w
        self.blocks = nn.Sequential(*blocks)
        self.dim = dim
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
                m.reset_running_stats()

    def forward(self, x: Tensor) -> Tensor:
        return self.blocks(x)
