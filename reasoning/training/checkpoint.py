"""Checkpoints: safetensors plus JSON, written atomically, verified on load, never pickled.

A checkpoint is a directory::

    model.safetensors        model state dict (tied / shared tensors stored once)
    optimizer.safetensors    optimizer tensors (moments, step counts) ─┐ optional
    optimizer.json           the rest (param_groups, tensor references) ┘
    scheduler.json (+ .safetensors when it holds tensors)               optional
    trainer_state.json (+ trainer_state.safetensors when it holds tensors)
    config.json              the model configuration
    kgmm_version             the kgmm version that wrote it
    <extra files>            e.g. train_config.json, tokenizer files
    manifest.json            format name + version and SHA-256 / size of every file above

Checkpoints of one run live side by side in a *run directory* that also holds two pointer
files, ``LATEST`` and ``BEST``, each containing one checkpoint directory name. A checkpoint is
written into a hidden temporary sibling, every file fsync'ed, then renamed into place; only
then is ``LATEST`` replaced (``os.replace``), so a crash at any moment leaves ``LATEST``
naming a complete checkpoint.

Nested state dicts (optimizer, scheduler, trainer state) are split by :func:`flatten_state`
into a JSON tree and a flat tensor dict; tuples, non-string dict keys and non-finite floats
are tagged so that :func:`unflatten_state` restores them exactly.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import safetensors.torch
import torch
from torch import Tensor, nn

from kgmm.graph.errors import KGMMError

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "Checkpoint",
    "CheckpointError",
    "best_checkpoint",
    "flatten_state",
    "kgmm_version",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "prune_checkpoints",
    "save_checkpoint",
    "unflatten_state",
    "verify_checkpoint",
]

FORMAT_NAME = "kgmm-checkpoint"
FORMAT_VERSION = 1

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
STATE_FILE = "trainer_state.json"
VERSION_FILE = "kgmm_version"
MANIFEST_FILE = "manifest.json"
LATEST_FILE = "LATEST"
BEST_FILE = "BEST"
_COMPONENTS = ("optimizer", "scheduler", "trainer_state")
_RESERVED = frozenset(
    {MODEL_FILE, CONFIG_FILE, VERSION_FILE, MANIFEST_FILE}
    | {f"{c}.json" for c in _COMPONENTS} | {f"{c}.safetensors" for c in _COMPONENTS}
)
_REQUIRED = (MODEL_FILE, CONFIG_FILE, STATE_FILE, VERSION_FILE)
_TMP_PREFIX = ".tmp-"
_OLD_PREFIX = ".old-"


class CheckpointError(KGMMError):
    """A checkpoint is missing, incomplete, corrupt, or of another format version.

    ``path`` is the file (or directory) at fault.
    """

    def __init__(self, message: str, *, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.reason = message
        super().__init__(f"{path}: {message}" if path is not None else message)


def kgmm_version() -> str:
    """The installed kgmm version (``"unknown"`` when not installed)."""
    try:
        return metadata.version("kgmm")
    except metadata.PackageNotFoundError:
        return "unknown"


# -- nested state <-> (JSON tree, tensors) ----------------------------------------------------

_MARKERS = frozenset({"__tensor__", "__ndarray__", "__tuple__", "__dict__", "__float__"})


def flatten_state(obj: Any) -> tuple[Any, dict[str, Tensor]]:
    """Split a nested state (dicts, lists, tuples, numbers, strings, tensors, numpy arrays)
    into a JSON-safe tree and a flat ``{name: tensor}`` dict for safetensors.

    Tensors are detached, moved to CPU and made contiguous; tensors sharing storage are
    cloned (safetensors refuses shared storage). Anything else raises ``TypeError``.
    """
    tensors: dict[str, Tensor] = {}
    seen: set[tuple[int, int]] = set()

    def add(path: str, value: Tensor) -> str:
        name = path or "tensor"
        if name in tensors:
            name = f"{name}#{len(tensors)}"
        value = value.detach().cpu().contiguous()
        storage = value.untyped_storage()
        key = (storage.data_ptr(), storage.nbytes())
        if key in seen and value.numel() > 0:
            value = value.clone()
        else:
            seen.add(key)
        tensors[name] = value
        return name

    def enc(value: Any, path: str) -> Any:
        if value is None or isinstance(value, bool | str):
            return value
        if isinstance(value, int):
            return int(value)
        if isinstance(value, float):
            return value if math.isfinite(value) else {"__float__": repr(value)}
        if isinstance(value, Tensor):
            return {"__tensor__": add(path, value)}
        if isinstance(value, np.ndarray):
            return {"__ndarray__": add(path, torch.from_numpy(np.ascontiguousarray(value)))}
        if isinstance(value, np.generic):
            return enc(value.item(), path)
        if isinstance(value, tuple):
            return {"__tuple__": [enc(v, f"{path}.{i}") for i, v in enumerate(value)]}
        if isinstance(value, list):
            return [enc(v, f"{path}.{i}") for i, v in enumerate(value)]
        if isinstance(value, Mapping):
            prefix = f"{path}." if path else ""
            if all(isinstance(k, str) for k in value) and not _MARKERS & set(value):
                return {k: enc(v, f"{prefix}{k}") for k, v in value.items()}
            return {"__dict__": [[enc(k, f"{prefix}{k}"), enc(v, f"{prefix}{k}")]
                                 for k, v in value.items()]}
        raise TypeError(f"cannot checkpoint {type(value).__name__} at {path or '<root>'!r}")

    return enc(obj, ""), tensors


def unflatten_state(tree: Any, tensors: Mapping[str, Tensor]) -> Any:
    """Inverse of :func:`flatten_state`."""

    def dec(value: Any) -> Any:
        if isinstance(value, list):
            return [dec(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((tag, inner),) = value.items()
            if tag == "__tensor__":
                return tensors[inner]
            if tag == "__ndarray__":
                return tensors[inner].numpy()
            if tag == "__tuple__":
                return tuple(dec(v) for v in inner)
            if tag == "__dict__":
                return {_hashable(dec(k)): dec(v) for k, v in inner}
            if tag == "__float__":
                return float(inner)
        return {k: dec(v) for k, v in value.items()}

    return dec(tree)


def _hashable(key: Any) -> Any:
    return tuple(_hashable(k) for k in key) if isinstance(key, list) else key


# -- low-level durable writes -----------------------------------------------------------------

def _fsync_dir(path: Path) -> None:
    """fsync a directory so that renames in it are durable (no-op where unsupported)."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_file(path: Path, data: bytes | Callable[[str], None]) -> None:
    """Write ``data`` (bytes, or a function that writes the file at a path) and fsync it.

    Every file of a checkpoint goes through this function.
    """
    if callable(data):
        data(str(path))
        with open(path, "rb+") as handle:
            os.fsync(handle.fileno())
        return
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _write_pointer(run_dir: Path, name: str, target: str) -> None:
    """Atomically point ``run_dir/name`` (``LATEST``/``BEST``) at checkpoint ``target``."""
    tmp = run_dir / f"{_TMP_PREFIX}{name}-{uuid.uuid4().hex}"
    try:
        _write_file(tmp, (target + "\n").encode("utf-8"))
        os.replace(tmp, run_dir / name)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    _fsync_dir(run_dir)


def _read_pointer(run_dir: Path, name: str) -> Path | None:
    pointer = run_dir / name
    try:
        target = pointer.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    if not target or "/" in target or "\\" in target or target in (".", ".."):
        raise CheckpointError(f"invalid checkpoint pointer {target!r}", path=pointer)
    return run_dir / target


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=1, sort_keys=False, allow_nan=False) + "\n").encode("utf-8")


def _check_extra_name(name: str) -> str:
    posix = PurePosixPath(name)
    if (not name or posix.is_absolute() or ".." in posix.parts or "\\" in name
            or str(posix) != name or name in _RESERVED):
        raise ValueError(f"invalid or reserved extra file name {name!r}")
    return name


# -- save -------------------------------------------------------------------------------------

def save_checkpoint(
    directory: str | Path,
    *,
    model: nn.Module,
    config: Mapping[str, Any],
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    state: Mapping[str, Any] | None = None,
    extra_files: Mapping[str, bytes | str] | None = None,
    update_latest: bool = True,
    is_best: bool = False,
    keep_last: int | None = None,
) -> Path:
    """Write a checkpoint directory atomically and return its path.

    Args:
        directory: the checkpoint directory (e.g. ``runs/x/epoch-0003``); its parent is the
            run directory holding ``LATEST``/``BEST``. An existing directory of that name is
            replaced.
        model: its ``state_dict()`` goes to ``model.safetensors`` (shared tensors stored once;
            pass the unwrapped module, not a DDP wrapper).
        config: JSON-serialisable model configuration (``config.json``).
        optimizer / scheduler: anything with ``state_dict()``; saved as JSON + safetensors.
        state: trainer state (epoch, step, best metric, RNG states, history, ...): any nested
            structure :func:`flatten_state` accepts.
        extra_files: more files (relative POSIX paths) to store and hash; ``str`` is UTF-8.
        update_latest: replace ``LATEST`` with this checkpoint's name once it is complete.
        is_best: also point ``BEST`` at it.
        keep_last: if given, afterwards delete all but the ``keep_last`` most recent
            checkpoints of the run directory (``LATEST`` and ``BEST`` are always kept).
    """
    directory = Path(directory)
    run_dir = directory.parent
    run_dir.mkdir(parents=True, exist_ok=True)
    extra = {_check_extra_name(k): v for k, v in (extra_files or {}).items()}
    _remove_stale(run_dir)
    tmp = run_dir / f"{_TMP_PREFIX}{directory.name}-{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        files: list[str] = []

        def put(name: str, data: bytes | Callable[[str], None]) -> None:
            target = tmp / name
            target.parent.mkdir(parents=True, exist_ok=True)
            _write_file(target, data)
            files.append(name)

        module = model.module if hasattr(model, "module") and isinstance(
            model.module, nn.Module) else model
        put(MODEL_FILE, lambda p: safetensors.torch.save_model(
            module, p, metadata={"format": "pt"}))
        for name, obj in (("optimizer", optimizer), ("scheduler", scheduler)):
            if obj is not None:
                _put_component(put, name, obj.state_dict(), always_tensors=True)
        _put_component(put, "trainer_state", dict(state or {}), always_tensors=False)
        put(CONFIG_FILE, _json_bytes(dict(config)))
        put(VERSION_FILE, (kgmm_version() + "\n").encode("utf-8"))
        for name, data in extra.items():
            put(name, data.encode("utf-8") if isinstance(data, str) else bytes(data))
        manifest = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "kgmm_version": kgmm_version(),
            "created_ns": time.time_ns(),
            "files": {n: {"sha256": _sha256(tmp / n), "size": (tmp / n).stat().st_size}
                      for n in files},
        }
        put(MANIFEST_FILE, _json_bytes(manifest))
        for sub in sorted({(tmp / n).parent for n in files}, key=lambda p: -len(p.parts)):
            _fsync_dir(sub)
        _move_into_place(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(run_dir)
    if update_latest:
        _write_pointer(run_dir, LATEST_FILE, directory.name)
    if is_best:
        _write_pointer(run_dir, BEST_FILE, directory.name)
    if keep_last is not None:
        prune_checkpoints(run_dir, keep_last)
    return directory


def _put_component(put: Callable[[str, Any], None], name: str, obj: Any, *,
                   always_tensors: bool) -> None:
    try:
        tree, tensors = flatten_state(obj)
    except TypeError as exc:
        raise CheckpointError(f"{name} state cannot be saved without pickle: {exc}") from exc
    try:
        payload = _json_bytes(tree)
    except ValueError as exc:
        raise CheckpointError(f"{name} state is not JSON-serialisable: {exc}") from exc
    if tensors or always_tensors:
        put(f"{name}.safetensors", safetensors.torch.save(tensors))
    put(f"{name}.json", payload)


def _move_into_place(tmp: Path, directory: Path) -> None:
    """Rename the finished temp directory to ``directory`` (replacing an existing one)."""
    old: Path | None = None
    if directory.exists():
        old = directory.parent / f"{_OLD_PREFIX}{directory.name}-{uuid.uuid4().hex}"
        os.replace(directory, old)
    os.replace(tmp, directory)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _remove_stale(run_dir: Path) -> None:
    """Delete temp / replaced directories and files left behind by a crashed save."""
    for child in run_dir.iterdir():
        if not child.name.startswith((_TMP_PREFIX, _OLD_PREFIX)):
            continue
        if child.is_dir():
            shutil.rmtree(child, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                child.unlink()


# -- inspect / retention ----------------------------------------------------------------------

def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The checkpoint ``run_dir/LATEST`` points at, or ``None`` when there is none yet."""
    return _read_pointer(Path(run_dir), LATEST_FILE)


def best_checkpoint(run_dir: str | Path) -> Path | None:
    """The checkpoint ``run_dir/BEST`` points at, or ``None``."""
    return _read_pointer(Path(run_dir), BEST_FILE)


def _read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST_FILE
    if not directory.is_dir():
        raise CheckpointError("checkpoint directory not found", path=directory)
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError("missing manifest (incomplete or not a kgmm checkpoint)",
                              path=path) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"corrupt manifest: {exc}", path=path) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise CheckpointError(f"not a {FORMAT_NAME} manifest", path=path)
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint format version {version!r} is not supported "
            f"(this kgmm reads version {FORMAT_VERSION})", path=path)
    if not isinstance(manifest.get("files"), dict):
        raise CheckpointError("manifest has no file list", path=path)
    return manifest


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run directory, oldest first (by manifest creation time)."""
    run_dir = Path(run_dir)
    found: list[tuple[int, str, Path]] = []
    if not run_dir.is_dir():
        return []
    for child in run_dir.iterdir():
        if not child.is_dir() or child.name.startswith("."):
            continue
        try:
            manifest = _read_manifest(child)
        except CheckpointError:
            continue
        found.append((int(manifest.get("created_ns", 0)), child.name, child))
    return [path for _, _, path in sorted(found)]


def prune_checkpoints(run_dir: str | Path, keep_last: int) -> list[Path]:
    """Delete all but the ``keep_last`` newest checkpoints, never ``LATEST`` or ``BEST``.

    Returns the deleted directories.
    """
    run_dir = Path(run_dir)
    checkpoints = list_checkpoints(run_dir)
    keep = set(checkpoints[len(checkpoints) - keep_last:] if keep_last > 0 else [])
    for pointer in (LATEST_FILE, BEST_FILE):
        with contextlib.suppress(CheckpointError):
            target = _read_pointer(run_dir, pointer)
            if target is not None:
                keep.add(target)
    removed = [path for path in checkpoints if path not in keep]
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed


# -- load -------------------------------------------------------------------------------------

def verify_checkpoint(directory: str | Path) -> dict[str, Any]:
    """Check the manifest and every file's size and SHA-256; return the manifest.

    Raises :class:`CheckpointError` naming the first missing / corrupt file.
    """
    directory = Path(directory)
    manifest = _read_manifest(directory)
    files: dict[str, Any] = manifest["files"]
    for name in _REQUIRED:
        if name not in files:
            raise CheckpointError("required file not listed in the manifest",
                                  path=directory / name)
    for name, entry in files.items():
        posix = PurePosixPath(name)
        if posix.is_absolute() or ".." in posix.parts:
            raise CheckpointError("unsafe file name in manifest", path=directory / MANIFEST_FILE)
        path = directory / name
        if not path.is_file():
            raise CheckpointError("file listed in the manifest is missing", path=path)
        if path.stat().st_size != entry.get("size"):
            raise CheckpointError(
                f"size {path.stat().st_size} does not match the manifest ({entry.get('size')}): "
                "truncated or corrupt", path=path)
        if _sha256(path) != entry.get("sha256"):
            raise CheckpointError("SHA-256 does not match the manifest: corrupt", path=path)
    return manifest


@dataclass
class Checkpoint:
    """A verified checkpoint: its JSON parts loaded, its tensors loaded on demand."""

    path: Path
    manifest: dict[str, Any]
    config: dict[str, Any]
    state: dict[str, Any]
    kgmm_version: str
    files: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.path.name

    def read_file(self, name: str) -> bytes:
        """Bytes of a file listed in the manifest (e.g. an extra file)."""
        if name not in self.manifest["files"]:
            raise CheckpointError("no such file in the checkpoint", path=self.path / name)
        return (self.path / name).read_bytes()

    def model_state_dict(self, map_location: str | torch.device = "cpu") -> dict[str, Tensor]:
        """The raw tensors of ``model.safetensors`` (tied duplicates appear once)."""
        path = self.path / MODEL_FILE
        try:
            return safetensors.torch.load_file(path, device=str(map_location))
        except Exception as exc:
            raise CheckpointError(f"cannot read safetensors: {exc}", path=path) from exc


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError("file is missing", path=path) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"invalid JSON: {exc}", path=path) from None


def _load_component(directory: Path, name: str, files: Mapping[str, Any],
                    map_location: str | torch.device) -> Any:
    json_path = directory / f"{name}.json"
    if json_path.name not in files:
        raise CheckpointError(f"checkpoint holds no {name} state", path=json_path)
    tree = _load_json(json_path)
    tensors: dict[str, Tensor] = {}
    st_path = directory / f"{name}.safetensors"
    if st_path.name in files:
        try:
            tensors = safetensors.torch.load(st_path.read_bytes())
        except Exception as exc:
            raise CheckpointError(f"cannot read safetensors: {exc}", path=st_path) from exc
        tensors = {k: v.to(map_location) for k, v in tensors.items()}
    try:
        return unflatten_state(tree, tensors)
    except KeyError as exc:
        raise CheckpointError(f"references missing tensor {exc}", path=json_path) from None


def resolve_checkpoint(directory_or_run_dir: str | Path) -> Path:
    """A checkpoint directory itself, or the one ``LATEST`` names in a run directory."""
    path = Path(directory_or_run_dir)
    if (path / MANIFEST_FILE).is_file():
        return path
    latest = latest_checkpoint(path)
    if latest is not None:
        return latest
    if not path.exists():
        raise CheckpointError("no such checkpoint or run directory", path=path)
    raise CheckpointError("neither a checkpoint (no manifest.json) nor a run directory "
                          "(no LATEST)", path=path)


def load_checkpoint(
    directory_or_run_dir: str | Path,
    model: nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    map_location: str | torch.device = "cpu",
    strict: bool = True,
) -> Checkpoint:
    """Verify a checkpoint and load it into the given objects.

    ``directory_or_run_dir`` is a checkpoint directory or a run directory (then ``LATEST``
    is followed). Every file's hash is checked first; a missing, truncated or corrupt file or
    another format version raises :class:`CheckpointError` naming it. ``model`` receives the
    weights (``strict`` as in ``load_state_dict``; tied weights are handled), ``optimizer`` and
    ``scheduler`` their states. No pickle is involved anywhere.
    """
    directory = resolve_checkpoint(directory_or_run_dir)
    manifest = verify_checkpoint(directory)
    files = manifest["files"]
    config = _load_json(directory / CONFIG_FILE)
    state = _load_component(directory, "trainer_state", files, map_location)
    version = (directory / VERSION_FILE).read_text(encoding="utf-8").strip()
    if model is not None:
        module = model.module if hasattr(model, "module") and isinstance(
            model.module, nn.Module) else model
        path = directory / MODEL_FILE
        device = map_location if isinstance(map_location, str) else str(map_location)
        try:
            safetensors.torch.load_model(module, path, strict=strict, device=device)
        except RuntimeError as exc:
            raise CheckpointError(f"does not match the model: {exc}", path=path) from exc
        except Exception as exc:
            raise CheckpointError(f"cannot read safetensors: {exc}", path=path) from exc
    if optimizer is not None:
        opt_state = _load_component(directory, "optimizer", files, map_location)
        try:
            optimizer.load_state_dict(opt_state)
        except (ValueError, KeyError, RuntimeError) as exc:
            raise CheckpointError(f"does not match the optimizer: {exc}",
                                  path=directory / "optimizer.json") from exc
    if scheduler is not None:
        sched_state = _load_component(directory, "scheduler", files, map_location)
        try:
            scheduler.load_state_dict(sched_state)
        except (ValueError, KeyError, RuntimeError, AttributeError) as exc:
            raise CheckpointError(f"does not match the scheduler: {exc}",
                                  path=directory / "scheduler.json") from exc
    return Checkpoint(path=directory, manifest=manifest, config=config, state=state,
                      kgmm_version=version, files=sorted(files))
