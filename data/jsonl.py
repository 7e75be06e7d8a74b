"""JSON Lines: one JSON object per line, read lazily with line numbers for error messages."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from kgmm.graph.errors import InputError, SourceNotFoundError

from ._io import atomic_text, type_name


def read_jsonl(path: str | os.PathLike[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line number, object)`` for each non-blank line of ``path`` (1-based).

    Raises:
        SourceNotFoundError: ``path`` does not exist.
        InputError: a line is not valid JSON or not a JSON object (names file and line).
    """
    path = Path(path)
    try:
        fh = open(path, encoding="utf-8")  # noqa: SIM115 (closed by the with below)
    except FileNotFoundError as err:
        raise SourceNotFoundError(f"{path}: no such file") from err
    with fh:
        line_no = 0
        try:
            for line_no, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as err:
                    raise InputError(f"not valid JSON: {err.msg} (column {err.colno})",
                                     source=path, line=line_no) from err
                if not isinstance(obj, dict):
                    raise InputError(f"expected a JSON object, got {type_name(obj)}",
                                     source=path, line=line_no)
                yield line_no, obj
        except UnicodeDecodeError as err:
            raise InputError(f"not UTF-8 text: {err}", source=path, line=line_no + 1) from err


def write_jsonl(path: str | os.PathLike[str], objects: Iterable[Mapping[str, Any]]) -> Path:
    """Write one compact JSON object per line (UTF-8, ``\\n``), atomically; return the path."""
    path = Path(path)
    with atomic_text(path) as fh:
        for obj in objects:
            fh.write(json.dumps(obj, ensure_ascii=False))
            fh.write("\n")
    return path
