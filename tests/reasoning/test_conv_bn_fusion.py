"""Folding batch norms into convolutions gives the same features as the original network."""

from __future__ import annotations

import torch
from torch import nn

from kgmm.reasoning.encoders import build_image_encoder
from kgmm.reasoning.encoders.conv_bn_fusion import SamePaddingConv2d, fuse_conv_bn


def _random_bn(channels: int) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(channels).eval()
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
    return bn


def test_fused_conv_matches_same_padded_conv_then_bn() -> None:
    from efficientnet_lite_pytorch.utils import Conv2dDynamicSamePadding

    torch.manual_seed(0)
    for kernel, stride, groups, size in [(3, 2, 1, 15), (3, 2, 1, 16), (5, 1, 8, 9), (1, 1, 1, 7),
                                         (5, 2, 8, 12)]:
        conv = Conv2dDynamicSamePadding(8, 8, kernel, stride=stride, groups=groups, bias=False)
        bn = _random_bn(8)
        x = torch.randn(2, 8, size, size)
        fused = fuse_conv_bn(conv, bn)
        assert isinstance(fused, SamePaddingConv2d)
        assert fused.dynamic == (stride != 1)
        with torch.no_grad():
            expected = bn(conv(x))
            got = fused(x)
        assert got.shape == expected.shape
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_frozen_encoder_uses_the_fused_copy_and_agrees_with_the_original() -> None:
    encoder = build_image_encoder("efficientnet-lite0", image_size=96, inference_dtype="float32")
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        reference = encoder.net.extract_features(x)
        features = encoder.encode(x)
    grid = features.tokens.transpose(1, 2).reshape(reference.shape)
    torch.testing.assert_close(grid, reference, atol=2e-4, rtol=1e-3)
    assert "_fused" in encoder.__dict__
    assert not any(k.startswith("_fused") for k in encoder.state_dict())  # layout unchanged


def test_bf16_inference_stays_close_to_float32_and_returns_float32() -> None:
    encoder = build_image_encoder("efficientnet-lite0", image_size=128, inference_dtype="float32")
    x = torch.rand(2, 3, 128, 128) * 2 - 1
    with torch.no_grad():
        reference = encoder.encode(x)
        encoder.config.inference_dtype = "bfloat16"
        features = encoder.encode(x)
    assert features.pooled.dtype == torch.float32 and features.logits.dtype == torch.float32
    assert encoder.__dict__["_fused"][0][1] == torch.bfloat16  # rebuilt for the new dtype
    error = (features.pooled - reference.pooled).norm() / reference.pooled.norm()
    assert 0 < error < 0.06
    cosine = torch.nn.functional.cosine_similarity(features.pooled, reference.pooled)
    assert (cosine > 0.995).all()
    assert torch.equal(features.logits.argmax(-1), reference.logits.argmax(-1))
