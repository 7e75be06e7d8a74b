"""ConceptNet 5 assertions (``conceptnet-assertions-5.x.csv[.gz]``) as kgmm graph data.

Each line has five tab-separated columns: the assertion URI, the relation URI (``/r/IsA``),
the start and end node URIs (``/c/en/dog/n/wn/animal``) and a JSON object with ``weight``
(1.0 when absent) and optionally ``surfaceText``, ``dataset``, ``sources``.

Mapping:

* Nodes are cut to the concept level: ``/c/en/dog/n/wn/animal`` → entity ``cn:/c/en/dog``;
  the part-of-speech and sense parts are dropped, so all senses of a term share one entity.
  Label: the term with ``_`` → space; property ``language``: the language code.
* Relations: ``/r/IsA`` → ``IsA`` (label ``is a``), ``/r/dbpedia/genre`` → ``dbpedia_genre``
  (label ``dbpedia genre``). ConceptNet relations are directional and have no inverse,
  except the symmetric ones (:data:`SYMMETRIC_RELATIONS`), which are their own inverse.
* Kept: assertions whose both ends are concepts in ``languages`` (``None``: any language),
  whose relation is in ``relations`` (``None``: any) and whose weight is ≥ ``min_weight``.
  Assertions with a non-concept end (``ExternalURL`` links to web pages) are skipped, and so
  are assertions that become self-loops once senses are dropped. Triples carry no weight in
  the model, so weights only filter; duplicate edges (several senses, several datasets) are
  kept once.

The file is streamed: memory grows with the kept assertions only. Every line's column count
and URIs are checked; the JSON column is parsed only for lines that pass the language and
relation filters (that keeps a full 10 GB dump fast), so bad JSON on a filtered-out line goes
unnoticed.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from typing import NamedTuple

from ..errors import InputError
from ..model import RELATION_ID_PATTERN, Entity, GraphData, Relation, Triple
from .tsv import PathLike, iter_lines, words_from_name

#: Relations that read the same in both directions; each is its own inverse.
SYMMETRIC_RELATIONS = frozenset({
    "RelatedTo", "Synonym", "Antonym", "SimilarTo", "DistinctFrom",
    "EtymologicallyRelatedTo", "LocatedNear",
})

COLUMNS = ("assertion", "relation", "start", "end", "info")

_LANGUAGE = re.compile(r"^[a-z]{2,3}(?:[-_][A-Za-z0-9]+)*$")


class _Concept(NamedTuple):
    language: str
    term: str

    @property
    def id(self) -> str:
        return f"cn:/c/{self.language}/{self.term}"


def read_conceptnet(
    path: PathLike,
    languages: Iterable[str] | None = ("en",),
    relations: Iterable[str] | None = None,
    min_weight: float = 0.0,
) -> GraphData:
    """Read a ConceptNet assertions file (plain or gzipped) into a validated :class:`GraphData`.

    Args:
        path: the assertions CSV (tab-separated, five columns).
        languages: language codes both ends must have; ``None`` keeps every language.
        relations: relation ids (``IsA``) or URIs (``/r/IsA``) to keep; ``None`` keeps all.
        min_weight: assertions with a smaller weight are dropped.

    Entities and triples come in first-seen order.
    """
    allowed = None if languages is None else frozenset(languages)
    wanted = None if relations is None else {_wanted_relation(r) for r in relations}
    entities: dict[str, Entity] = {}
    found: dict[str, Relation] = {}
    triples: dict[Triple, None] = {}
    for number, text in iter_lines(path):
        if not text.strip():
            continue
        kept = _assertion(text, path, number, allowed, wanted, min_weight)
        if kept is None:
            continue
        relation, start, end = kept
        for concept in (start, end):
            if concept.id not in entities:
                entities[concept.id] = _entity(concept)
        if relation not in found:
            found[relation] = _relation(relation)
        triples[Triple(start.id, relation, end.id)] = None
    data = GraphData(list(entities.values()), list(found.values()), list(triples),
                     source=str(path))
    return data.validate()


def _assertion(
    text: str,
    path: PathLike,
    number: int,
    allowed: frozenset[str] | None,
    wanted: set[str] | None,
    min_weight: float,
) -> tuple[str, _Concept, _Concept] | None:
    """Check one line; return ``(relation id, start, end)`` if it passes the filters."""
    columns = text.split("\t")
    if len(columns) != len(COLUMNS):
        raise InputError(f"expected 5 tab-separated columns ({', '.join(COLUMNS)}), "
                         f"found {len(columns)}", source=path, line=number)
    _, relation_uri, start_uri, end_uri, info = columns
    relation = relation_id(relation_uri, path, number)
    start = _node(start_uri, path, number, "start")
    end = _node(end_uri, path, number, "end")
    if start is None or end is None or start == end:
        return None
    if wanted is not None and relation not in wanted:
        return None
    if allowed is not None and (start.language not in allowed or end.language not in allowed):
        return None
    if _weight(info, path, number) < min_weight:
        return None
    return relation, start, end


def relation_id(uri: str, path: PathLike | None = None, number: int | None = None) -> str:
    """``/r/IsA`` → ``IsA``; ``/r/dbpedia/genre`` → ``dbpedia_genre``; anything else is an error."""
    parts = uri.split("/")
    name = "_".join(parts[2:])
    if len(parts) < 3 or parts[:2] != ["", "r"] or not RELATION_ID_PATTERN.match(name):
        raise InputError(f"bad relation URI {uri!r} (expected /r/Name)", source=path, line=number,
                         field="relation")
    return name


def _wanted_relation(value: str) -> str:
    """Accept a relation filter given as id (``IsA``) or URI (``/r/IsA``)."""
    return relation_id(value) if value.startswith("/r/") else value


def _node(uri: str, path: PathLike, number: int, field: str) -> _Concept | None:
    """Parse a node URI to its concept; ``None`` for web URLs (``ExternalURL`` ends)."""
    if uri.startswith(("http://", "https://")):
        return None
    parts = uri.split("/")
    if (len(parts) < 4 or parts[:2] != ["", "c"] or not _LANGUAGE.match(parts[2])
            or not parts[3] or any(ch.isspace() for ch in uri)):
        raise InputError(f"bad concept URI {uri!r} (expected /c/<language>/<term>[/...])",
                         source=path, line=number, field=field)
    return _Concept(parts[2], parts[3])


def _weight(info: str, path: PathLike, number: int) -> float:
    """The ``weight`` of the JSON info column (1.0 when absent)."""
    try:
        data = json.loads(info)
    except json.JSONDecodeError as exc:
        raise InputError(f"invalid JSON: {exc.msg} at column {exc.colno}", source=path,
                         line=number, field="info") from exc
    if not isinstance(data, dict):
        raise InputError("the info column must be a JSON object", source=path, line=number,
                         field="info")
    weight = data.get("weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not math.isfinite(weight):
        raise InputError(f"weight must be a finite number, got {weight!r}", source=path,
                         line=number, field="info")
    return float(weight)


def _entity(concept: _Concept) -> Entity:
    """The entity of a concept: label from the term, language as a property."""
    label = concept.term.replace("_", " ").strip() or concept.term
    return Entity(concept.id, label, properties={"language": concept.language})


def _relation(name: str) -> Relation:
    """The relation of an id; symmetric relations are their own inverse."""
    inverse = name if name in SYMMETRIC_RELATIONS else None
    return Relation(name, words_from_name(name), inverse=inverse)
