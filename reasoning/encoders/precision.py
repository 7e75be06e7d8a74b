"""Which floating-point type a frozen image tower runs in at inference.

``"float32"`` always; ``"bfloat16"`` always (weights and activations in bf16, features
returned as float32); ``"auto"`` chooses bf16 where the hardware computes it natively — a
CUDA device with bf16 support, or a CPU with AMX or AVX-512 BF16 (Intel Sapphire Rapids and
later, AMD Zen 4 and later), where oneDNN runs the convolutions about 1.6× faster — and
float32 elsewhere (an emulated bf16 would be slower than float32). An encoder whose
``inference_dtype`` is unset follows ``$KGMM_IMAGE_DTYPE`` (e.g. ``float32`` for bit-stable
features across machines in ``kgmm answer`` or ``kgmm serve``).

bf16 keeps 8 bits of mantissa: the pooled features differ from float32 by about 3 % in
relative L2 norm, which the heads trained on either one tolerate (the test suite checks the
agreement of the ImageNet top-1 and of the pooled features).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import torch

INFERENCE_DTYPES = ("auto", "float32", "bfloat16")
#: the environment variable an encoder without an explicit ``inference_dtype`` follows
ENV_VAR = "KGMM_IMAGE_DTYPE"
_NATIVE_BF16_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})


@functools.cache
def cpu_has_native_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether the CPU flags list AMX-BF16 or AVX512-BF16 (False where unknown)."""
    try:
        text = Path(cpuinfo).read_text(encoding="ascii", errors="replace")
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            return bool(_NATIVE_BF16_FLAGS & set(line.partition(":")[2].split()))
    return False


def resolve_inference_dtype(name: str | None, device: torch.device) -> torch.dtype:
    """The dtype ``name`` (one of :data:`INFERENCE_DTYPES`; None = the environment variable
    ``KGMM_IMAGE_DTYPE``, else ``"auto"``) means on ``device``."""
    source = "inference_dtype"
    if name is None and os.environ.get(ENV_VAR):
        name, source = os.environ[ENV_VAR].strip().lower(), ENV_VAR
    name = name or "auto"
    if name not in INFERENCE_DTYPES:
        raise ValueError(f"{source} must be one of {INFERENCE_DTYPES}, got {name!r}")
    if name == "float32":
        return torch.float32
    if name == "bfloat16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return torch.float32


def weights_version(module: torch.nn.Module) -> int:
    """A number that changes whenever any parameter or buffer of ``module`` is modified in
    place (the sum of the tensors' version counters): the key of cached inference copies."""
    return sum(int(t._version) for t in (*module.parameters(), *module.buffers()))
