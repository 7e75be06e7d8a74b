"""Text and image encoders.

>>> from kgmm.reasoning.encoders import build_text_encoder, build_image_encoder
>>> text = build_text_encoder("minilm")                 # packaged all-MiniLM-L6-v2, frozen
>>> image = build_image_encoder("efficientnet-lite0")   # packaged ImageNet weights, frozen
>>> t = text.encode(["What animal is on the left?"])    # TextFeatures(tokens, mask, pooled)
>>> v = image.encode([pil_image])        # ImageFeatures(tokens, None, pooled, logits)
>>> top_synsets(v.logits, k=3)                          # [[(wnid, name, prob), ...]]

Importing this package loads torch, numpy and Pillow only; ``transformers``, torchvision and the
EfficientNet code are imported when an encoder that needs them is built.
"""

from __future__ import annotations

from typing import Any

from .base import FreezableEncoder, ImageFeatures, TextFeatures
from .image import (
    ARCHITECTURES,
    EfficientNetLiteEncoder,
    HFVisionEncoder,
    ImageEncoder,
    ImageEncoderConfig,
    ResNet50Encoder,
    SmallCNNEncoder,
    packaged_efficientnet_lite0_path,
)
from .imagenet import ImageNetClass, imagenet_classes, imagenet_names, imagenet_wnids, top_synsets
from .preprocess import preprocess, to_rgb
from .small_cnn import SmallCNN
from .text import TextEncoder, TextEncoderConfig, minilm_path


def build_text_encoder(name_or_path: str = "minilm", **cfg: Any) -> TextEncoder:
    """A :class:`TextEncoder` from ``"minilm"``, a checkpoint directory or an HF name/path.

    ``cfg``: :class:`TextEncoderConfig` fields (``frozen``, ``max_length``, ``pooling``,
    ``normalize``, ``cache_size``, ``local_files_only``).
    """
    return TextEncoder.from_pretrained(name_or_path, **cfg)


def build_image_encoder(name_or_path: str = "efficientnet-lite0", **cfg: Any) -> ImageEncoder:
    """An :class:`ImageEncoder`: ``"efficientnet-lite0"``, ``"resnet50"``, ``"small_cnn"``, a
    checkpoint directory, or an HF CLIP/ViT name/path.

    ``cfg``: :class:`ImageEncoderConfig` fields (``image_size``, ``crop_pct``, ``mean``,
    ``std``, ``frozen``, ``dim``, ``weights_path``, ``local_files_only``).
    """
    return ImageEncoder.from_pretrained(name_or_path, **cfg)


__all__ = [
    "ARCHITECTURES",
    "EfficientNetLiteEncoder",
    "FreezableEncoder",
    "HFVisionEncoder",
    "ImageEncoder",
    "ImageEncoderConfig",
    "ImageFeatures",
    "ImageNetClass",
    "ResNet50Encoder",
    "SmallCNN",
    "SmallCNNEncoder",
    "TextEncoder",
    "TextEncoderConfig",
    "TextFeatures",
    "build_image_encoder",
    "build_text_encoder",
    "imagenet_classes",
    "imagenet_names",
    "imagenet_wnids",
    "minilm_path",
    "packaged_efficientnet_lite0_path",
    "preprocess",
    "to_rgb",
    "top_synsets",
]
