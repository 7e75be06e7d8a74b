"""Plain TSV triples (``subject<TAB>relation<TAB>object``) with optional entity metadata.

Triples file: one triple per line; blank lines and lines starting with ``#`` are skipped; an
optional first record ``subject relation object`` is a header. Fields are stripped of
surrounding spaces. Relation ids must match :data:`~kgmm.graph.model.RELATION_ID_PATTERN`;
their labels are the id split into words (``madeOf`` → ``made of``). Entity labels default to
the local part of the id (after the last ``#`` or ``/``, else after the first ``:``), with
``_`` read as a space (``ex:hot_dog`` → ``hot dog``).

Entities file (optional): ``id<TAB>label<TAB>aliases<TAB>description<TAB>types`` with aliases
and types ``|``-separated; trailing columns may be left out, an empty label falls back to the
id's local part, and an optional header ``id label aliases description types`` is skipped.

Both files may be gzip-compressed (detected by content). This module also holds the small
line-reading and naming helpers that the other text sources share.
"""

from __future__ import annotations

import gzip
import os
import re
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote

from ..errors import InputError, SourceNotFoundError
from ..model import RELATION_ID_PATTERN, Entity, GraphData, Relation, Triple

PathLike = str | os.PathLike[str]

TRIPLE_COLUMNS = ("subject", "relation", "object")
ENTITY_COLUMNS = ("id", "label", "aliases", "description", "types")

_WORD_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_GZIP_MAGIC = b"\x1f\x8b"


# --- shared helpers -------------------------------------------------------------------------


def open_binary(path: PathLike) -> BinaryIO:
    """Open a file for binary reading, transparently un-gzipping it when it is compressed.

    Raises :class:`SourceNotFoundError` when the file does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise SourceNotFoundError(f"{path}: no such file")
    with path.open("rb") as probe:
        compressed = probe.read(2) == _GZIP_MAGIC
    return gzip.open(path, "rb") if compressed else path.open("rb")  # type: ignore[return-value]


def iter_lines(path: PathLike) -> Iterator[tuple[int, str]]:
    """Yield ``(line number, text)`` for each line of a UTF-8 (optionally gzipped) file.

    Line ends are removed; a leading byte-order mark is dropped. Undecodable bytes or a
    corrupt compressed stream raise :class:`InputError` naming the line.
    """
    number = 0
    with open_binary(path) as handle:
        while True:
            try:
                raw = handle.readline()
            except (OSError, EOFError, zlib.error) as exc:
                raise InputError(f"cannot read compressed data: {exc}", source=path,
                                 line=number + 1) from exc
            if not raw:
                return
            number += 1
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(f"not valid UTF-8 (byte {exc.start} of the line)", source=path,
                                 line=number) from exc
            if number == 1:
                text = text.removeprefix("\ufeff")
            yield number, text.rstrip("\r\n")


def words_from_name(name: str) -> str:
    """Split an identifier into lower-case words: ``subClassOf`` → ``sub class of``.

    Underscores, hyphens and camel-case humps separate words; acronyms keep their case
    (``ExternalURL`` → ``external URL``).
    """
    words: list[str] = []
    for chunk in re.split(r"[_\-\s]+", name):
        for word in _WORD_BOUNDARY.split(chunk):
            if word:
                words.append(word if len(word) > 1 and word.isupper() else word.lower())
    return " ".join(words) or name


def local_part(identifier: str) -> str:
    """The local part of an id or IRI: after the last ``#`` or ``/``, else after the first ``:``."""
    text = identifier.rstrip("/#") or identifier
    if "#" in text or "/" in text:
        return re.split(r"[#/]", text)[-1]
    return text.split(":", 1)[1] if ":" in text else text


def label_from_id(identifier: str) -> str:
    """A readable label derived from an id: its percent-decoded local part, ``_`` → space."""
    label = unquote(local_part(identifier)).replace("_", " ").strip()
    return label or identifier


# --- reader ---------------------------------------------------------------------------------


def read_tsv(path: PathLike, entities_path: PathLike | None = None) -> GraphData:
    """Read TSV triples (and optional entity metadata) into a validated :class:`GraphData`.

    Entities are listed in the order of the entities file, then in first-seen order of the
    triples; duplicate triples are kept once.
    """
    entities: dict[str, Entity] = {}
    if entities_path is not None:
        entities.update(_read_entities(entities_path))
    relations: dict[str, Relation] = {}
    triples: dict[Triple, None] = {}
    for number, fields in _records(path, TRIPLE_COLUMNS):
        triple = _triple(fields, path, number)
        for entity_id in (triple.subject, triple.object):
            if entity_id not in entities:
                entities[entity_id] = Entity(entity_id, label_from_id(entity_id))
        if triple.relation not in relations:
            relations[triple.relation] = Relation(triple.relation, words_from_name(triple.relation))
        triples[triple] = None
    data = GraphData(list(entities.values()), list(relations.values()), list(triples),
                     source=str(path))
    return data.validate()


def _records(path: PathLike, header: tuple[str, ...]) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(line number, stripped fields)`` of data lines, skipping comments and a header."""
    first = True
    for number, text in iter_lines(path):
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        fields = [field.strip() for field in text.split("\t")]
        if first and _is_header(fields, header):
            first = False
            continue
        first = False
        yield number, fields


def _is_header(fields: list[str], header: tuple[str, ...]) -> bool:
    """Whether a first record names the columns (at least the first two)."""
    names = tuple(field.lower() for field in fields)
    return len(names) >= 2 and names == header[: len(names)]


def _triple(fields: list[str], path: PathLike, number: int) -> Triple:
    """Check one triples record and build its :class:`Triple`."""
    if len(fields) != len(TRIPLE_COLUMNS):
        raise InputError(f"expected 3 tab-separated fields (subject, relation, object), "
                         f"found {len(fields)}", source=path, line=number)
    for name, value in zip(TRIPLE_COLUMNS, fields, strict=True):
        if not value:
            raise InputError(f"empty {name}", source=path, line=number, field=name)
    subject, relation, obj = fields
    if not RELATION_ID_PATTERN.match(relation):
        raise InputError(f"relation id {relation!r} must match {RELATION_ID_PATTERN.pattern}",
                         source=path, line=number, field="relation")
    return Triple(subject, relation, obj)


def _read_entities(path: PathLike) -> dict[str, Entity]:
    """Read the entities file into ``{id: Entity}``; an id listed twice is an error."""
    entities: dict[str, Entity] = {}
    lines: dict[str, int] = {}
    for number, fields in _records(path, ENTITY_COLUMNS):
        if len(fields) > len(ENTITY_COLUMNS):
            raise InputError(f"expected at most 5 tab-separated fields "
                             f"({', '.join(ENTITY_COLUMNS)}), found {len(fields)}",
                             source=path, line=number)
        entity = _entity(fields, path, number)
        if entity.id in entities:
            raise InputError(f"entity {entity.id!r} is listed twice (first on line "
                             f"{lines[entity.id]})", source=path, line=number, field="id")
        entities[entity.id] = entity
        lines[entity.id] = number
    return entities


def _entity(fields: list[str], path: PathLike, number: int) -> Entity:
    """Build an :class:`Entity` from up to five entities-file fields."""
    entity_id, label, aliases, description, types = (fields + [""] * 5)[:5]
    if not entity_id:
        raise InputError("empty id", source=path, line=number, field="id")
    label = label or label_from_id(entity_id)
    alias_list = [a for a in dict.fromkeys(_split_bar(aliases)) if a != label]
    return Entity(entity_id, label, aliases=tuple(alias_list), description=description,
                  types=tuple(dict.fromkeys(_split_bar(types))))


def _split_bar(value: str) -> list[str]:
    """Split a ``|``-separated field into stripped, non-empty parts."""
    return [part.strip() for part in value.split("|") if part.strip()]
