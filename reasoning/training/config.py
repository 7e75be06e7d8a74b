"""Training configuration: one dataclass that round-trips through JSON."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["TrainConfig"]

_SCHEDULES = ("cosine", "linear", "constant")
_MODES = ("min", "max")
_AMP = ("auto", "bf16", "off")
_OPTIMIZERS = ("adamw", "adam", "sgd")


@dataclass
class TrainConfig:
    """Everything the :class:`~kgmm.reasoning.training.Trainer` needs to know besides the model.

    Attributes:
        epochs: number of passes over the training data.
        batch_size: samples per batch *per process* (under DDP the global batch is
            ``batch_size * world_size``).
        lr: peak learning rate (reached after warm-up).
        weight_decay: decoupled weight decay; applied to parameters with ``ndim >= 2`` only
            (biases and norm weights are not decayed) when the trainer builds the optimizer.
        optimizer: ``"adamw"`` | ``"adam"`` | ``"sgd"`` (momentum 0.9), used when no optimizer
            is passed to the trainer.
        warmup_steps: linear warm-up length in optimizer steps; if 0, ``warmup_ratio`` of the
            total number of steps is used instead.
        warmup_ratio: warm-up length as a fraction of all steps (used when ``warmup_steps == 0``).
        schedule: learning-rate decay after warm-up: ``"cosine"`` | ``"linear"`` | ``"constant"``.
        min_lr_ratio: the decayed learning rate never goes below ``min_lr_ratio * lr``.
        grad_clip: clip the global gradient L2 norm to this value; ``None`` or 0 disables.
        seed: seed of python, numpy and torch (CPU and CUDA) RNGs and of the data order.
        early_stopping_patience: stop after this many evaluations without improvement of
            ``metric``; ``None`` disables early stopping.
        metric: name of the validation metric that picks the best checkpoint and drives early
            stopping (a key of the dict ``evaluate`` returns; without validation data, a key
            of the averaged training metrics, e.g. ``"loss"``).
        mode: ``"min"`` or ``"max"``: whether a smaller or larger ``metric`` is better.
        min_delta: an improvement must exceed this to count.
        eval_every: validate every this many epochs (and always after the last epoch).
        amp: ``"auto"`` = bf16 autocast on CUDA, off on CPU; ``"bf16"`` forces bf16 autocast;
            ``"off"`` disables it.
        device: ``"auto"`` (CUDA when available) | ``"cpu"`` | ``"cuda"`` | ``"cuda:N"``.
        num_workers: DataLoader worker processes.
        shuffle: shuffle the training data each epoch (seeded; the order depends only on
            ``seed`` and the epoch).
        drop_last: drop the last incomplete training batch.
        checkpoint_dir: run directory for checkpoints, ``LATEST``/``BEST`` pointers and
            ``history.jsonl``; ``None`` disables checkpointing (and ``resume``).
        keep_last: number of most recent epoch checkpoints kept (the best is always kept).
        log_every: refresh the progress bar / emit a debug log line every this many steps.
        deterministic: also ask torch for deterministic kernels
            (``torch.use_deterministic_algorithms(True, warn_only=True)``, cuDNN benchmark off).
    """

    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adamw"
    warmup_steps: int = 0
    warmup_ratio: float = 0.0
    schedule: str = "cosine"
    min_lr_ratio: float = 0.0
    grad_clip: float | None = 1.0
    seed: int = 0
    early_stopping_patience: int | None = None
    metric: str = "loss"
    mode: str = "min"
    min_delta: float = 0.0
    eval_every: int = 1
    amp: str = "auto"
    device: str = "auto"
    num_workers: int = 0
    shuffle: bool = True
    drop_last: bool = False
    checkpoint_dir: str | None = None
    keep_last: int = 2
    log_every: int = 10
    deterministic: bool = False

    def __post_init__(self) -> None:
        if self.checkpoint_dir is not None:
            self.checkpoint_dir = str(self.checkpoint_dir)
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first invalid field."""

        def bad(name: str, why: str) -> ValueError:
            return ValueError(f"TrainConfig.{name}={getattr(self, name)!r}: {why}")

        for name in ("epochs", "batch_size", "eval_every", "log_every"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise bad(name, "must be an integer >= 1")
        for name in ("warmup_steps", "num_workers", "keep_last"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise bad(name, "must be an integer >= 0")
        for name in ("lr", "weight_decay", "min_delta"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise bad(name, "must be a finite number >= 0")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise bad("warmup_ratio", "must be in [0, 1)")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise bad("min_lr_ratio", "must be in [0, 1]")
        if self.grad_clip is not None and not (
            isinstance(self.grad_clip, int | float) and self.grad_clip >= 0
        ):
            raise bad("grad_clip", "must be None or a number >= 0")
        if self.early_stopping_patience is not None and (
            not isinstance(self.early_stopping_patience, int) or self.early_stopping_patience < 1
        ):
            raise bad("early_stopping_patience", "must be None or an integer >= 1")
        choices = {"schedule": _SCHEDULES, "mode": _MODES, "amp": _AMP, "optimizer": _OPTIMIZERS}
        for name, valid in choices.items():
            if getattr(self, name) not in valid:
                raise bad(name, f"must be one of {', '.join(map(repr, valid))}")
        device = self.device
        if not (device in ("auto", "cpu", "cuda") or
                (device.startswith("cuda:") and device[5:].isdigit())):
            raise bad("device", "must be 'auto', 'cpu', 'cuda' or 'cuda:N'")
        if not isinstance(self.seed, int):
            raise bad("seed", "must be an integer")

    # -- JSON round trip -------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain ``dict`` of all fields (JSON-serialisable)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Build from :meth:`to_dict` output; unknown keys raise ``ValueError``."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s): {', '.join(unknown)}")
        return cls(**dict(data))

    def to_json(self, path: str | Path | None = None) -> str:
        """Serialise to a JSON string; also write it to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    @classmethod
    def from_json(cls, source: str | Path) -> TrainConfig:
        """Parse a JSON string, or read a ``.json`` file when ``source`` is a path."""
        if isinstance(source, Path) or not str(source).lstrip().startswith("{"):
            source = Path(source).read_text(encoding="utf-8")
        return cls.from_dict(json.loads(source))

    def replace(self, **changes: Any) -> TrainConfig:
        """Copy with some fields changed (validated)."""
        return dataclasses.replace(self, **changes)
