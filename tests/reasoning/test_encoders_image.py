"""Image encoders: EfficientNet-Lite0 on real photos, small CNN, tiny CLIP/ViT, ResNet-50."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from kgmm.reasoning.encoders import (
    EfficientNetLiteEncoder,
    HFVisionEncoder,
    ImageEncoder,
    ImageFeatures,
    SmallCNNEncoder,
    build_image_encoder,
    top_synsets,
)

CATS = {"n02124075", "n02123045", "n02123159"}  # Egyptian cat, tabby, tiger cat
COFFEE = {"n07920052", "n07930864", "n03063599"}  # espresso, cup, coffee mug


@pytest.fixture(scope="module")
def lite0() -> ImageEncoder:
    return build_image_encoder("efficientnet-lite0")


@pytest.fixture(scope="module")
def photos() -> list[Image.Image]:
    skdata = pytest.importorskip("skimage.data")
    return [Image.fromarray(skdata.chelsea()), Image.fromarray(skdata.coffee())]


def _tiny_clip_vision(path: Path) -> Path:
    from transformers import CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(0)
    config = CLIPVisionConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                              num_attention_heads=4, image_size=32, patch_size=8)
    CLIPVisionModel(config).save_pretrained(str(path))
    return path


def test_lite0_shapes_and_defaults(lite0: ImageEncoder, photos: list[Image.Image]) -> None:
    assert isinstance(lite0, EfficientNetLiteEncoder)
    assert lite0.dim == 1280 and lite0.image_size == 224
    assert lite0.frozen and not any(p.requires_grad for p in lite0.parameters())
    out = lite0.encode(photos)
    assert isinstance(out, ImageFeatures)
    assert out.tokens.shape == (2, 49, 1280) and out.grid_size == (7, 7)
    assert out.pooled.shape == (2, 1280) and out.mask is None
    assert out.logits is not None and out.logits.shape == (2, 1000)
    assert torch.allclose(out.pooled, out.tokens.mean(1), atol=1e-5)
    assert not out.pooled.requires_grad
    small = lite0.encode(lite0.preprocess(photos, 128))  # float batch: used as is
    assert small.tokens.shape == (2, 16, 1280) and small.grid_size == (4, 4)


def test_lite0_detail_map_is_the_last_stride16_block(photos: list[Image.Image]) -> None:
    enc = build_image_encoder("efficientnet-lite0", inference_dtype="float32")
    x = enc.preprocess(photos)
    out = enc.encode(x)
    assert out.detail is not None and out.detail.shape == (2, 112, 14, 14)
    with torch.no_grad():  # the package's own blocks, BN unfolded: stem, then blocks 0..10
        net = enc.net.eval()
        ref = net._swish(net._bn0(net._conv_stem(x)))
        for block in net._blocks[:11]:
            ref = block(ref)
        assert torch.allclose(out.detail, ref, atol=1e-3)
        assert torch.allclose(out.tokens, net.extract_features(x).flatten(2).transpose(1, 2),
                              atol=1e-3)
    # "same" padding rounds up: 200 px -> 13×13 detail under a 7×7 grid
    odd = enc.encode(enc.preprocess(photos, 200))
    assert odd.detail.shape == (2, 112, 13, 13) and odd.grid_size == (7, 7)
    # trainable: the detail map carries gradients to the stem
    tuned = build_image_encoder("efficientnet-lite0", frozen=False, image_size=128)
    tuned.train()
    tuned.encode(photos[:1]).detail.sum().backward()
    assert tuned.net._conv_stem.weight.grad is not None


@pytest.mark.parametrize("size", [224, 128])
def test_lite0_classifies_real_photos(lite0: ImageEncoder, photos: list[Image.Image],
                                      size: int) -> None:
    logits = lite0.encode(lite0.preprocess(photos, size)).logits
    assert logits is not None
    cat, coffee = top_synsets(logits, k=3)
    assert cat[0][0] in CATS, cat
    assert coffee[0][0] == "n07920052", coffee  # espresso
    assert {w for w, _, _ in coffee} & COFFEE
    assert sum(p for w, _, p in cat if w in CATS) > 0.5


def test_lite0_input_variants(lite0: ImageEncoder, photos: list[Image.Image]) -> None:
    gray = photos[0].convert("L")
    rgba = photos[0].convert("RGBA")
    out = lite0.encode([gray, rgba])
    assert out.pooled.shape == (2, 1280)
    pixels = torch.from_numpy(np.asarray(photos[1]).copy()).permute(2, 0, 1)  # uint8
    assert lite0.encode(pixels).logits.argmax().item() == 967  # espresso
    assert lite0.encode([]).pooled.shape == (0, 1280)


def test_lite0_finetune_and_round_trip(tmp_path: Path, photos: list[Image.Image]) -> None:
    enc = build_image_encoder("efficientnet-lite0", frozen=False, image_size=128)
    assert all(p.requires_grad for p in enc.parameters())
    enc.train()
    assert enc.training
    enc.encode(photos[:1]).pooled.sum().backward()
    assert enc.net._conv_stem.weight.grad is not None
    enc.eval()
    enc.save_pretrained(tmp_path / "lite0")
    saved = json.loads((tmp_path / "lite0" / "kgmm_encoder.json").read_text())
    assert saved["arch"] == "efficientnet-lite0" and saved["image_size"] == 128
    again = build_image_encoder(str(tmp_path / "lite0"))
    assert again.image_size == 128 and not again.frozen
    with torch.no_grad():
        a, b = enc.encode(photos), again.encode(photos)
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.logits, b.logits)


def test_small_cnn(tmp_path: Path) -> None:
    torch.manual_seed(0)
    enc = build_image_encoder("small_cnn", dim=64)
    assert isinstance(enc, SmallCNNEncoder) and enc.dim == 64 and not enc.frozen
    out = enc(torch.randn(3, 3, 128, 128))
    assert out.tokens.shape == (3, 64, 64) and out.pooled.shape == (3, 64)
    assert out.grid_size == (8, 8) and out.logits is None
    out.pooled.sum().backward()
    assert all(p.grad is not None for p in enc.parameters())
    enc.eval()
    enc.save_pretrained(tmp_path / "cnn")
    again = build_image_encoder(str(tmp_path / "cnn"))
    img = Image.new("RGB", (50, 70), (200, 30, 60))
    with torch.no_grad():
        assert torch.equal(enc.encode([img]).tokens, again.encode([img]).tokens)
    frozen = build_image_encoder(str(tmp_path / "cnn"), frozen=True)
    assert not any(p.requires_grad for p in frozen.parameters())
    frozen.train()
    assert not frozen.training


def test_tiny_clip_vision_round_trip(tmp_path: Path) -> None:
    src = _tiny_clip_vision(tmp_path / "clip_vision")
    enc = build_image_encoder(str(src))
    assert isinstance(enc, HFVisionEncoder) and enc.dim == 32 and enc.image_size == 32
    assert enc.frozen and not any(p.requires_grad for p in enc.parameters())
    img = Image.new("RGB", (64, 48), (10, 200, 90))
    out = enc.encode([img, img.convert("L")])
    assert out.tokens.shape == (2, 16, 32) and out.pooled.shape == (2, 32)
    assert out.grid_size == (4, 4) and out.logits is None
    enc.save_pretrained(tmp_path / "saved")
    assert (tmp_path / "saved" / "model.safetensors").is_file()
    again = build_image_encoder(str(tmp_path / "saved"))
    assert again.config.mean == enc.config.mean
    b = again.encode([img, img.convert("L")])
    assert torch.equal(out.tokens, b.tokens) and torch.equal(out.pooled, b.pooled)


def test_tiny_vit(tmp_path: Path) -> None:
    from transformers import ViTConfig, ViTModel

    config = ViTConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                       num_attention_heads=4, image_size=32, patch_size=8)
    ViTModel(config, add_pooling_layer=False).save_pretrained(str(tmp_path / "vit"))
    enc = build_image_encoder(str(tmp_path / "vit"), frozen=False)
    assert not enc.frozen
    out = enc(torch.randn(2, 3, 32, 32))
    assert out.tokens.shape == (2, 16, 32) and out.pooled.shape == (2, 32)


def test_resnet50_local_weights_only(tmp_path: Path) -> None:
    pytest.importorskip("torchvision")
    from safetensors.torch import save_file
    from torchvision.models import resnet50

    with pytest.warns(UserWarning, match="randomly initialised"):
        rand = build_image_encoder("resnet50")
    assert not rand.frozen  # random weights are there to be trained
    torch.manual_seed(1)
    net = resnet50(weights=None).eval()
    save_file({k: v.contiguous() for k, v in net.state_dict().items()},
              str(tmp_path / "r50.safetensors"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        enc = build_image_encoder("resnet50", weights_path=str(tmp_path / "r50.safetensors"))
    assert enc.frozen and enc.dim == 2048
    x = torch.randn(1, 3, 64, 64)
    out = enc.encode(x)
    assert out.tokens.shape == (1, 4, 2048) and out.grid_size == (2, 2)
    assert out.detail is not None and out.detail.shape == (1, 1024, 4, 4)  # layer3, stride 16
    with torch.no_grad():
        assert torch.allclose(out.logits, net(x), atol=1e-4)


def test_unknown_option_rejected() -> None:
    with pytest.raises(TypeError, match="unknown image encoder options"):
        build_image_encoder("small_cnn", size=64)


def test_import_is_lazy() -> None:
    code = ("import sys, kgmm.reasoning.encoders; "
            "heavy = {'transformers', 'torchvision', 'efficientnet_lite_pytorch', 'timm'}; "
            "print(sorted(heavy & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"
