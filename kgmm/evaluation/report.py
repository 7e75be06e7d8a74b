"""Markdown building blocks for run reports (tables, numbers, the provenance block)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def cell(value: Any, digits: int = 2) -> str:
    """A table cell: ``—`` for None, fixed decimals for floats, ``|`` escaped."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def signed(value: float | None, digits: int = 2) -> str:
    """``+1.25`` / ``-0.50`` / ``—``."""
    return "—" if value is None else f"{value:+.{digits}f}"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *,
          align: Sequence[str] | None = None) -> str:
    """A GitHub-flavoured Markdown table; ``align`` per column: ``l``, ``r`` or ``c`` (default:
    first column left, the rest right)."""
    align = align or ["l", *["r"] * (len(headers) - 1)]
    marks = {"l": ":---", "r": "---:", "c": ":---:"}
    lines = ["| " + " | ".join(cell(h) for h in headers) + " |",
             "| " + " | ".join(marks[a] for a in align) + " |"]
    for row in rows:
        lines.append("| " + " | ".join(c if isinstance(c, str) else cell(c) for c in row) + " |")
    return "\n".join(lines)


def provenance(manifest: Mapping[str, Any]) -> str:
    """The "how this run was made" section: command, commit, device, versions, seeds."""
    git = manifest.get("git") or {}
    commit = git.get("commit")
    commit_text = "not in a git checkout" if not commit else (
        f"`{commit}`" + (" (uncommitted changes)" if git.get("dirty") else ""))
    device = manifest.get("device") or {}
    versions = manifest.get("versions") or {}
    sessions = manifest.get("sessions") or []
    lines = [
        f"- run id: `{manifest.get('run_id')}` — created {manifest.get('created')}, "
        f"{len(sessions)} session(s)",
        f"- command: `{' '.join(manifest.get('command') or [])}`",
        f"- git commit: {commit_text}",
        f"- device: {device.get('resolved', '?')}" + (f" — {device['note']}"
                                                      if device.get("note") else ""),
        f"- seeds: {', '.join(f'{k}={v}' for k, v in (manifest.get('seeds') or {}).items())}",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in versions.items() if v),
    ]
    return "\n".join(lines)
