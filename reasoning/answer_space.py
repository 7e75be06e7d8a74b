"""Declared answers: entries (entity ids or names) and files of them, resolved against a KG.

A model trained with the answer-space columns (:mod:`.scene_graph`) reads its answer space as
node features, so labels can join it after training — the categories of a benchmark's
manifest, a user's own label list. An entry is an entity id or a name; a name resolves to the
KG's first sense of it (the lexicon's ranking) and becomes that entity's answer text.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kgmm.graph.errors import InputError

__all__ = ["DeclaredAnswer", "read_declared_answers", "resolve_declared"]


@dataclass(frozen=True)
class DeclaredAnswer:
    """One resolved entry: the KG index, its entity id, and the name it was declared by
    (None when declared by id)."""

    index: int
    entity_id: str
    name: str | None


def resolve_declared(kg: Any, entries: Iterable[str], *, source: str | Path | None = None,
                     lines: Iterable[int] | None = None) -> list[DeclaredAnswer]:
    """Resolve every entry, or raise :class:`InputError` naming the first one the KG does not
    hold (``source`` and ``lines`` place it in a file)."""
    out = []
    line_numbers = iter(lines) if lines is not None else None
    for entry in entries:
        line = next(line_numbers) if line_numbers is not None else None
        text = entry.strip()
        index = kg.find_index(text)
        if index is not None:
            out.append(DeclaredAnswer(index, text, None))
            continue
        senses = kg.lookup(text, limit=1) if text else []
        if not senses:
            raise InputError(f"answer {text!r}: no entity with this id or name in the KG",
                             source=source, line=line)
        out.append(DeclaredAnswer(senses[0], kg.id_of(senses[0]), text.lower()))
    return out


def read_declared_answers(path: Path, kg: Any) -> list[DeclaredAnswer]:
    """Declared answers from a file: a benchmark ``manifest.json`` (the ``synset_id`` of its
    ``categories``), a JSON list of entries, or text with one entry per line (blank lines and
    ``#`` comments skipped)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the declared answers ({exc})", source=path) from None
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"not JSON ({exc.msg})", source=path, line=exc.lineno) from None
        if isinstance(data, dict):
            return resolve_declared(kg, _manifest_entries(data, path), source=path)
        if not isinstance(data, list) or not all(isinstance(e, str) for e in data):
            raise InputError("expected a list of entity ids or names", source=path)
        return resolve_declared(kg, data, source=path)
    rows = [(n, line.strip()) for n, line in enumerate(text.splitlines(), start=1)
            if line.strip() and not line.lstrip().startswith("#")]
    return resolve_declared(kg, [e for _, e in rows], source=path, lines=[n for n, _ in rows])


def _manifest_entries(manifest: dict[str, Any], path: Path) -> list[str]:
    categories = manifest.get("categories")
    if not isinstance(categories, list):
        raise InputError("a JSON object needs a \"categories\" list (a benchmark manifest)",
                         source=path, field="categories")
    entries = []
    for k, item in enumerate(categories):
        entry = item.get("synset_id") if isinstance(item, dict) else None
        if not isinstance(entry, str):
            raise InputError("each category needs a \"synset_id\" string", source=path,
                             record=k, field="synset_id")
        entries.append(entry)
    return entries
