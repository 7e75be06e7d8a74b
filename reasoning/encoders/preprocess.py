"""Image preprocessing: any PIL mode → RGB, resize + centre crop, normalise to a tensor.

Mode handling (:func:`to_rgb`):

* ``RGB`` as is; ``L``, ``P`` (no transparency), ``CMYK``, ``YCbCr``, ``HSV`` … via
  ``Image.convert("RGB")``; ``1`` (bilevel) → 0/255.
* modes with alpha (``RGBA``, ``LA``, ``PA``, ``RGBa``, ``La``, ``P`` with a transparency key)
  are composited over a background (white by default), so transparent pixels do not turn black.
* 16-bit integer ``I;16`` / ``I;16L`` / ``I;16B`` / ``I;16N`` are scaled by 255/65535 (plain
  ``convert`` would clip everything above 255 to white). ``I`` (32-bit int, which is how older
  Pillow opens 16-bit PNGs) is scaled the same way when its maximum exceeds 255, else taken as
  8-bit. ``F`` (float) is taken as [0, 1] when its maximum is ≤ 1, else as [0, 255]; values are
  clipped.

Huge images are shrunk with ``Image.reduce`` (a fast box filter) before any other work when they
are at least twice the needed size, then resized with bicubic filtering (antialiased) so the
shorter side is ``size / crop_pct`` and centre-cropped to ``size × size`` (``crop_pct=0.875`` is
the usual ImageNet evaluation crop; 1.0 keeps the whole shorter side, as CLIP does).
EXIF orientation is applied first.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from torch import Tensor

# EfficientNet-Lite (TF reference: MEAN_RGB = 127, STDDEV_RGB = 128 on 0..255 pixels)
LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
HALF_MEAN = (0.5, 0.5, 0.5)
HALF_STD = (0.5, 0.5, 0.5)

_ORIENTATION = 0x0112  # EXIF tag
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_REDUCIBLE = ("RGB", "RGBA", "RGBa", "L", "LA", "La", "CMYK", "I", "F")

ImageInput = Image.Image | Sequence[Image.Image]


def to_rgb(img: Image.Image,
           background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Convert a PIL image of any mode to 8-bit ``RGB`` (see module docstring for the rules)."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in _SIXTEEN_BIT or mode in ("I", "F"):
        arr = np.asarray(img).astype(np.float64)
        if mode in _SIXTEEN_BIT:
            arr = arr * (255.0 / 65535.0)
        elif mode == "I":
            if arr.size and arr.max() > 255:
                arr = arr * (255.0 / 65535.0)
        elif arr.size and np.nanmax(arr) <= 1.0:
            arr = arr * 255.0
        arr = np.clip(np.nan_to_num(arr), 0, 255).round().astype(np.uint8)
        return Image.fromarray(arr, mode="L").convert("RGB")
    if mode == "P" and "transparency" in img.info:
        img, mode = img.convert("RGBA"), "RGBA"
    if mode in _ALPHA_MODES:
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*background, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    if mode == "1":
        return img.convert("L").convert("RGB")
    try:
        return img.convert("RGB")
    except ValueError as exc:  # e.g. LAB without a colour profile
        raise ValueError(f"cannot convert PIL mode {mode!r} to RGB") from exc


def resize_center_crop(img: Image.Image, size: int, crop_pct: float = 0.875) -> Image.Image:
    """Resize so the shorter side is ``size / crop_pct`` (bicubic), then centre-crop a square."""
    if not 0 < crop_pct <= 1:
        raise ValueError(f"crop_pct must be in (0, 1], got {crop_pct}")
    w, h = img.size
    if w == 0 or h == 0:
        raise ValueError("empty image")
    short = max(size, math.floor(size / crop_pct))
    scale = short / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    if (nw, nh) != (w, h):
        img = img.resize((nw, nh), Image.Resampling.BICUBIC, reducing_gap=3.0)
    left, top = (nw - size) // 2, (nh - size) // 2
    return img.crop((left, top, left + size, top + size))


def _reduce_if_huge(img: Image.Image, target_short: int) -> Image.Image:
    factor = min(img.size) // (2 * target_short)
    if factor >= 2 and img.mode in _REDUCIBLE:
        return img.reduce(factor)
    return img


def pil_to_tensor(img: Image.Image) -> Tensor:
    """RGB PIL image → float tensor ``[3, H, W]`` in [0, 1]."""
    arr = np.array(img, dtype=np.uint8, copy=True)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an RGB image, got array of shape {arr.shape}")
    return torch.from_numpy(arr).permute(2, 0, 1).float().div_(255.0)


def normalize(x: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """``(x - mean) / std`` per channel for ``[3, H, W]`` or ``[B, 3, H, W]``."""
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    return (x - m) / s


def preprocess_image(img: Image.Image, size: int = 224, *, crop_pct: float = 0.875,
                     mean: Sequence[float] = IMAGENET_MEAN,
                     std: Sequence[float] = IMAGENET_STD,
                     background: tuple[int, int, int] = (255, 255, 255)) -> Tensor:
    """One PIL image → normalised ``[3, size, size]`` float tensor."""
    if not isinstance(img, Image.Image):
        raise TypeError(f"expected a PIL.Image.Image, got {type(img).__name__}")
    if img.getexif().get(_ORIENTATION, 1) != 1:
        img = ImageOps.exif_transpose(img)
    img = _reduce_if_huge(img, max(size, int(size / crop_pct)))
    img = to_rgb(img, background)
    img = resize_center_crop(img, size, crop_pct)
    return normalize(pil_to_tensor(img), mean, std)


def preprocess(images: ImageInput | Tensor, size: int = 224, *, crop_pct: float = 0.875,
               mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
               background: tuple[int, int, int] = (255, 255, 255)) -> Tensor:
    """Images → normalised batch ``[B, 3, size, size]``.

    Accepts one PIL image, a sequence of them, or a ``uint8`` tensor of raw RGB pixels
    (``[3, H, W]`` or ``[B, 3, H, W]``, resized to ``size × size`` with antialiasing).
    """
    if isinstance(images, Tensor):
        if images.dtype != torch.uint8:
            raise TypeError("raw tensors must be uint8 RGB pixels; float tensors are taken as "
                            "already preprocessed by ImageEncoder.encode")
        x = images.unsqueeze(0) if images.dim() == 3 else images
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected [B, 3, H, W] pixels, got {tuple(images.shape)}")
        x = x.float().div(255.0)
        if tuple(x.shape[-2:]) != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False,
                              antialias=True).clamp_(0, 1)
        return normalize(x, mean, std)
    if isinstance(images, Image.Image):
        images = [images]
    batch = [preprocess_image(im, size, crop_pct=crop_pct, mean=mean, std=std,
                              background=background) for im in images]
    if not batch:
        return torch.zeros(0, 3, size, size)
    return torch.stack(batch)
