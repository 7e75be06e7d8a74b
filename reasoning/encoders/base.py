"""Shared pieces of the text and image encoders: feature containers, freezing, offline loading.

Checkpoint layout written by every ``save_pretrained``: a directory with ``kgmm_encoder.json``
(which encoder, its settings) plus the weights as safetensors (``model.safetensors``, or the
Hugging Face files for HF-backed towers) — never pickle.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import torch
from torch import Tensor, nn

CONFIG_NAME = "kgmm_encoder.json"
WEIGHTS_NAME = "model.safetensors"
_OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


@dataclass
class TextFeatures:
    """Output of a text encoder.

    Attributes:
        tokens: ``[B, T, D]`` contextual token features (padding positions hold garbage; use mask).
        mask: ``[B, T]`` bool, True for real tokens (special tokens included).
        pooled: ``[B, D]`` sentence vector.
    """

    tokens: Tensor
    mask: Tensor
    pooled: Tensor


@dataclass
class ImageFeatures:
    """Output of an image encoder.

    Attributes:
        tokens: ``[B, P, D]`` grid cells (CNNs, row-major) or patch tokens (ViT/CLIP, CLS removed).
        mask: always None (every image has the same number of cells); kept for symmetry.
        pooled: ``[B, D]`` global image vector.
        logits: ``[B, 1000]`` ImageNet logits where the model has a classifier, else None.
        grid_size: ``(h, w)`` of the token grid where known, else None.
        detail: ``[B, D', H', W']`` a finer feature map (channels first) of the same image
            where the encoder has one — the last stage at half the tokens' stride (stride 16
            for the stride-32 CNNs) — for localising small objects (the scene parser reads
            it); None otherwise.
    """

    tokens: Tensor
    mask: Tensor | None
    pooled: Tensor
    logits: Tensor | None = None
    grid_size: tuple[int, int] | None = None
    detail: Tensor | None = None


class FreezableEncoder(nn.Module):
    """An ``nn.Module`` with a ``frozen`` flag.

    Frozen: every parameter has ``requires_grad=False`` and the module stays in eval mode even
    when a parent calls ``.train()`` (so BatchNorm statistics and dropout never change);
    ``encode`` then runs under ``torch.no_grad``.
    """

    def __init__(self) -> None:
        super().__init__()
        self._frozen = False

    @property
    def frozen(self) -> bool:
        return self._frozen

    def freeze(self) -> Self:
        """Stop gradients into this encoder and switch it to eval mode."""
        self._frozen = True
        for p in self.parameters():
            p.requires_grad_(False)
        super().train(False)
        return self

    def unfreeze(self) -> Self:
        """Make every parameter trainable again (mode is left to the caller's ``.train()``)."""
        self._frozen = False
        for p in self.parameters():
            p.requires_grad_(True)
        return self

    def set_frozen(self, frozen: bool) -> Self:
        return self.freeze() if frozen else self.unfreeze()

    def train(self, mode: bool = True) -> Self:
        return super().train(mode and not self._frozen)

    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        for b in self.buffers():
            return b.device
        return torch.device("cpu")

    def _grad_context(self) -> contextlib.AbstractContextManager[Any]:
        """``torch.no_grad`` for frozen encoders (not inference_mode: outputs feed trainable
        heads, and inference tensors cannot be saved for backward)."""
        return torch.no_grad() if self._frozen else contextlib.nullcontext()


@contextlib.contextmanager
def hub_offline() -> Iterator[None]:
    """Set ``HF_HUB_OFFLINE=1`` / ``TRANSFORMERS_OFFLINE=1`` for the duration of a load.

    Used around the packaged defaults (which are loaded from local directories with
    ``local_files_only=True`` as well), so nothing can reach a model hub.
    """
    saved = {k: os.environ.get(k) for k in _OFFLINE_VARS}
    for k in _OFFLINE_VARS:
        os.environ[k] = "1"
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def env_offline() -> bool:
    """True if the user asked for offline mode through the usual environment variables."""
    return any(os.environ.get(k, "").strip().lower() in {"1", "true", "yes", "on"}
               for k in _OFFLINE_VARS)


def write_config(directory: str | os.PathLike[str], config: dict[str, Any]) -> Path:
    """Write ``kgmm_encoder.json`` into ``directory`` (created if missing)."""
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    (path / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return path


def read_config(directory: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The saved ``kgmm_encoder.json`` of ``directory``, or None if it is not a kgmm checkpoint."""
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return data


def load_state_file(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """Load a state dict from ``.safetensors`` or a (weights-only) torch ``.pt/.pth`` file.

    Checkpoints that wrap the weights under ``"state_dict"`` or ``"model"`` are unwrapped.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"weights file not found: {p}")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(p))
    state = torch.load(str(p), map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ValueError(f"{p}: not a state dict")
    return state


def save_state_file(module: nn.Module, path: str | os.PathLike[str]) -> None:
    """Save ``module.state_dict()`` as safetensors (contiguous CPU copies)."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    save_file(state, str(path), metadata={"format": "pt"})
