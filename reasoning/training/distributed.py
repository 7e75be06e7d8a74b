"""Distributed data parallel helpers: ``torchrun`` environment, process group, reductions.

``torchrun --nproc_per_node N train.py`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT``; :func:`init_distributed` reads them and starts the
process group (NCCL when the job runs on CUDA, gloo on CPU). Without those variables (or with
``WORLD_SIZE=1``) everything here is a cheap no-op, so the same script runs on one process.

Collectives carry only tensors (JSON text is sent as UTF-8 bytes), never pickled objects.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist

__all__ = [
    "DistributedContext",
    "all_gather_json",
    "all_reduce_mean",
    "all_reduce_sum",
    "barrier",
    "init_distributed",
    "resolve_device",
]


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands in the job.

    Attributes:
        rank / world_size / local_rank: from the torchrun environment (0 / 1 / 0 alone).
        device: the device this process trains on.
        backend: ``"nccl"`` | ``"gloo"`` | ``None`` (not distributed).
        owns_group: this context started the process group (and should destroy it).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    backend: str | None = None
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        """True when more than one process takes part."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on rank 0, the process that logs and saves."""
        return self.rank == 0

    def close(self) -> None:
        """Destroy the process group if this context created it."""
        if self.owns_group and dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from None


def resolve_device(preference: str = "auto", local_rank: int = 0) -> torch.device:
    """``"auto"`` → ``cuda:<local_rank>`` when CUDA is available, else CPU.

    ``"cuda"`` without an index also picks ``cuda:<local_rank>``; asking for CUDA when it is
    not available raises ``RuntimeError``.
    """
    if preference == "cpu":
        return torch.device("cpu")
    if preference == "auto" and not torch.cuda.is_available():
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError(f"device {preference!r} requested but CUDA is not available")
    if preference in ("auto", "cuda"):
        return torch.device("cuda", local_rank % max(1, torch.cuda.device_count()))
    return torch.device(preference)


def init_distributed(device: str = "auto") -> DistributedContext:
    """Read the torchrun environment, pick the device and start the process group if needed.

    An already initialised default process group (e.g. started by the caller) is reused.
    """
    if dist.is_available() and dist.is_initialized():
        rank, world_size = dist.get_rank(), dist.get_world_size()
        local_rank = _env_int("LOCAL_RANK", rank)
        dev = resolve_device(device, local_rank)
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        return DistributedContext(rank, world_size, local_rank, dev, dist.get_backend(), False)
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    dev = resolve_device(device, local_rank)
    if world_size <= 1:
        return DistributedContext(0, 1, 0, dev, None, False)
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but torch.distributed is not available")
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return DistributedContext(rank, world_size, local_rank, dev, backend, True)


def _comm_device(ctx: DistributedContext) -> torch.device:
    return ctx.device if ctx.backend == "nccl" else torch.device("cpu")


def barrier(ctx: DistributedContext) -> None:
    """Wait for every process (no-op alone)."""
    if ctx.enabled:
        dist.barrier()


def all_reduce_sum(values: Mapping[str, float], ctx: DistributedContext) -> dict[str, float]:
    """Sum of scalar values over processes (every rank must pass the same keys)."""
    keys = sorted(values)
    if not ctx.enabled:
        return {k: float(values[k]) for k in keys}
    buf = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64,
                       device=_comm_device(ctx))
    dist.all_reduce(buf, op=dist.ReduceOp.SUM)
    return dict(zip(keys, buf.tolist(), strict=True))


def all_reduce_mean(values: Mapping[str, float], ctx: DistributedContext,
                    weight: float = 1.0) -> dict[str, float]:
    """Weighted mean of scalar metrics over processes (identical result on every rank).

    Every rank must pass the same keys. ``weight`` is this rank's weight (e.g. its sample
    count); the mean is ``sum(w_r * v_r) / sum(w_r)``.
    """
    keys = sorted(values)
    if not ctx.enabled:
        return {k: float(values[k]) for k in keys}
    buf = torch.tensor([float(values[k]) * weight for k in keys] + [weight],
                       dtype=torch.float64, device=_comm_device(ctx))
    dist.all_reduce(buf, op=dist.ReduceOp.SUM)
    total = buf[-1].item()
    return {k: buf[i].item() / total if total else float("nan") for i, k in enumerate(keys)}


def all_gather_json(obj: Any, ctx: DistributedContext) -> list[Any]:
    """Gather one JSON-serialisable object from every rank (as UTF-8 tensors, not pickle)."""
    if not ctx.enabled:
        return [json.loads(json.dumps(obj))]
    dev = _comm_device(ctx)
    data = torch.tensor(list(json.dumps(obj).encode("utf-8")), dtype=torch.uint8, device=dev)
    size = torch.tensor([data.numel()], dtype=torch.int64, device=dev)
    sizes = [torch.zeros_like(size) for _ in range(ctx.world_size)]
    dist.all_gather(sizes, size)
    longest = int(max(s.item() for s in sizes))
    padded = torch.zeros(longest, dtype=torch.uint8, device=dev)
    padded[: data.numel()] = data
    chunks = [torch.zeros_like(padded) for _ in range(ctx.world_size)]
    dist.all_gather(chunks, padded)
    return [json.loads(c[: int(n.item())].cpu().numpy().tobytes().decode("utf-8"))
            for c, n in zip(chunks, sizes, strict=True)]
