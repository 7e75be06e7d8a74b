"""Shared plumbing of the readers and writers: JSON in and out, field checks, image lookup."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from kgmm.graph.errors import InputError, SourceNotFoundError

log = logging.getLogger("kgmm.data")

#: Split shorthands of the COCO-based sets and the data subtype their files are named by.
_SUBTYPES = {"train": "train2014", "val": "val2014", "test": "test2015", "test-dev": "test-dev2015"}


def data_subtype(split: str) -> str:
    """``"train"`` → ``"train2014"``, ``"val"`` → ``"val2014"``, ``"test"`` → ``"test2015"``,
    ``"test-dev"`` → ``"test-dev2015"``; any other name (``"val2017"``) is used as it is."""
    return _SUBTYPES.get(split, split)


def image_subtype(subtype: str) -> str:
    """The image folder of a data subtype: test-dev2015 questions are about test2015 images."""
    return "test2015" if subtype == "test-dev2015" else subtype


def find_file(names: Sequence[str], dirs: Sequence[Path]) -> Path | None:
    """The first ``dir/name`` that is a file, trying every name in every dir in order."""
    for directory in dirs:
        for name in names:
            path = directory / name
            if path.is_file():
                return path
    return None


def read_json(path: Path) -> Any:
    """Parse a JSON file; a missing file is a :class:`SourceNotFoundError`, bad JSON an
    :class:`InputError` with the line of the problem."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError as err:
        raise SourceNotFoundError(f"{path}: no such file") from err
    except json.JSONDecodeError as err:
        raise InputError(f"not valid JSON: {err.msg}", source=path, line=err.lineno) from err
    except UnicodeDecodeError as err:
        raise InputError(f"not UTF-8 text: {err}", source=path) from err


def write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as UTF-8 JSON atomically (temporary file, then rename); return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _atomic(path) as fh:
        fh.write(json.dumps(obj, ensure_ascii=False))  # json.dump uses the slow pure-Python encoder
    return path


class _atomic:
    """Open a temporary file next to ``path`` for text writing; rename it over ``path`` on
    success, remove it on failure."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> Any:
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        self.tmp = Path(tmp)
        self.fh = os.fdopen(fd, "w", encoding="utf-8", newline="\n")
        return self.fh

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.fh.close()
        if exc_type is None:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)


def atomic_text(path: Path) -> _atomic:
    """Context manager: a text file handle whose content replaces ``path`` on success."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return _atomic(path)


def type_name(value: object) -> str:
    """The JSON name of a Python value's type, for error messages."""
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    for t, name in names.items():
        if isinstance(value, t):
            return name
    return "number" if isinstance(value, int | float) else type(value).__name__


def is_id(value: object) -> bool:
    """An id is an int or a non-empty string (booleans are not ids)."""
    return (isinstance(value, int) and not isinstance(value, bool)) or (
        isinstance(value, str) and value != ""
    )


class Checker:
    """Field checks for one entry of a source file; every failure is an :class:`InputError`
    naming the file, the entry and the field."""

    def __init__(
        self,
        source: Path,
        entry: Mapping[str, Any],
        record: str | int | None,
        line: int | None = None,
    ) -> None:
        self.source = source
        self.entry = entry
        self.record = record
        self.line = line

    def error(self, message: str, field: str | None = None) -> InputError:
        return InputError(
            message, source=self.source, line=self.line, record=self.record, field=field
        )

    def _get(self, key: str, required: bool) -> Any:
        if key not in self.entry:
            if required:
                raise self.error("missing required field", key)
            return None
        return self.entry[key]

    def ident(self, key: str, *, required: bool = True) -> int | str | None:
        value = self._get(key, required)
        if value is None and not required:
            return None
        if not is_id(value):
            raise self.error(f"expected an integer or a non-empty string, got {value!r}", key)
        return value

    def text(self, key: str, *, required: bool = True) -> str | None:
        value = self._get(key, required)
        if value is None and not required:
            return None
        if not isinstance(value, str):
            raise self.error(f"expected a string, got {type_name(value)}", key)
        return value

    def array(self, key: str, *, required: bool = True) -> list[Any] | None:
        value = self._get(key, required)
        if value is None and not required:
            return None
        if not isinstance(value, list):
            raise self.error(f"expected an array, got {type_name(value)}", key)
        return value

    def texts(self, key: str, *, required: bool = True) -> list[str] | None:
        value = self.array(key, required=required)
        if value is None:
            return None
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise self.error(f"item {i}: expected a string, got {type_name(item)}", key)
        return value


def top_level(data: Any, source: Path, *keys: str) -> list[list[Any]]:
    """Check that a JSON document is an object whose ``keys`` are arrays; return the arrays."""
    if not isinstance(data, dict):
        raise InputError(f"expected a JSON object at the top level, got {type_name(data)}",
                         source=source)
    out = []
    for key in keys:
        if key not in data:
            raise InputError("missing required top-level field", source=source, field=key)
        if not isinstance(data[key], list):
            raise InputError(f"expected an array, got {type_name(data[key])}", source=source,
                             field=key)
        out.append(data[key])
    return out


def entry_object(entry: Any, source: Path, record: str | int, line: int | None = None) -> dict:
    """Check that one array item is a JSON object."""
    if not isinstance(entry, dict):
        raise InputError(f"expected an object, got {type_name(entry)}", source=source,
                         line=line, record=record)
    return entry


class ImageFinder:
    """Look image files up in an ordered list of folders, remembering the ones not found.

    Folders that do not exist are skipped without a look per file. A file not found anywhere
    is recorded under the first existing candidate folder (the first candidate when none
    exists) in :attr:`missing`, a list that finders may share.
    """

    def __init__(self, dirs: Iterable[Path], missing: list[Path] | None = None) -> None:
        self.dirs = list(dict.fromkeys(dirs))
        self.existing = [d for d in self.dirs if d.is_dir()]
        self.missing: list[Path] = [] if missing is None else missing
        self._cache: dict[str, Path | None] = {}

    def find(self, relative: str) -> Path | None:
        """The path of ``relative`` under the first folder holding it, or ``None``."""
        if relative in self._cache:
            return self._cache[relative]
        found = None
        for directory in self.existing:
            candidate = directory / relative
            if candidate.is_file():
                found = candidate
                break
        if found is None:
            base = self.existing[0] if self.existing else self.dirs[0]
            self.missing.append(base / relative)
        self._cache[relative] = found
        return found

    def warn(self, what: str) -> None:
        if self.missing:
            log.warning("%s: %d referenced image(s) not found, e.g. %s",
                        what, len(self.missing), self.missing[0])


def safe_relative(name: str) -> bool:
    """A file name from a data file must stay inside its folder: relative, without ``..``."""
    path = Path(name)
    return bool(name) and not path.is_absolute() and ".." not in path.parts
