"""Image preprocessing: PIL mode conversions, value ranges, resizing."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from kgmm.reasoning.encoders.preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    LITE_MEAN,
    LITE_STD,
    preprocess,
    to_rgb,
)


def _gradient_rgb(w: int = 40, h: int = 30) -> Image.Image:
    x = np.linspace(0, 255, w, dtype=np.uint8)[None, :].repeat(h, 0)
    y = np.linspace(0, 255, h, dtype=np.uint8)[:, None].repeat(w, 1)
    return Image.fromarray(np.stack([x, y, 255 - x], axis=-1), mode="RGB")


def _images_of_every_mode() -> dict[str, Image.Image]:
    rgb = _gradient_rgb()
    i16 = Image.fromarray(np.arange(40 * 30, dtype=np.uint16).reshape(30, 40) * 50)
    i32 = Image.fromarray(np.arange(40 * 30, dtype=np.int32).reshape(30, 40) * 50)
    f32 = Image.fromarray(np.linspace(0, 1, 40 * 30, dtype=np.float32).reshape(30, 40))
    return {
        "RGB": rgb,
        "L": rgb.convert("L"),
        "LA": rgb.convert("LA"),
        "RGBA": rgb.convert("RGBA"),
        "P": rgb.convert("P"),
        "1": rgb.convert("1"),
        "CMYK": rgb.convert("CMYK"),
        "YCbCr": rgb.convert("YCbCr"),
        "I;16": i16,
        "I": i32,
        "F": f32,
    }


@pytest.mark.parametrize("mode", list(_images_of_every_mode()))
def test_every_mode_gives_rgb_tensor_in_range(mode: str) -> None:
    img = _images_of_every_mode()[mode]
    assert img.mode == mode
    assert to_rgb(img).mode == "RGB"
    x = preprocess(img, 24, mean=LITE_MEAN, std=LITE_STD)
    assert x.shape == (1, 3, 24, 24) and x.dtype == torch.float32
    raw = x * torch.tensor(LITE_STD).view(1, 3, 1, 1) + torch.tensor(LITE_MEAN).view(1, 3, 1, 1)
    assert raw.min() >= -1e-5 and raw.max() <= 1 + 1e-5
    assert raw.max() - raw.min() > 0.2  # the content survived (not all black / all white)


def test_sixteen_bit_is_scaled_not_clipped() -> None:
    arr = np.array([[0, 16384, 32768, 65535]], dtype=np.uint16)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")  # a real 16-bit grayscale PNG
    png = Image.open(io.BytesIO(buf.getvalue()))
    big_endian = Image.frombytes("I;16B", (4, 1), arr.astype(">u2").tobytes())
    assert (png.mode, big_endian.mode) == ("I;16", "I;16B")
    for img in (png, big_endian):
        assert np.asarray(to_rgb(img))[0, :, 0].tolist() == [0, 64, 128, 255], img.mode
    # Pillow's own conversion clips: everything from 255 up turns white
    assert np.asarray(png.convert("L"))[0, 1] == 255
    # 32-bit "I" holding 16-bit data (older Pillow opens 16-bit PNGs this way)
    i32 = Image.fromarray(arr.astype(np.int32))
    assert i32.mode == "I"
    assert np.asarray(to_rgb(i32))[0, :, 0].tolist() == [0, 64, 128, 255]
    # 8-bit data in "I" is left alone
    small = Image.fromarray(np.array([[0, 100, 255]], dtype=np.int32))
    assert np.asarray(to_rgb(small))[0, :, 0].tolist() == [0, 100, 255]
    # float images in [0, 1]
    f32 = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32))
    assert np.asarray(to_rgb(f32))[0, :, 0].tolist() == [0, 128, 255]
    white = Image.fromarray(np.full((8, 8), 65535, dtype=np.uint16))
    x = preprocess(white, 4, crop_pct=1.0, mean=(0, 0, 0), std=(1, 1, 1))
    assert torch.allclose(x, torch.ones_like(x))


def test_alpha_composited_on_white() -> None:
    img = Image.new("RGBA", (4, 4), (255, 0, 0, 0))  # fully transparent red
    img.putpixel((0, 0), (0, 0, 255, 255))
    rgb = np.asarray(to_rgb(img))
    assert rgb[1, 1].tolist() == [255, 255, 255]
    assert rgb[0, 0].tolist() == [0, 0, 255]
    assert np.asarray(to_rgb(img, background=(0, 0, 0)))[1, 1].tolist() == [0, 0, 0]
    pal = Image.new("P", (2, 1))
    pal.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    pal.putpixel((1, 0), 1)
    pal.info["transparency"] = 0
    assert np.asarray(to_rgb(pal)).tolist() == [[[255, 255, 255], [10, 200, 30]]]


def test_bilevel_and_cmyk_values() -> None:
    one = Image.new("1", (2, 1))
    one.putpixel((1, 0), 1)
    assert np.asarray(to_rgb(one)).tolist() == [[[0, 0, 0], [255, 255, 255]]]
    cmyk = Image.new("CMYK", (1, 1), (0, 255, 255, 0))  # pure red
    assert np.asarray(to_rgb(cmyk))[0, 0].tolist() == [255, 0, 0]


def test_resize_and_crop_keep_content_centred() -> None:
    img = Image.new("RGB", (300, 100), (0, 0, 0))
    img.paste((255, 255, 255), (100, 0, 200, 100))  # white middle third
    x = preprocess(img, 32, crop_pct=1.0, mean=(0, 0, 0), std=(1, 1, 1))
    assert x.shape == (1, 3, 32, 32)
    assert x[..., 2:-2].min() > 0.99  # the centre square is the white band (edges: bicubic)


def test_huge_image_is_reduced_and_correct() -> None:
    img = Image.new("RGB", (6000, 4000), (10, 120, 240))
    x = preprocess(img, 16, mean=(0, 0, 0), std=(1, 1, 1))
    assert x.shape == (1, 3, 16, 16)
    assert torch.allclose(x[0, :, 8, 8], torch.tensor([10, 120, 240]) / 255, atol=1e-2)


def test_exif_orientation_applied() -> None:
    img = Image.new("RGB", (40, 20), (0, 0, 0))
    img.paste((255, 255, 255), (0, 0, 20, 20))  # left half white
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise on display: white ends up on top
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif.tobytes(), quality=95)
    loaded = Image.open(io.BytesIO(buf.getvalue()))
    x = preprocess(loaded, 20, crop_pct=1.0, mean=(0, 0, 0), std=(1, 1, 1))[0, 0]
    assert x[:5].mean() > 0.9 and x[-5:].mean() < 0.1


def test_uint8_tensor_and_batches() -> None:
    pixels = torch.full((2, 3, 50, 70), 255, dtype=torch.uint8)
    x = preprocess(pixels, 16, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    assert x.shape == (2, 3, 16, 16)
    expected = (1 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert torch.allclose(x[0, :, 0, 0], expected, atol=1e-4)
    with pytest.raises(TypeError):
        preprocess(pixels.float(), 16)
    assert preprocess([], 16).shape == (0, 3, 16, 16)
    batch = preprocess([_gradient_rgb(), _gradient_rgb(10, 90).convert("L")], 16)
    assert batch.shape == (2, 3, 16, 16)
