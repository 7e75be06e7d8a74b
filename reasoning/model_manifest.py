"""Reading the JSON manifest of a saved model directory (VQA model, retriever)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_checked_manifest(path: Path, *, file_name: str, format_version: int, kind: str,
                          error: type[Exception], not_found: str,
                          version_hint: str = "") -> dict[str, Any]:
    """The manifest ``path/file_name``, checked: the directory exists (else ``not_found``), the
    manifest is there and parses, its ``format_version`` is ``format_version`` and every entry
    of its ``parts`` exists. Every problem raises ``error`` naming the path; ``kind`` ("model",
    "retriever") and ``version_hint`` complete the messages."""
    file = path / file_name
    if not path.exists():
        raise error(not_found)
    if not file.is_file():
        raise error(f"{path} is not a kgmm {kind} directory (no {file_name})")
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise error(f"{file}: corrupt manifest ({exc})") from None
    version = manifest.get("format_version")
    if version != format_version:
        raise error(f"{file}: {kind} format {version!r}; this kgmm reads format "
                    f"{format_version}{version_hint}")
    for part in manifest.get("parts", []):
        if not (path / part).exists():
            raise error(f"{path}: the {kind} is incomplete, {part} is missing")
    return manifest
