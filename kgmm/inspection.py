"""Inspection records of answered questions: build them from answers, write them, read them.

An :class:`~kgmm.pipeline.Answer` with evidence becomes a
:class:`~kgmm.graph.inspection.QuestionRecord` (:func:`record_from_answer`); a store holds the
records as ``:Question`` nodes linked to the KG's ``:Entity`` nodes, so that they can be
inspected with Cypher on both backends (:data:`NAMED_QUERIES`, docs/inspection.md)::

    record = record_from_answer(answer, question_id="42", image="img/42.jpg", model="default")
    write_answers(store, [record])
    inspect_question(store, "42").linked
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kgmm.graph.errors import InputError
from kgmm.graph.inspection import NAMED_QUERIES, NamedQuery, QuestionRecord, coerce_params

if TYPE_CHECKING:
    from kgmm.graph.stores.base import KGStore
    from kgmm.pipeline import Answer

#: Suffix the pipeline gives a relation walked against its direction (``hypernym⁻¹``).
REVERSED_SUFFIX = "⁻¹"
_OBJECT_PREFIX = "object#"


def record_from_answer(answer: Answer, *, question_id: str | int, image: str, model: str,
                       correct: bool | None = None, run: str | None = None,
                       accuracy: float | None = None) -> QuestionRecord:
    """The inspection record of one answer.

    Mentions and image links come from ``answer.evidence.linked_entities`` (the best score per
    entity and span is kept). Evidence edges come from the evidence paths, in the KG's
    direction (a step ``a -[r⁻¹]-> b`` is the edge ``b -[r]-> a``), best score per edge.
    ``object#k`` path nodes stand for detected object k: they become the entity the image
    linked that object to (the image link with ``object_index == k``; links without one count
    in order) when known; edges with an unknown object, or
    that the mapping turns into a self-loop, are skipped. The record is validated.
    """
    evidence = answer.evidence
    linked = list(evidence.linked_entities) if evidence is not None else []
    mentions: dict[tuple[str, str | None], float] = {}
    shows: dict[str, float] = {}
    objects: dict[int, str] = {}
    for link in linked:
        if link.source == "image":
            slot = getattr(link, "object_index", None)
            objects[len(objects) if slot is None else int(slot)] = link.entity_id
            shows[link.entity_id] = max(shows.get(link.entity_id, link.score), link.score)
        else:
            key = (link.entity_id, link.span)
            mentions[key] = max(mentions.get(key, link.score), link.score)

    def node(name: str) -> str | None:
        if not name.startswith(_OBJECT_PREFIX):
            return name
        slot = name[len(_OBJECT_PREFIX):]
        return objects.get(int(slot)) if slot.isdigit() else None

    edges: dict[tuple[str, str, str], float] = {}
    for path in evidence.paths if evidence is not None else []:
        for a, relation, b in zip(path.nodes, path.relations, path.nodes[1:], strict=False):
            src, dst = node(a), node(b)
            if src is None or dst is None:
                continue
            if relation.endswith(REVERSED_SUFFIX):
                relation = relation[:-len(REVERSED_SUFFIX)]
                src, dst = dst, src
            if src == dst and (a.startswith(_OBJECT_PREFIX) or b.startswith(_OBJECT_PREFIX)):
                continue
            key = (src, relation, dst)
            edges[key] = max(edges.get(key, path.score), float(path.score))
    return QuestionRecord(
        question_id=str(question_id), text=answer.question, image=image, model=model,
        answer_text=answer.text, answer_entity_id=answer.entity_id,
        answer_score=float(answer.score), correct=correct,
        mentions=[(e, s, span) for (e, span), s in mentions.items()],
        shows=list(shows.items()),
        evidence_edges=[(s, r, d, score) for (s, r, d), score in edges.items()],
        run=run, accuracy=accuracy,
    ).validated()


def write_answers(store: KGStore, records: Sequence[QuestionRecord]) -> int:
    """Write inspection records into ``store`` (upsert by question id, all or nothing)."""
    return store.write_question_records(records)


@dataclass(frozen=True)
class QuestionInspection:
    """What the store holds about one answered question."""

    question: dict[str, Any]
    linked: list[dict[str, Any]] = field(default_factory=list)
    evidence: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"question": self.question, "linked": self.linked, "evidence": self.evidence}


def run_named_query(store: KGStore, name: str, params: dict[str, Any] | None = None, *,
                    limit: int = 1000, timeout_s: float = 10.0) -> Any:
    """Run one of :data:`NAMED_QUERIES` (parameters checked and coerced first)."""
    values = coerce_params(name, params or {})
    return store.inspect(NAMED_QUERIES[name].cypher, values, limit=limit, timeout_s=timeout_s)


def inspect_question(store: KGStore, question_id: str | int, *, limit: int = 1000,
                     timeout_s: float = 10.0) -> QuestionInspection:
    """The record of question ``question_id``: its answer, linked entities and evidence.

    Raises :class:`InputError` when the store has no such question.
    """
    params = {"id": str(question_id)}
    found = run_named_query(store, "question", params, limit=1, timeout_s=timeout_s)
    if not found.rows:
        raise InputError("no such question in the store (write records with "
                         "write_question_records or `kgmm eval vqa --records`)",
                         record=str(question_id), field="question_id")
    linked = run_named_query(store, "question_entities", params, limit=limit,
                             timeout_s=timeout_s)
    evidence = run_named_query(store, "question_evidence", params, limit=limit,
                               timeout_s=timeout_s)
    return QuestionInspection(found.rows[0], linked.rows, evidence.rows)


__all__ = [
    "NAMED_QUERIES",
    "NamedQuery",
    "QuestionInspection",
    "QuestionRecord",
    "inspect_question",
    "record_from_answer",
    "run_named_query",
    "write_answers",
]
