"""A run folder: the manifest, resumable JSONL predictions and atomic result files of one run.

Layout (every evaluator writes the same skeleton and adds its own files)::

    <out>/run.json           manifest: kind, identity, config, command, seeds, device, git
                             commit, package versions, model fingerprints, data paths,
                             sessions (one per start or resume), status
    <out>/predictions.jsonl  one JSON object per line, appended per batch (flush + fsync)
    <out>/metrics.json       written atomically at the end
    <out>/report.md          Markdown report linking the plots
    <out>/plots/*.png        matplotlib figures

A run is identified by ``identity`` (what was evaluated on what: models' fingerprints, data,
splits). Opening an existing folder with the same identity resumes it; another identity is a
:class:`RunConflictError` unless ``overwrite=True``. Settings that do not change the answers
(batch size, limit, progress) belong in ``config`` and may differ between sessions.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kgmm.graph.errors import InputError, KGMMError

MANIFEST = "run.json"
PREDICTIONS = "predictions.jsonl"
METRICS = "metrics.json"
REPORT = "report.md"
PLOTS = "plots"

#: Packages whose versions every run records (absent ones are recorded as ``None``).
DEFAULT_PACKAGES = ("kgmm", "torch", "torch_geometric", "transformers", "numpy", "safetensors",
                    "matplotlib", "pillow")


class RunConflictError(KGMMError):
    """The output folder holds another run (other models, data or splits), or is not a run."""


def now() -> str:
    """UTC time stamp, ISO 8601 with seconds."""
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


# -- provenance ----------------------------------------------------------------------------
def git_commit(path: str | os.PathLike[str] | None = None) -> dict[str, Any] | None:
    """``{"commit", "dirty"}`` of the git checkout holding ``path`` (default: kgmm's source),
    or ``None`` when it is not in a checkout or git is absent. Never writes to the repository."""
    where = Path(path) if path is not None else Path(__file__).resolve().parent
    if where.is_file():
        where = where.parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True,
                              text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "--no-optional-locks", "status", "--porcelain", "--untracked-files=no"],
            cwd=where, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": head.stdout.strip(),
            "dirty": bool(dirty.stdout.strip()) if dirty.returncode == 0 else None}


def package_versions(packages: Iterable[str] = DEFAULT_PACKAGES) -> dict[str, str | None]:
    """Installed distribution versions (read from metadata; nothing is imported)."""
    from importlib import metadata

    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in packages:
        try:
            out[name] = metadata.version(name.replace("_", "-"))
        except metadata.PackageNotFoundError:
            try:
                out[name] = metadata.version(name)
            except metadata.PackageNotFoundError:
                out[name] = None
    return out


def machine_info() -> dict[str, Any]:
    """Platform, CPU count and, when torch is already loaded, its threads and CUDA device."""
    info: dict[str, Any] = {"platform": platform.platform(), "cpu_count": os.cpu_count()}
    torch = sys.modules.get("torch")
    if torch is not None:
        info["torch_threads"] = torch.get_num_threads()
        info["cuda_available"] = bool(torch.cuda.is_available())
        if info["cuda_available"]:
            info["cuda_device"] = torch.cuda.get_device_name(0)
    return info


def fingerprint(path: str | os.PathLike[str], *, skip: Iterable[str] = ("kg",)) -> str:
    """SHA-256 over the relative names and bytes of every file under ``path`` (a file or a
    folder), except top-level folders in ``skip`` (a model's ``kg/`` is named by the content
    hash in its manifest)."""
    root = Path(path)
    digest = hashlib.sha256()
    skipped = set(skip)
    files = [root] if root.is_file() else sorted(
        p for p in root.rglob("*") if p.is_file() and p.relative_to(root).parts[0] not in skipped)
    for file in files:
        digest.update(str(file.relative_to(root) if file != root else file.name).encode())
        digest.update(b"\0")
        with file.open("rb") as handle:
            for block in iter(lambda h=handle: h.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


# -- files ---------------------------------------------------------------------------------
def write_atomic(path: str | os.PathLike[str], text: str | bytes) -> Path:
    """Write ``text`` to a temporary file beside ``path``, fsync, then rename over ``path``."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode("utf-8") if isinstance(text, str) else text
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return target


def write_json(path: str | os.PathLike[str], data: Any) -> Path:
    """Atomic, indented, UTF-8 JSON (non-JSON values through ``str``)."""
    return write_atomic(path, json.dumps(data, indent=1, ensure_ascii=False, default=str) + "\n")


class PredictionLog:
    """An append-only JSONL file that survives a crash at any point.

    Each :meth:`append` writes whole lines, flushes and fsyncs. :meth:`read` returns the
    complete lines; a last line cut short by a crash is dropped, and :meth:`repair` cuts it
    from the file so that later appends start on a fresh line.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def repair(self) -> int:
        """Truncate a partial last line (no trailing newline, or not JSON); return the bytes
        removed."""
        if not self.path.exists():
            return 0
        data = self.path.read_bytes()
        keep = len(data)
        if data and not data.endswith(b"\n"):
            keep = data.rfind(b"\n") + 1
        else:
            # a complete-looking last line that is not JSON (torn write): drop it too
            start = data.rfind(b"\n", 0, max(keep - 1, 0)) + 1
            last = data[start:keep].strip()
            if last and not _is_json(last):
                keep = start
        if keep < len(data):
            with self.path.open("r+b") as handle:
                handle.truncate(keep)
                handle.flush()
                os.fsync(handle.fileno())
        return len(data) - keep

    def read(self) -> list[dict[str, Any]]:
        """Every complete row, in file order.

        Raises:
            InputError: a malformed line other than the last one (the file was edited).
        """
        if not self.path.exists():
            return []
        lines = self.path.read_bytes().split(b"\n")
        rows = []
        last = len(lines) - 1
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                if number >= last:  # the torn tail of a crashed append
                    break
                raise InputError(f"not a JSON line ({exc.msg})", source=self.path,
                                 line=number) from None
            if not isinstance(row, dict):
                raise InputError("expected a JSON object", source=self.path, line=number)
            rows.append(row)
        return rows

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.read())

    def done_keys(self, key: Callable[[dict[str, Any]], Any]) -> set[Any]:
        """``{key(row)}`` over the complete rows (what a resumed run skips)."""
        return {key(row) for row in self.read()}

    def append(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Append rows as JSON lines, then flush and fsync; return how many were written."""
        text = "".join(json.dumps(row, ensure_ascii=False, default=str) + "\n" for row in rows)
        if not text:
            return 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        return text.count("\n")


def _is_json(line: bytes) -> bool:
    try:
        json.loads(line)
    except json.JSONDecodeError:
        return False
    return True


# -- the run folder ------------------------------------------------------------------------
@dataclass
class RunFolder:
    """An open run folder (see the module docstring). Create one with :meth:`open`."""

    path: Path
    manifest: dict[str, Any]
    resumed: bool = False
    session: dict[str, Any] = field(default_factory=dict)

    @property
    def predictions(self) -> PredictionLog:
        return PredictionLog(self.path / PREDICTIONS)

    @property
    def plots_dir(self) -> Path:
        return self.path / PLOTS

    @property
    def run_id(self) -> str:
        return str(self.manifest["run_id"])

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        kind: str,
        identity: Mapping[str, Any],
        config: Mapping[str, Any] | None = None,
        seeds: Mapping[str, Any] | None = None,
        device: Mapping[str, Any] | None = None,
        models: Mapping[str, Any] | None = None,
        data: Mapping[str, Any] | None = None,
        packages: Iterable[str] = DEFAULT_PACKAGES,
        overwrite: bool = False,
        command: list[str] | None = None,
    ) -> RunFolder:
        """Create ``path`` as a new run, or resume the run already there.

        Args:
            kind: the evaluator (``"vqa"``, ``"retrieval"``); part of the identity.
            identity: JSON values that define the run; a folder holding another identity is
                refused. Put model fingerprints, data paths and splits here.
            config, seeds, device, models, data: recorded in the manifest (this session's
                values replace the previous ones; each session is also logged).
            overwrite: delete an existing run folder first (never a folder that is not one).
            command: the command line to record (default ``sys.argv``).

        Raises:
            RunConflictError: ``path`` holds another run, or is a non-empty folder that is not
                a run folder.
        """
        root = Path(path)
        ident = _identity(kind, identity)
        previous = cls.check(root, kind=kind, identity=identity, overwrite=overwrite)
        if previous is None and root.is_dir() and overwrite and (root / MANIFEST).is_file():
            shutil.rmtree(root)
        root.mkdir(parents=True, exist_ok=True)
        session = {"started": now(), "command": list(command if command is not None else sys.argv),
                   "config": dict(config or {}), "device": dict(device or {})}
        stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        manifest: dict[str, Any] = previous or {
            "format_version": 1, "kind": kind, "run_id": f"{kind}-{root.resolve().name}-{stamp}",
            "created": now(), "identity": ident, "sessions": []}
        manifest.update(
            status="running", command=session["command"], config=dict(config or {}),
            seeds=dict(seeds or {}), device=dict(device or {}), models=dict(models or {}),
            data=dict(data or {}), git=git_commit(), versions=package_versions(packages),
            machine=machine_info(), updated=now())
        manifest["sessions"] = [*manifest.get("sessions", []), session]
        run = cls(root, manifest, resumed=previous is not None, session=session)
        removed = run.predictions.repair()
        if removed:
            session["repaired_bytes"] = removed
        run.save()
        return run

    @staticmethod
    def check(path: str | os.PathLike[str], *, kind: str, identity: Mapping[str, Any],
              overwrite: bool = False) -> dict[str, Any] | None:
        """Whether :meth:`open` would accept ``path``, without writing anything: the manifest
        of the run it would resume, or None for a new run (call it before slow loading).

        Raises:
            RunConflictError: as :meth:`open`.
        """
        root = Path(path)
        manifest_path = root / MANIFEST
        if root.exists() and not root.is_dir():
            raise RunConflictError(f"{root} is a file, not a run folder; choose another --out")
        if not root.is_dir() or not any(root.iterdir()):
            return None
        if not manifest_path.is_file():
            raise RunConflictError(
                f"{root} is not empty and holds no {MANIFEST}: not a kgmm run folder; "
                "choose a new --out (it is never deleted, even with --overwrite)")
        if overwrite:
            return None
        try:
            previous: dict[str, Any] = json.loads(manifest_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise RunConflictError(f"{manifest_path}: corrupt manifest ({exc}); use a new "
                                   "--out or pass --overwrite") from None
        ident = _identity(kind, identity)
        if previous.get("identity") != ident:
            difference = describe_difference(previous.get("identity"), ident)
            raise RunConflictError(f"{root} holds another run ({difference}); use a new "
                                   "--out, or --overwrite to replace it")
        return previous

    def save(self) -> None:
        """Write ``run.json`` atomically."""
        self.manifest["updated"] = now()
        write_json(self.path / MANIFEST, self.manifest)

    def note(self, **values: Any) -> None:
        """Record values on this session's entry of the manifest, and save."""
        self.session.update(values)
        self.save()

    def finish(self, **summary: Any) -> None:
        """Mark the run complete, close this session, store ``summary`` in the manifest."""
        self.session["finished"] = now()
        self.manifest["status"] = "complete"
        self.manifest.setdefault("summary", {}).update(summary)
        self.save()

    def write_json(self, name: str, data: Any) -> Path:
        return write_json(self.path / name, data)

    def write_text(self, name: str, text: str) -> Path:
        return write_atomic(self.path / name, text)


def _identity(kind: str, identity: Mapping[str, Any]) -> dict[str, Any]:
    """The identity as it is stored: JSON values, with the kind."""
    return json.loads(json.dumps({"kind": kind, **identity}, default=str))


def describe_difference(old: Any, new: Any) -> str:
    """A short human description of how two identities differ."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return "unreadable identity"
    keys = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    parts = []
    for key in keys[:3]:
        parts.append(f"{key}: {_short(old.get(key))} here, {_short(new.get(key))} requested")
    return "; ".join(parts) or "same identity"


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 80 else text[:77] + "..."
