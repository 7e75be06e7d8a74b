"""Inspection records: answered questions written into the store, and named Cypher queries.

One :class:`QuestionRecord` becomes this graph (the same on Neo4j and on the embedded store)::

    (:Question {id, text, image, model, answer, answer_entity, answer_score, correct, accuracy,
                run})
    (:Question)-[:MENTIONS {score, span}]->(:Entity)       linked from the question text
    (:Question)-[:SHOWS {score}]->(:Entity)                linked from the image
    (:Question)-[:LINKED {score, sources}]->(:Entity)      one per linked entity (max score,
                                                           sources ⊆ ["image", "question"])
    (:Question)-[:ANSWERED {score, model}]->(:Entity)      when the answer is an entity
    (:Question)-[:EVIDENCE {src, relation, dst, score}]->(:Entity {id: dst})
                                                           one per evidence edge src-[relation]->dst

Properties that are None (``correct``, ``accuracy``, ``run``, ``answer_entity``, ``span``) are
left out, as Neo4j does. ``accuracy`` defaults to 1.0/0.0 from ``correct``. The question id
is the key: writing a question again replaces its node and all its edges.

:data:`NAMED_QUERIES` are documented queries (docs/inspection.md) written in the Cypher subset
both backends run with the same rows: no ``WITH``/``OPTIONAL MATCH``, no aliases together with
``DISTINCT``, one variable per node in a pattern.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .errors import InputError, StoreError

QUESTION_LABEL = "Question"
#: Relationship types the records use; a KG relation with one of these ids would be ambiguous.
RECORD_EDGE_TYPES = ("MENTIONS", "SHOWS", "LINKED", "ANSWERED", "EVIDENCE")

Mention = tuple[str, float, str | None]
Shown = tuple[str, float]
EvidenceEdge = tuple[str, str, str, float]


@dataclass(frozen=True)
class QuestionRecord:
    """What the model did with one question, ready to be written into a store.

    ``mentions``: ``(entity_id, score, span)`` linked from the question text; ``shows``:
    ``(entity_id, score)`` linked from the image; ``evidence_edges``: ``(src_id, relation,
    dst_id, score)``. ``correct`` is None when unknown; ``accuracy`` (e.g. VQA soft accuracy
    in [0, 1]) defaults to 1.0/0.0 from ``correct``. ``run`` tags the records of one run.
    """

    question_id: str
    text: str
    image: str
    model: str
    answer_text: str
    answer_entity_id: str | None
    answer_score: float
    correct: bool | None = None
    mentions: Sequence[Mention] = field(default_factory=list)
    shows: Sequence[Shown] = field(default_factory=list)
    evidence_edges: Sequence[EvidenceEdge] = field(default_factory=list)
    run: str | None = None
    accuracy: float | None = None

    # -- validation --------------------------------------------------------------------
    def validated(self, position: int | None = None) -> QuestionRecord:
        """A checked, normalised copy (lists of tuples, floats); raises :class:`InputError`
        naming the record (its question id, else its position) and the field."""
        qid = self.question_id
        name: str | int = qid if isinstance(qid, str) and qid else (
            position if position is not None else repr(qid))

        def fail(field_name: str, message: str) -> InputError:
            return InputError(message, source="question records", record=name, field=field_name)

        if not isinstance(qid, str) or not qid.strip():
            raise fail("question_id", f"must be a non-empty string, got {qid!r}")
        for key in ("text", "image", "model", "answer_text"):
            if not isinstance(getattr(self, key), str):
                raise fail(key, f"must be a string, got {type(getattr(self, key)).__name__}")
        answer_entity = self.answer_entity_id
        if answer_entity is not None and not _is_id(answer_entity):
            raise fail("answer_entity_id", f"must be an entity id or None, got {answer_entity!r}")
        if self.correct is not None and not isinstance(self.correct, bool):
            raise fail("correct", f"must be true, false or None, got {self.correct!r}")
        accuracy = None
        if self.accuracy is not None:
            accuracy = _score(self.accuracy, lambda m: fail("accuracy", m))
            if not 0.0 <= accuracy <= 1.0:
                raise fail("accuracy", f"must lie in [0, 1], got {accuracy!r}")
        if self.run is not None and (not isinstance(self.run, str) or not self.run.strip()):
            raise fail("run", f"must be a non-empty string or None, got {self.run!r}")

        mentions: list[Mention] = []
        for i, item in enumerate(_items(self.mentions, 3, lambda m: fail("mentions", m))):
            where = f"mentions[{i}]"
            entity, score, span = item
            if not _is_id(entity):
                raise fail(where, f"entity id must be a non-empty string, got {entity!r}")
            if span is not None and not isinstance(span, str):
                raise fail(where, f"span must be a string or None, got {span!r}")
            mentions.append((entity, _score(score, lambda m, w=where: fail(w, m)), span))
        _no_duplicates([(m[0], m[2]) for m in mentions], "mentions", fail)
        shows: list[Shown] = []
        for i, item in enumerate(_items(self.shows, 2, lambda m: fail("shows", m))):
            where = f"shows[{i}]"
            entity, score = item
            if not _is_id(entity):
                raise fail(where, f"entity id must be a non-empty string, got {entity!r}")
            shows.append((entity, _score(score, lambda m, w=where: fail(w, m))))
        _no_duplicates([s[0] for s in shows], "shows", fail)
        evidence: list[EvidenceEdge] = []
        for i, item in enumerate(_items(self.evidence_edges, 4,
                                        lambda m: fail("evidence_edges", m))):
            where = f"evidence_edges[{i}]"
            src, relation, dst, score = item
            for label, value in (("source", src), ("target", dst)):
                if not _is_id(value):
                    raise fail(where, f"{label} entity id must be a non-empty string, "
                                      f"got {value!r}")
            if not isinstance(relation, str) or not relation:
                raise fail(where, f"relation must be a non-empty string, got {relation!r}")
            evidence.append((src, relation, dst, _score(score, lambda m, w=where: fail(w, m))))
        _no_duplicates([e[:3] for e in evidence], "evidence_edges", fail)
        return QuestionRecord(
            question_id=qid, text=self.text, image=self.image, model=self.model,
            answer_text=self.answer_text, answer_entity_id=answer_entity,
            answer_score=_score(self.answer_score, lambda m: fail("answer_score", m)),
            correct=self.correct, mentions=mentions, shows=shows, evidence_edges=evidence,
            run=self.run, accuracy=accuracy)

    def entity_ids(self) -> list[tuple[str, str]]:
        """``(field, entity id)`` for every entity the record refers to."""
        refs = [("answer_entity_id", self.answer_entity_id)] if self.answer_entity_id else []
        refs += [(f"mentions[{i}]", m[0]) for i, m in enumerate(self.mentions)]
        refs += [(f"shows[{i}]", s[0]) for i, s in enumerate(self.shows)]
        for i, (src, _, dst, _) in enumerate(self.evidence_edges):
            refs += [(f"evidence_edges[{i}]", src), (f"evidence_edges[{i}]", dst)]
        return refs

    # -- serialisation -----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples as lists); :meth:`from_dict` reads it back."""
        return {
            "question_id": self.question_id, "text": self.text, "image": self.image,
            "model": self.model, "answer_text": self.answer_text,
            "answer_entity_id": self.answer_entity_id, "answer_score": self.answer_score,
            "correct": self.correct, "accuracy": self.accuracy, "run": self.run,
            "mentions": [list(m) for m in self.mentions],
            "shows": [list(s) for s in self.shows],
            "evidence_edges": [list(e) for e in self.evidence_edges],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> QuestionRecord:
        """Inverse of :meth:`to_dict` (not validated; call :meth:`validated`)."""
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        for key in ("mentions", "shows", "evidence_edges"):
            known[key] = [tuple(item) for item in known.get(key) or []]
        return cls(**known)


def _is_id(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


def _score(value: Any, fail: Callable[[str], InputError]) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise fail(f"score must be a number, got {value!r}")
    if not math.isfinite(value):
        raise fail(f"score must be finite, got {value!r}")
    return float(value)


def _items(values: Any, size: int, fail: Callable[[str], InputError]) -> list[tuple[Any, ...]]:
    if isinstance(values, str | bytes | Mapping) or not isinstance(values, Iterable):
        raise fail(f"must be a list of {size}-tuples, got {type(values).__name__}")
    items = []
    for i, item in enumerate(values):
        if isinstance(item, str | bytes) or not isinstance(item, Sequence) or len(item) != size:
            raise fail(f"item {i} must be a {size}-tuple, got {item!r}")
        items.append(tuple(item))
    return items


def _no_duplicates(keys: list[Any], name: str,
                   fail: Callable[[str, str], InputError]) -> None:
    seen: set[Any] = set()
    for i, key in enumerate(keys):
        if key in seen:
            raise fail(f"{name}[{i}]", f"duplicate {key!r}; merge it with the earlier one")
        seen.add(key)


def validate_records(records: Iterable[QuestionRecord]) -> list[QuestionRecord]:
    """Check every record (and that question ids are unique); nothing is written before."""
    checked: list[QuestionRecord] = []
    seen: dict[str, int] = {}
    for position, record in enumerate(records):
        if not isinstance(record, QuestionRecord):
            raise InputError(f"expected a QuestionRecord, got {type(record).__name__}",
                             source="question records", record=position)
        record = record.validated(position)
        if record.question_id in seen:
            raise InputError(f"question id given twice (records {seen[record.question_id]} and "
                             f"{position})", source="question records",
                             record=record.question_id, field="question_id")
        seen[record.question_id] = position
        checked.append(record)
    return checked


def check_entities_known(records: Sequence[QuestionRecord],
                         known: Callable[[Iterable[str]], set[str]]) -> None:
    """Raise :class:`InputError` naming the first record that refers to an unknown entity.

    ``known(ids)`` returns the subset of ``ids`` that the store's KG holds.
    """
    wanted = sorted({entity for record in records for _, entity in record.entity_ids()})
    found = known(wanted)
    if len(found) == len(wanted):
        return
    for record in records:
        for field_name, entity in record.entity_ids():
            if entity not in found:
                raise InputError(f"entity {entity!r} is not in the store's knowledge graph; "
                                 "nothing was written", source="question records",
                                 record=record.question_id, field=field_name)


def check_no_reserved_relations(relation_ids: Iterable[str], where: str) -> None:
    """Refuse records in a KG whose relation ids clash with the record edge types."""
    clash = sorted(set(relation_ids) & set(RECORD_EDGE_TYPES))
    if clash:
        raise StoreError(f"{where}: the knowledge graph has relations named {', '.join(clash)}, "
                         "which inspection records use as edge types; rename them to write "
                         "records")


# -- the graph of a record -------------------------------------------------------------
class RecordEdge(NamedTuple):
    type: str
    entity_id: str
    properties: dict[str, Any]


def question_properties(record: QuestionRecord) -> dict[str, Any]:
    """The ``:Question`` node's properties (None values left out)."""
    accuracy = record.accuracy
    if accuracy is None and record.correct is not None:
        accuracy = 1.0 if record.correct else 0.0
    props: dict[str, Any] = {
        "id": record.question_id, "text": record.text, "image": record.image,
        "model": record.model, "answer": record.answer_text,
        "answer_entity": record.answer_entity_id, "answer_score": record.answer_score,
        "correct": record.correct, "accuracy": accuracy, "run": record.run,
    }
    return {k: v for k, v in props.items() if v is not None}


def record_edges(record: QuestionRecord) -> list[RecordEdge]:
    """Every relationship leaving the record's ``:Question`` node (see module docstring)."""
    edges: list[RecordEdge] = []
    linked: dict[str, tuple[float, set[str]]] = {}
    for entity, score, span in record.mentions:
        props: dict[str, Any] = {"score": score}
        if span is not None:
            props["span"] = span
        edges.append(RecordEdge("MENTIONS", entity, props))
        best, sources = linked.get(entity, (score, set()))
        linked[entity] = (max(best, score), sources | {"question"})
    for entity, score in record.shows:
        edges.append(RecordEdge("SHOWS", entity, {"score": score}))
        best, sources = linked.get(entity, (score, set()))
        linked[entity] = (max(best, score), sources | {"image"})
    for entity, (score, sources) in linked.items():
        edges.append(RecordEdge("LINKED", entity, {"score": score, "sources": sorted(sources)}))
    if record.answer_entity_id is not None:
        edges.append(RecordEdge("ANSWERED", record.answer_entity_id,
                                {"score": record.answer_score, "model": record.model}))
    for src, relation, dst, score in record.evidence_edges:
        edges.append(RecordEdge("EVIDENCE", dst, {"src": src, "relation": relation, "dst": dst,
                                                  "score": score}))
    return edges


def question_node_key(question_id: str) -> tuple[str, str]:
    """The networkx node key of a question (a tuple: it cannot clash with an entity id)."""
    return (QUESTION_LABEL, question_id)


def add_records_to_view(view: Any, records: Iterable[QuestionRecord]) -> Any:
    """Add ``:Question`` nodes and their edges to a networkx view of the KG (in place)."""
    for record in records:
        key = question_node_key(record.question_id)
        view.add_node(key, __labels__={QUESTION_LABEL}, **question_properties(record))
        for edge in record_edges(record):
            view.add_edge(key, edge.entity_id, __labels__={edge.type}, **edge.properties)
    return view


# -- named queries ---------------------------------------------------------------------
class NamedQuery(NamedTuple):
    """A documented inspection query: Cypher text, what it answers, its parameter names."""

    cypher: str
    description: str
    params: tuple[str, ...]


#: Parameter types of the named queries (values from the command line are coerced to them).
PARAM_TYPES: dict[str, type] = {"id": str, "entity": str, "run": str}

NAMED_QUERIES: dict[str, NamedQuery] = {
    "question": NamedQuery(
        "MATCH (q:Question {id: $id}) "
        "RETURN q.id AS id, q.text AS text, q.image AS image, q.model AS model, "
        "q.answer AS answer, q.answer_entity AS answer_entity, "
        "q.answer_score AS answer_score, q.correct AS correct, q.accuracy AS accuracy, "
        "q.run AS run",
        "The question $id as recorded: text, image, model, answer and whether it was correct.",
        ("id",)),
    "question_entities": NamedQuery(
        "MATCH (q:Question {id: $id})-[r:MENTIONS|SHOWS]->(e:Entity) "
        "RETURN type(r) AS link, e.id AS entity, e.label AS label, r.score AS score, "
        "r.span AS span ORDER BY score DESC, entity, link",
        "Which entities did the model link for question $id (MENTIONS: from the question "
        "words, span = the words; SHOWS: from the image)?",
        ("id",)),
    "question_evidence": NamedQuery(
        "MATCH (q:Question {id: $id})-[r:EVIDENCE]->(e:Entity) "
        "RETURN r.src AS source, r.relation AS relation, r.dst AS target, r.score AS score "
        "ORDER BY score DESC, source, relation, target",
        "The evidence edges behind the answer to question $id, strongest first.",
        ("id",)),
    "questions_linking": NamedQuery(
        "MATCH (q:Question)-[l:LINKED]->(e:Entity {id: $entity}) "
        "RETURN q.id AS question, q.text AS text, l.sources AS sources, l.score AS score, "
        "q.answer AS answer, q.correct AS correct ORDER BY question",
        "Every question that linked $entity (from its words or its image) and how it went.",
        ("entity",)),
    "linked_but_wrong": NamedQuery(
        "MATCH (q:Question)-[l:LINKED]->(e:Entity {id: $entity}) WHERE q.correct = false "
        "RETURN q.id AS question, q.text AS text, q.answer AS answer, "
        "q.answer_entity AS answer_entity, l.score AS link_score ORDER BY question",
        "Questions that linked $entity but were answered wrong.",
        ("entity",)),
    "answers_for_entity": NamedQuery(
        "MATCH (q:Question)-[a:ANSWERED]->(e:Entity {id: $entity}) "
        "RETURN q.id AS question, q.text AS text, a.model AS model, a.score AS score, "
        "q.correct AS correct ORDER BY question",
        "Questions the model answered with $entity.",
        ("entity",)),
    "evidence_through_entity": NamedQuery(
        "MATCH (q:Question)-[r:EVIDENCE]->(e:Entity) "
        "WHERE r.src = $entity OR r.dst = $entity "
        "RETURN q.id AS question, r.src AS source, r.relation AS relation, r.dst AS target, "
        "r.score AS score ORDER BY question, source, relation, target",
        "Evidence edges that start or end at $entity, with their questions.",
        ("entity",)),
    "wrong_answers": NamedQuery(
        "MATCH (q:Question) WHERE q.run = $run AND q.correct = false "
        "RETURN q.id AS question, q.text AS text, q.answer AS answer, "
        "q.answer_entity AS answer_entity, q.answer_score AS score ORDER BY question",
        "Questions of run $run that were answered wrong.",
        ("run",)),
    "frequent_wrong_answers": NamedQuery(
        "MATCH (q:Question)-[a:ANSWERED]->(e:Entity) WHERE q.run = $run AND q.correct = false "
        "RETURN e.id AS entity, e.label AS label, COUNT(q) AS wrong ORDER BY wrong DESC, entity",
        "Which answer entities run $run gave most often when it was wrong.",
        ("run",)),
    "run_accuracy": NamedQuery(
        "MATCH (q:Question) WHERE q.run = $run AND q.accuracy >= 0 "
        "RETURN q.run AS run, COUNT(q) AS questions, AVG(q.accuracy) AS accuracy",
        "Mean accuracy of run $run over its scored questions (no row if none is scored).",
        ("run",)),
    "run_accuracy_by_linked_entity": NamedQuery(
        "MATCH (q:Question)-[l:LINKED]->(e:Entity) WHERE q.run = $run AND q.accuracy >= 0 "
        "RETURN e.id AS entity, e.label AS label, COUNT(q) AS questions, "
        "AVG(q.accuracy) AS accuracy ORDER BY questions DESC, entity",
        "Accuracy of run $run per linked entity: how well the model does on questions that "
        "link each entity.",
        ("run",)),
    "runs": NamedQuery(
        "MATCH (q:Question) RETURN q.run AS run, q.model AS model, COUNT(q) AS questions "
        "ORDER BY run, model",
        "The runs (and models) that wrote records, with their number of questions.",
        ()),
}


def coerce_params(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters of named query ``name``, checked and coerced to their types.

    Raises :class:`InputError` for an unknown query, a missing or an unexpected parameter.
    """
    query = NAMED_QUERIES.get(name)
    if query is None:
        raise InputError(f"no named query {name!r}; choose one of "
                         f"{', '.join(sorted(NAMED_QUERIES))}", field="query")
    missing = [p for p in query.params if p not in params]
    if missing:
        raise InputError(f"query {name!r} needs parameter(s) {', '.join(missing)} "
                         f"(pass --param {missing[0]}=VALUE)", field=missing[0])
    extra = sorted(set(params) - set(query.params))
    if extra:
        raise InputError(f"query {name!r} takes no parameter(s) {', '.join(extra)}; it takes "
                         f"{', '.join(query.params) or 'none'}", field=extra[0])
    out: dict[str, Any] = {}
    for key in query.params:
        value = params[key]
        wanted = PARAM_TYPES.get(key, str)
        if wanted is str and isinstance(value, int) and not isinstance(value, bool):
            value = str(value)  # question 42 means the question id "42"
        if not isinstance(value, wanted):
            raise InputError(f"parameter ${key} must be a {wanted.__name__}, got {value!r}",
                             field=key)
        out[key] = value
    return out


__all__ = [
    "NAMED_QUERIES",
    "RECORD_EDGE_TYPES",
    "NamedQuery",
    "QuestionRecord",
    "RecordEdge",
    "add_records_to_view",
    "check_entities_known",
    "coerce_params",
    "question_properties",
    "record_edges",
    "validate_records",
]
