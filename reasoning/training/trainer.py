"""A generic training loop for every kgmm model.

The model plugs in through two functions (or one object with both as methods, see
:class:`TrainTask`):

* ``train_step(model, batch) -> loss`` or ``(loss, {name: value})`` — forward pass and loss
  on one batch (already moved to the device). Under DDP ``model`` is the
  ``DistributedDataParallel`` wrapper: call ``model(...)`` so gradients are synchronised.
* ``evaluate(model, loader) -> {name: value}`` — validation metrics over a loader (runs in
  eval mode under ``torch.no_grad()``; batches arrive on the device). Optional: the default
  averages ``train_step``'s loss and metrics over the loader.

The :class:`Trainer` owns everything else: seeding, device, bf16 autocast on CUDA, gradient
clipping, the warm-up schedule, progress bars, validation, early stopping, atomic
checkpoints with exact resume, ``history.jsonl``, and DDP under ``torchrun``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from .checkpoint import (
    BEST_FILE,
    Checkpoint,
    _write_file,
    _write_pointer,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from .config import TrainConfig
from .distributed import (
    DistributedContext,
    all_gather_json,
    all_reduce_mean,
    all_reduce_sum,
    barrier,
    init_distributed,
)
from .schedule import build_scheduler

__all__ = [
    "Evaluate",
    "TrainResult",
    "TrainStep",
    "TrainTask",
    "Trainer",
    "batch_size_of",
    "capture_rng_state",
    "default_evaluate",
    "move_to_device",
    "restore_rng_state",
    "seed_everything",
    "unwrap_model",
]

logger = logging.getLogger("kgmm.training")

HISTORY_FILE = "history.jsonl"
TRAIN_CONFIG_FILE = "train_config.json"

StepOutput = Tensor | tuple[Tensor, Mapping[str, Any]]
TrainStep = Callable[[nn.Module, Any], StepOutput]
Evaluate = Callable[[nn.Module, Iterable[Any]], Mapping[str, Any]]


@runtime_checkable
class TrainTask(Protocol):
    """A model's training logic as one object (alternative to two callables)."""

    def train_step(self, model: nn.Module, batch: Any) -> StepOutput:
        """Loss (and optional scalar metrics) of one batch."""
        ...

    def evaluate(self, model: nn.Module, loader: Iterable[Any]) -> Mapping[str, Any]:
        """Validation metrics over ``loader``."""
        ...


@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` returns.

    ``history`` has one record per epoch: ``{"epoch", "step", "lr", "train": {...},
    "val": {...} | None, "epoch_time", "samples_per_second"}``.
    """

    history: list[dict[str, Any]] = field(default_factory=list)
    best_metric: float | None = None
    best_epoch: int | None = None
    best_checkpoint: Path | None = None
    last_checkpoint: Path | None = None
    epochs_completed: int = 0
    global_step: int = 0
    stopped_early: bool = False
    samples_per_second: float = 0.0
    wall_time: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly ``dict`` (paths as strings)."""
        out = dataclasses.asdict(self)
        for key in ("best_checkpoint", "last_checkpoint"):
            out[key] = str(out[key]) if out[key] is not None else None
        return out


# -- seeding and RNG state --------------------------------------------------------------------

def seed_everything(seed: int) -> None:
    """Seed python's ``random``, numpy's global RNG and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def capture_rng_state() -> dict[str, Any]:
    """JSON-safe snapshot of the python, numpy, torch and (current) CUDA RNG states."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [name, np.asarray(keys).tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state().tolist(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state().tolist()
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(torch.tensor(state["cuda"], dtype=torch.uint8))


def _derive_seed(*parts: int) -> int:
    """A 63-bit seed that depends only on ``parts``."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


# -- batches ----------------------------------------------------------------------------------

def move_to_device(batch: Any, device: torch.device, non_blocking: bool = False) -> Any:
    """Move tensors in a batch (nested dicts / lists / tuples / dataclasses, or any object
    with ``.to(device)`` such as a PyG ``Batch``) to ``device``; other values are kept."""
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=non_blocking)
    if type(batch) is dict:
        return {k: move_to_device(v, device, non_blocking) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # namedtuple
        return type(batch)(*(move_to_device(v, device, non_blocking) for v in batch))
    if isinstance(batch, list | tuple):
        return type(batch)(move_to_device(v, device, non_blocking) for v in batch)
    if dataclasses.is_dataclass(batch) and not isinstance(batch, type):
        changes = {f.name: move_to_device(getattr(batch, f.name), device, non_blocking)
                   for f in dataclasses.fields(batch) if f.init}
        return dataclasses.replace(batch, **changes)
    to = getattr(batch, "to", None)
    if callable(to):  # PyG Data / Batch, transformers BatchEncoding, ...
        try:
            return to(device, non_blocking=non_blocking)
        except TypeError:
            return to(device)
    if isinstance(batch, Mapping):
        return {k: move_to_device(v, device, non_blocking) for k, v in batch.items()}
    return batch


def batch_size_of(batch: Any) -> int | None:
    """Number of samples in a batch: ``num_graphs`` of a PyG batch, else the first dimension
    of the first tensor found (depth-first), else ``len`` of a list; ``None`` if unknown."""
    num_graphs = getattr(batch, "num_graphs", None)
    if isinstance(num_graphs, int):
        return num_graphs
    if isinstance(batch, Tensor):
        return int(batch.shape[0]) if batch.dim() > 0 else 1
    if isinstance(batch, Mapping):
        values: Iterable[Any] = batch.values()
    elif isinstance(batch, list | tuple):
        values = batch
    elif dataclasses.is_dataclass(batch) and not isinstance(batch, type):
        values = (getattr(batch, f.name) for f in dataclasses.fields(batch))
    else:
        return None
    for value in values:
        size = batch_size_of(value)
        if size is not None:
            return size
    return len(batch) if isinstance(batch, list) else None


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside a ``DistributedDataParallel`` (or ``DataParallel``) wrapper."""
    inner = getattr(model, "module", None)
    return inner if isinstance(inner, nn.Module) else model


def _split_output(output: Any) -> tuple[Tensor, Mapping[str, Any]]:
    if isinstance(output, Tensor):
        return output, {}
    if isinstance(output, tuple) and len(output) == 2 and isinstance(output[0], Tensor):
        return output[0], dict(output[1] or {})
    raise TypeError("train_step must return a loss tensor or (loss, metrics dict), "
                    f"not {type(output).__name__}")


def _scalar(name: str, value: Any) -> float:
    if isinstance(value, Tensor):
        value = value.detach().float().mean().item()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"metric {name!r} must be a number or a tensor, "
                        f"not {type(value).__name__}")
    return float(value)


def default_evaluate(train_step: TrainStep) -> Evaluate:
    """An ``evaluate`` that averages ``train_step``'s loss and metrics over the loader
    (weighted by batch size)."""

    def evaluate(model: nn.Module, loader: Iterable[Any]) -> dict[str, float]:
        sums: dict[str, float] = {}
        count = 0
        for batch in loader:
            loss, metrics = _split_output(train_step(model, batch))
            size = batch_size_of(batch) or 1
            count += size
            for name, value in {"loss": loss, **metrics}.items():
                sums[name] = sums.get(name, 0.0) + _scalar(name, value) * size
        return {name: total / max(1, count) for name, total in sums.items()}

    return evaluate


class _DeviceLoader:
    """Iterate a loader, moving each batch to the device and advancing a progress task."""

    def __init__(self, loader: Iterable[Any], device: torch.device, move: bool,
                 on_batch: Callable[[], None] | None = None) -> None:
        self.loader, self.device, self.move, self.on_batch = loader, device, move, on_batch

    def __len__(self) -> int:
        return len(self.loader)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[Any]:
        non_blocking = self.device.type == "cuda"
        for batch in self.loader:
            yield move_to_device(batch, self.device, non_blocking) if self.move else batch
            if self.on_batch is not None:
                self.on_batch()


# -- the trainer ------------------------------------------------------------------------------

class Trainer:
    """Train ``model`` with ``config`` on ``train_data``; see the module docstring.

    Args:
        model: the model (moved to the chosen device; wrapped in DDP under torchrun).
        config: the :class:`TrainConfig`.
        train_data: a map-style ``Dataset`` (the trainer builds a seeded, DDP-aware loader)
            or a ready ``DataLoader`` (used as is: its order and sharding are then yours).
        val_data: optional validation ``Dataset`` or ``DataLoader``.
        train_step / evaluate: the two functions of the module docstring; or pass ``task``.
        task: an object with ``train_step`` and ``evaluate`` methods (:class:`TrainTask`).
        collate_fn: batches samples for the loaders the trainer builds.
        optimizer: an optimizer over ``model``'s parameters, or a factory
            ``params -> optimizer``; default: ``config.optimizer`` with ``config.lr`` and
            weight decay on parameters with ``ndim >= 2``.
        model_config: saved as each checkpoint's ``config.json``; default
            ``model.config.to_dict()`` (or ``model.config`` if a dict, or a dataclass) or ``{}``.
        progress: ``False`` disables the progress bars; otherwise they show only on a
            terminal and only on rank 0.
        console: rich console for progress and summaries (default: stderr).
        callbacks: ``fn(trainer, record)`` called on every rank after each epoch (after
            its checkpoint); set ``trainer.should_stop = True`` to stop.
        move_batch: move batches to the device before ``train_step`` / ``evaluate``.
        ddp_kwargs: extra ``DistributedDataParallel`` arguments (e.g.
            ``find_unused_parameters=True``).
    """

    def __init__(
        self,
        model: nn.Module,
        config: TrainConfig,
        train_data: Dataset[Any] | DataLoader[Any],
        val_data: Dataset[Any] | DataLoader[Any] | None = None,
        *,
        train_step: TrainStep | None = None,
        evaluate: Evaluate | None = None,
        task: TrainTask | None = None,
        collate_fn: Callable[[list[Any]], Any] | None = None,
        optimizer: torch.optim.Optimizer
        | Callable[[list[dict[str, Any]]], torch.optim.Optimizer] | None = None,
        model_config: Mapping[str, Any] | None = None,
        progress: bool | None = None,
        console: Console | None = None,
        callbacks: Sequence[Callable[[Trainer, dict[str, Any]], None]] = (),
        move_batch: bool = True,
        ddp_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        config.validate()
        self.config = config
        if task is not None:
            train_step = train_step or task.train_step
            evaluate = evaluate or task.evaluate
        if train_step is None:
            raise ValueError("Trainer needs train_step (or a task with a train_step method)")
        self.train_step: TrainStep = train_step
        self.evaluate_fn: Evaluate | None = evaluate
        if val_data is not None and evaluate is None:
            self.evaluate_fn = default_evaluate(train_step)
        self.collate_fn = collate_fn
        self.callbacks = list(callbacks)
        self.move_batch = move_batch
        self.should_stop = False
        self.console = console or Console(stderr=True)

        self.ctx: DistributedContext = init_distributed(config.device)
        self.device = self.ctx.device
        if config.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
            torch.backends.cudnn.deterministic = True
        self.amp_dtype: torch.dtype | None = None
        if config.amp == "bf16" or (config.amp == "auto" and self.device.type == "cuda"
                                    and torch.cuda.is_bf16_supported()):
            self.amp_dtype = torch.bfloat16

        self.model = model.to(self.device)
        self.model_config = self._model_config(model, model_config)
        self.optimizer = self._build_optimizer(optimizer)

        self._generator = torch.Generator()
        self.train_loader = self._loader(train_data, train=True)
        self.val_loader = self._loader(val_data, train=False) if val_data is not None else None
        try:
            self.steps_per_epoch = len(self.train_loader)
        except TypeError:
            raise ValueError("the training loader must have a length (a sized dataset)") from None
        if self.steps_per_epoch == 0:
            raise ValueError("the training loader yields no batches")
        self.total_steps = self.steps_per_epoch * config.epochs
        self.scheduler = build_scheduler(self.optimizer, config, self.total_steps)

        self.wrapped: nn.Module = self.model
        if self.ctx.enabled:
            from torch.nn.parallel import DistributedDataParallel

            kwargs = dict(ddp_kwargs or {})
            if self.device.type == "cuda":
                kwargs.setdefault("device_ids", [self.device.index])
            self.wrapped = DistributedDataParallel(self.model, **kwargs)

        self.run_dir = Path(config.checkpoint_dir) if config.checkpoint_dir else None
        self.epoch = 0
        self.global_step = 0
        self.history: list[dict[str, Any]] = []
        self.best_metric: float | None = None
        self.best_epoch: int | None = None
        self.best_name: str | None = None
        self.bad_evals = 0
        self.stopped_early = False
        self.last_checkpoint: Path | None = None
        want = progress is not False
        self.progress_enabled = want and self.console.is_terminal and self.ctx.is_main

    # -- construction helpers ------------------------------------------------------------------

    @staticmethod
    def _model_config(model: nn.Module, given: Mapping[str, Any] | None) -> dict[str, Any]:
        if given is not None:
            return dict(given)
        cfg = getattr(model, "config", None)
        if cfg is None:
            return {}
        if hasattr(cfg, "to_dict"):
            return dict(cfg.to_dict())
        if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
            return dataclasses.asdict(cfg)
        return dict(cfg) if isinstance(cfg, Mapping) else {}

    def _build_optimizer(self, optimizer: Any) -> torch.optim.Optimizer:
        if isinstance(optimizer, torch.optim.Optimizer):
            return optimizer
        cfg = self.config
        params = [p for p in self.model.parameters() if p.requires_grad]
        if cfg.weight_decay > 0 and cfg.optimizer != "adam":
            groups = [{"params": [p for p in params if p.ndim >= 2],
                       "weight_decay": cfg.weight_decay},
                      {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
            groups = [g for g in groups if g["params"]]
        else:
            groups = [{"params": params, "weight_decay": cfg.weight_decay}]
        if optimizer is not None:
            return optimizer(groups)
        if cfg.optimizer == "adamw":
            return torch.optim.AdamW(groups, lr=cfg.lr)
        if cfg.optimizer == "adam":
            return torch.optim.Adam(groups, lr=cfg.lr)
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9)

    def _loader(self, data: Any, *, train: bool) -> DataLoader[Any]:
        if isinstance(data, DataLoader):
            if self.ctx.enabled and not isinstance(data.sampler, DistributedSampler):
                logger.warning("a ready DataLoader without DistributedSampler under DDP: "
                               "every process sees all of its data")
            return data
        cfg = self.config
        sampler = DistributedSampler(
            data, num_replicas=self.ctx.world_size, rank=self.ctx.rank,
            shuffle=cfg.shuffle and train, seed=cfg.seed, drop_last=False)
        return DataLoader(
            data, batch_size=cfg.batch_size, sampler=sampler, collate_fn=self.collate_fn,
            num_workers=cfg.num_workers, drop_last=cfg.drop_last and train,
            pin_memory=self.device.type == "cuda",
            generator=self._generator if train else None)

    # -- checkpoint state ----------------------------------------------------------------------

    def _state(self, rng: dict[str, Any]) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "global_step": self.global_step,
            "best_metric": self.best_metric,
            "best_epoch": self.best_epoch,
            "best_checkpoint": self.best_name,
            "bad_evals": self.bad_evals,
            "stopped_early": self.stopped_early,
            "metric": self.config.metric,
            "mode": self.config.mode,
            "world_size": self.ctx.world_size,
            "history": self.history,
            "rng": rng,
        }

    def _save(self, is_best: bool) -> Path | None:
        if self.run_dir is None:
            return None
        rngs = all_gather_json(capture_rng_state(), self.ctx)
        path: Path | None = None
        if self.ctx.is_main:
            path = save_checkpoint(
                self.run_dir / f"epoch-{self.epoch:04d}",
                model=self.model, config=self.model_config, optimizer=self.optimizer,
                scheduler=self.scheduler,
                state=self._state({str(r): s for r, s in enumerate(rngs)}),
                extra_files={TRAIN_CONFIG_FILE: self.config.to_json()},
                is_best=is_best, keep_last=self.config.keep_last)
            self._write_history()
        barrier(self.ctx)
        return path if path is not None else self.run_dir / f"epoch-{self.epoch:04d}"

    def _write_history(self) -> None:
        assert self.run_dir is not None
        text = "".join(json.dumps(rec, sort_keys=True) + "\n" for rec in self.history)
        tmp = self.run_dir / f".tmp-{HISTORY_FILE}"
        _write_file(tmp, text.encode("utf-8"))
        os.replace(tmp, self.run_dir / HISTORY_FILE)

    def _resume(self) -> bool:
        """Restore from ``LATEST`` in the run directory; False when there is nothing yet."""
        if self.run_dir is None:
            raise ValueError("resume needs config.checkpoint_dir")
        if latest_checkpoint(self.run_dir) is None:
            if self.ctx.is_main:
                logger.info("no checkpoint in %s yet: starting from scratch", self.run_dir)
            return False
        ckpt = load_checkpoint(self.run_dir, model=self.model, optimizer=self.optimizer,
                               scheduler=self.scheduler, map_location=self.device)
        self._warn_config_drift(ckpt)
        state = ckpt.state
        self.epoch = int(state["epoch"])
        self.global_step = int(state["global_step"])
        self.best_metric = state.get("best_metric")
        self.best_epoch = state.get("best_epoch")
        self.best_name = state.get("best_checkpoint")
        self.bad_evals = int(state.get("bad_evals", 0))
        self.stopped_early = bool(state.get("stopped_early", False))
        self.history = list(state.get("history", []))
        self.last_checkpoint = ckpt.path
        rng = state.get("rng", {}).get(str(self.ctx.rank))
        if rng is not None and int(state.get("world_size", 1)) == self.ctx.world_size:
            restore_rng_state(rng)
        else:
            logger.warning("checkpoint RNG state was saved with world size %s, now %s: "
                           "reseeding (the run will not be bit-identical)",
                           state.get("world_size"), self.ctx.world_size)
            seed_everything(_derive_seed(self.config.seed, self.ctx.rank, self.epoch))
        if self.ctx.is_main:
            if self.best_name and (self.run_dir / self.best_name).is_dir():
                _write_pointer(self.run_dir, BEST_FILE, self.best_name)
            self._write_history()
            logger.info("resumed from %s (epoch %d, step %d)", ckpt.path, self.epoch,
                        self.global_step)
        barrier(self.ctx)
        return True

    def _warn_config_drift(self, ckpt: Checkpoint) -> None:
        """Log the training settings that differ from the checkpoint's (resume keeps the
        checkpoint's LR schedule and data order only when they agree)."""
        if not self.ctx.is_main or TRAIN_CONFIG_FILE not in ckpt.files:
            return
        try:
            saved = json.loads(ckpt.read_file(TRAIN_CONFIG_FILE))
        except ValueError:
            return
        current = self.config.to_dict()
        ignore = {"checkpoint_dir", "device", "num_workers", "log_every"}
        changed = sorted(k for k in current if k not in ignore and saved.get(k) != current[k])
        if changed:
            logger.warning("resuming with training settings that differ from the checkpoint "
                           "(%s); the LR schedule is the checkpoint's", ", ".join(changed))

    # -- training ------------------------------------------------------------------------------

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def _set_epoch(self, loader: DataLoader[Any], epoch: int) -> None:
        sampler = getattr(loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)  # type: ignore[union-attr]
        self._generator.manual_seed(_derive_seed(self.config.seed, epoch, self.ctx.rank))

    def _current_lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def _train_epoch(self, progress: Progress | None) -> tuple[dict[str, float], float, float]:
        """One pass over the training data; returns (mean metrics, samples, seconds)."""
        cfg = self.config
        self.wrapped.train()
        self._set_epoch(self.train_loader, self.epoch + 1)
        task = None
        if progress is not None:
            task = progress.add_task(f"epoch {self.epoch + 1}/{cfg.epochs}",
                                     total=self.steps_per_epoch, info="")
        sums: dict[str, Tensor | float] = {}
        samples = 0
        start = time.perf_counter()
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        for index, batch in enumerate(_DeviceLoader(self.train_loader, self.device,
                                                    self.move_batch)):
            size = batch_size_of(batch) or cfg.batch_size
            self.optimizer.zero_grad(set_to_none=True)
            with self._autocast():
                loss, metrics = _split_output(self.train_step(self.wrapped, batch))
            if not loss.requires_grad:
                raise RuntimeError("the loss returned by train_step does not require grad")
            loss.backward()
            values: dict[str, Any] = {"loss": loss.detach().float(), **metrics}
            if cfg.grad_clip:
                values["grad_norm"] = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            self.optimizer.step()
            self.scheduler.step()
            self.global_step += 1
            samples += size
            for name, value in values.items():
                if isinstance(value, Tensor):
                    value = value.detach().float().mean()
                elif not isinstance(value, int | float) or isinstance(value, bool):
                    value = _scalar(name, value)
                sums[name] = sums.get(name, 0.0) + value * size
            if (index + 1) % cfg.log_every == 0 or index + 1 == self.steps_per_epoch:
                loss_value = float(loss.detach().float().item())
                if not math.isfinite(loss_value):
                    raise FloatingPointError(
                        f"non-finite loss {loss_value} at epoch {self.epoch + 1}, "
                        f"step {self.global_step}")
                elapsed = time.perf_counter() - start
                rate = samples * self.ctx.world_size / max(elapsed, 1e-9)
                info = self._info({"loss": loss_value, **{
                    k: _scalar(k, v) for k, v in metrics.items()}}, rate)
                if task is not None and progress is not None:
                    progress.update(task, completed=index + 1, info=info)
                elif self.ctx.is_main:
                    logger.debug("epoch %d step %d: %s", self.epoch + 1, self.global_step, info)
            elif task is not None and progress is not None:
                progress.advance(task)
        seconds = time.perf_counter() - start
        local = {name: _scalar(name, value) for name, value in sums.items()}
        self._check_same_keys(sorted(local))
        local["__samples__"] = float(samples)
        total = all_reduce_sum(local, self.ctx)
        count = total.pop("__samples__")
        means = {name: value / max(count, 1.0) for name, value in total.items()}
        if task is not None and progress is not None:
            progress.update(task, completed=self.steps_per_epoch,
                            info=self._info(means, count / max(seconds, 1e-9)))
        return means, count, seconds

    def _check_same_keys(self, keys: list[str]) -> None:
        if not self.ctx.enabled:
            return
        gathered = all_gather_json(keys, self.ctx)
        if any(g != keys for g in gathered):
            raise RuntimeError(f"train_step metric names differ between ranks: {gathered}")

    def _info(self, metrics: Mapping[str, float], rate: float) -> str:
        parts = [f"{k} {v:.4g}" for k, v in metrics.items()]
        parts.append(f"lr {self._current_lr():.2e}")
        parts.append(f"{rate:.1f} samples/s")
        return " | ".join(parts)

    def _validate(self, progress: Progress | None) -> dict[str, float]:
        assert self.val_loader is not None and self.evaluate_fn is not None
        sampler = getattr(self.val_loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(0)  # type: ignore[union-attr]
        on_batch = None
        if progress is not None:
            try:
                total: int | None = len(self.val_loader)
            except TypeError:
                total = None
            task = progress.add_task("  validate", total=total, info="")
            on_batch = partial(progress.advance, task)
        loader = _DeviceLoader(self.val_loader, self.device, self.move_batch, on_batch)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad(), self._autocast():
                raw = self.evaluate_fn(self.model, loader)
        finally:
            self.model.train(was_training)
        metrics = {name: _scalar(name, value) for name, value in dict(raw).items()}
        self._check_same_keys(sorted(metrics))
        return all_reduce_mean(metrics, self.ctx)

    def _improved(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.best_metric is None:
            return True
        delta = self.config.min_delta
        if self.config.mode == "min":
            return value < self.best_metric - delta
        return value > self.best_metric + delta

    def fit(self, resume: bool = False) -> TrainResult:
        """Train for ``config.epochs`` epochs (or until early stopping) and return the result.

        ``resume=True`` continues from ``LATEST`` in ``config.checkpoint_dir`` (model,
        optimizer, scheduler, RNG states, epoch / step, best metric and history), so an
        interrupted and resumed run ends with the same weights as an uninterrupted one.
        Resuming works at epoch granularity: a partly trained epoch is redone.
        """
        cfg = self.config
        wall_start = time.perf_counter()
        resumed = resume and self._resume()
        if not resumed:
            seed_everything(cfg.seed + self.ctx.rank)
        train_samples = 0.0
        train_seconds = 0.0
        columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"))
        progress_cm: Any = (Progress(*columns, console=self.console)
                            if self.progress_enabled else contextlib.nullcontext())
        try:
            with progress_cm as progress:
                while (self.epoch < cfg.epochs and not self.stopped_early
                       and not self.should_stop):
                    train_metrics, samples, seconds = self._train_epoch(progress)
                    self.epoch += 1
                    train_samples += samples
                    train_seconds += seconds
                    self._end_epoch(train_metrics, samples, seconds, progress)
        finally:
            self.ctx.close()
        best = (self.run_dir / self.best_name
                if self.run_dir is not None and self.best_name else None)
        return TrainResult(
            history=list(self.history), best_metric=self.best_metric,
            best_epoch=self.best_epoch, best_checkpoint=best,
            last_checkpoint=self.last_checkpoint, epochs_completed=self.epoch,
            global_step=self.global_step, stopped_early=self.stopped_early,
            samples_per_second=train_samples / train_seconds if train_seconds else 0.0,
            wall_time=time.perf_counter() - wall_start)

    def _end_epoch(self, train_metrics: dict[str, float], samples: float, seconds: float,
                   progress: Progress | None) -> None:
        cfg = self.config
        val_metrics: dict[str, float] | None = None
        due = self.epoch % cfg.eval_every == 0 or self.epoch == cfg.epochs
        if self.val_loader is not None and due:
            val_metrics = self._validate(progress)
        source = val_metrics if self.val_loader is not None else train_metrics
        is_best = False
        if source is not None:
            if cfg.metric not in source:
                raise KeyError(f"metric {cfg.metric!r} not among the "
                               f"{'validation' if val_metrics is not None else 'training'} "
                               f"metrics: {', '.join(sorted(source))}")
            value = source[cfg.metric]
            if self._improved(value):
                self.best_metric, self.best_epoch = value, self.epoch
                self.best_name = f"epoch-{self.epoch:04d}" if self.run_dir else None
                self.bad_evals = 0
                is_best = True
            else:
                self.bad_evals += 1
                patience = cfg.early_stopping_patience
                if patience is not None and self.bad_evals >= patience:
                    self.stopped_early = True
        record = {
            "epoch": self.epoch,
            "step": self.global_step,
            "lr": self._current_lr(),
            "train": train_metrics,
            "val": val_metrics,
            "epoch_time": seconds,
            "samples_per_second": samples / seconds if seconds else 0.0,
            "best": is_best,
        }
        self.history.append(record)
        saved = self._save(is_best)
        if saved is not None:
            self.last_checkpoint = saved
        if self.ctx.is_main:
            self._report(record, progress)
        for callback in self.callbacks:
            callback(self, record)

    def _report(self, record: Mapping[str, Any], progress: Progress | None) -> None:
        parts = [f"epoch {record['epoch']}/{self.config.epochs}",
                 "train " + ", ".join(f"{k} {v:.4g}" for k, v in record["train"].items())]
        if record["val"] is not None:
            parts.append("val " + ", ".join(f"{k} {v:.4g}" for k, v in record["val"].items()))
        parts.append(f"{record['samples_per_second']:.1f} samples/s")
        if record["best"]:
            parts.append("best")
        if self.stopped_early:
            parts.append(f"early stop ({self.config.metric} did not improve for "
                         f"{self.bad_evals} evaluations)")
        line = " | ".join(parts)
        if progress is not None:
            progress.console.print(line)
        else:
            logger.info(line)
