"""Choosing the inference dtype of a frozen image tower."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from kgmm.reasoning.encoders.precision import cpu_has_native_bf16, resolve_inference_dtype


def _cpuinfo(tmp_path: Path, flags: str) -> str:
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nmodel name\t: test\nflags\t\t: {flags}\n\n")
    return str(path)


def test_native_bf16_is_read_from_the_cpu_flags(tmp_path: Path) -> None:
    assert cpu_has_native_bf16(_cpuinfo(tmp_path / "a", "fpu sse2 avx512f amx_bf16 amx_tile"))
    assert cpu_has_native_bf16(_cpuinfo(tmp_path / "b", "fpu avx512f avx512_bf16"))
    assert not cpu_has_native_bf16(_cpuinfo(tmp_path / "c", "fpu sse2 avx2 avx512f"))
    assert not cpu_has_native_bf16(str(tmp_path / "missing"))


@pytest.fixture(autouse=True)
def _dirs(tmp_path: Path) -> None:
    for sub in ("a", "b", "c"):
        (tmp_path / sub).mkdir()


def test_explicit_names_and_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KGMM_IMAGE_DTYPE", raising=False)
    cpu = torch.device("cpu")
    assert resolve_inference_dtype("float32", cpu) == torch.float32
    assert resolve_inference_dtype("bfloat16", cpu) == torch.bfloat16
    expected = torch.bfloat16 if cpu_has_native_bf16() else torch.float32
    assert resolve_inference_dtype("auto", cpu) == expected
    assert resolve_inference_dtype(None, cpu) == expected
    with pytest.raises(ValueError, match="inference_dtype"):
        resolve_inference_dtype("half", cpu)


def test_unset_dtype_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.device("cpu")
    monkeypatch.setenv("KGMM_IMAGE_DTYPE", "float32")
    assert resolve_inference_dtype(None, cpu) == torch.float32
    assert resolve_inference_dtype("bfloat16", cpu) == torch.bfloat16  # explicit wins
    monkeypatch.setenv("KGMM_IMAGE_DTYPE", " BFloat16 ")
    assert resolve_inference_dtype(None, cpu) == torch.bfloat16
    monkeypatch.setenv("KGMM_IMAGE_DTYPE", "fp8")
    with pytest.raises(ValueError, match="KGMM_IMAGE_DTYPE must be one of"):
        resolve_inference_dtype(None, cpu)
