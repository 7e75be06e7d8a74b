"""Inspection records on both stores: writing, upserting, named queries, failures."""

from __future__ import annotations

import dataclasses
import math
import os

import pytest

from kgmm.graph.compiled import CompiledKG
from kgmm.graph.errors import InputError, ReadOnlyViolationError, StoreError
from kgmm.graph.inspection import NAMED_QUERIES, QuestionRecord, coerce_params
from kgmm.graph.model import GraphData, Relation
from kgmm.graph.stores.embedded import EmbeddedStore

from .toy_kg import toy_graph

Q1 = QuestionRecord(
    "q1", "what animal is this?", "img/dog.png", "m1", "dog", "ex:dog", 0.8, True,
    mentions=[("ex:animal", 0.9, "animal")], shows=[("ex:dog", 0.7), ("ex:cat", 0.2)],
    evidence_edges=[("ex:dog", "hypernym", "ex:canine", 0.6),
                    ("ex:canine", "hypernym", "ex:animal", 0.5)], run="r1")
Q2 = QuestionRecord(
    "q2", "is the puppy a cat?", "img/puppy.png", "m1", "cat", "ex:cat", 0.6, False,
    mentions=[("ex:puppy", 0.95, "puppy"), ("ex:cat", 0.9, "cat")], shows=[("ex:dog", 0.8)],
    evidence_edges=[("ex:puppy", "hypernym", "ex:dog", 0.4), ("ex:dog", "antonym", "ex:cat", 0.3)],
    run="r1")
Q3 = QuestionRecord("q3", "what colour is the banana?", "img/banana.png", "m2", "yellow", None,
                    0.5, mentions=[("ex:banana", 0.7, "banana")], run="r2")
Q4 = QuestionRecord(
    "q4", "what is on the car?", "img/car.png", "m2", "wheel", "ex:wheel", 0.9, False,
    mentions=[("ex:car", 0.8, "car")], shows=[("ex:car", 0.6)],
    evidence_edges=[("ex:car", "part_meronym", "ex:wheel", 0.7)], run="r2", accuracy=0.3)
RECORDS = [Q1, Q2, Q3, Q4]


def _q(id_: str, text: str, image: str, model: str, answer: str, entity: str | None,
       score: float, correct: bool | None, accuracy: float | None, run: str) -> dict:
    return {"id": id_, "text": text, "image": image, "model": model, "answer": answer,
            "answer_entity": entity, "answer_score": score, "correct": correct,
            "accuracy": accuracy, "run": run}


#: (query name, parameters) → the exact rows both backends must return.
EXPECTED: dict[tuple[str, str], list[dict]] = {
    ("question", "q2"): [_q("q2", "is the puppy a cat?", "img/puppy.png", "m1", "cat", "ex:cat",
                            0.6, False, 0.0, "r1")],
    ("question", "q3"): [_q("q3", "what colour is the banana?", "img/banana.png", "m2", "yellow",
                            None, 0.5, None, None, "r2")],
    ("question_entities", "q1"): [
        {"link": "MENTIONS", "entity": "ex:animal", "label": "animal", "score": 0.9,
         "span": "animal"},
        {"link": "SHOWS", "entity": "ex:dog", "label": "dog", "score": 0.7, "span": None},
        {"link": "SHOWS", "entity": "ex:cat", "label": "cat", "score": 0.2, "span": None}],
    ("question_entities", "q4"): [
        {"link": "MENTIONS", "entity": "ex:car", "label": "car", "score": 0.8, "span": "car"},
        {"link": "SHOWS", "entity": "ex:car", "label": "car", "score": 0.6, "span": None}],
    ("question_evidence", "q2"): [
        {"source": "ex:puppy", "relation": "hypernym", "target": "ex:dog", "score": 0.4},
        {"source": "ex:dog", "relation": "antonym", "target": "ex:cat", "score": 0.3}],
    ("questions_linking", "ex:dog"): [
        {"question": "q1", "text": "what animal is this?", "sources": ["image"], "score": 0.7,
         "answer": "dog", "correct": True},
        {"question": "q2", "text": "is the puppy a cat?", "sources": ["image"], "score": 0.8,
         "answer": "cat", "correct": False}],
    ("questions_linking", "ex:car"): [
        {"question": "q4", "text": "what is on the car?", "sources": ["image", "question"],
         "score": 0.8, "answer": "wheel", "correct": False}],
    ("linked_but_wrong", "ex:dog"): [
        {"question": "q2", "text": "is the puppy a cat?", "answer": "cat",
         "answer_entity": "ex:cat", "link_score": 0.8}],
    ("answers_for_entity", "ex:cat"): [
        {"question": "q2", "text": "is the puppy a cat?", "model": "m1", "score": 0.6,
         "correct": False}],
    ("evidence_through_entity", "ex:dog"): [
        {"question": "q1", "source": "ex:dog", "relation": "hypernym", "target": "ex:canine",
         "score": 0.6},
        {"question": "q2", "source": "ex:dog", "relation": "antonym", "target": "ex:cat",
         "score": 0.3},
        {"question": "q2", "source": "ex:puppy", "relation": "hypernym", "target": "ex:dog",
         "score": 0.4}],
    ("wrong_answers", "r2"): [
        {"question": "q4", "text": "what is on the car?", "answer": "wheel",
         "answer_entity": "ex:wheel", "score": 0.9}],
    ("frequent_wrong_answers", "r1"): [{"entity": "ex:cat", "label": "cat", "wrong": 1}],
    ("run_accuracy", "r1"): [{"run": "r1", "questions": 2, "accuracy": 0.5}],
    ("run_accuracy", "r2"): [{"run": "r2", "questions": 1, "accuracy": 0.3}],
    ("run_accuracy_by_linked_entity", "r1"): [
        {"entity": "ex:cat", "label": "cat", "questions": 2, "accuracy": 0.5},
        {"entity": "ex:dog", "label": "dog", "questions": 2, "accuracy": 0.5},
        {"entity": "ex:animal", "label": "animal", "questions": 1, "accuracy": 1.0},
        {"entity": "ex:puppy", "label": "puppy", "questions": 1, "accuracy": 0.0}],
    ("runs", ""): [{"run": "r1", "model": "m1", "questions": 2},
                   {"run": "r2", "model": "m2", "questions": 2}],
}


def _params(name: str, value: str) -> dict[str, str]:
    return {p: value for p in NAMED_QUERIES[name].params}


def _named(store, name: str, value: str = "") -> list[dict]:
    return store.inspect(NAMED_QUERIES[name].cypher, _params(name, value)).rows


def _snapshot(store) -> list:
    """Everything the records put into the store, as rows (for 'unchanged' checks)."""
    return store.inspect("MATCH (q:Question)-[r]->(e:Entity) RETURN q.id AS question, "
                         "q.answer AS answer, type(r) AS link, r.score AS score, e.id AS entity "
                         "ORDER BY question, link, entity, score").rows


@pytest.fixture(params=["rdflib", pytest.param("neo4j", marks=pytest.mark.neo4j)])
def store(request, tmp_path):
    if request.param == "rdflib":
        s = EmbeddedStore(tmp_path / "s")
    else:
        from kgmm.graph.stores.neo4j_store import Neo4jStore

        server = request.getfixturevalue("neo4j_clean_db")
        s = Neo4jStore(server.uri, server.user, server.password, batch_size=3)
    s.import_data(toy_graph())
    yield s
    s.close()


def test_every_named_query_is_tested() -> None:
    assert {name for name, _ in EXPECTED} == set(NAMED_QUERIES)
    for name, query in NAMED_QUERIES.items():
        assert query.description and all(f"${p}" in query.cypher for p in query.params), name


def test_named_queries_return_the_expected_rows(store) -> None:
    assert store.write_question_records(RECORDS) == 4
    for (name, value), rows in EXPECTED.items():
        result = store.inspect(NAMED_QUERIES[name].cypher, _params(name, value))
        assert result.rows == rows, (name, value)
        assert result.columns == list(rows[0]), name


def test_question_and_entity_queries_cover_the_issue_examples(store) -> None:
    """'which entities did the model link for question q2', 'which questions linked dog but
    answered wrong' — and a free query joining records with the KG."""
    store.write_question_records(RECORDS)
    assert [r["entity"] for r in _named(store, "question_entities", "q2")] == [
        "ex:puppy", "ex:cat", "ex:dog"]
    assert [r["question"] for r in _named(store, "linked_but_wrong", "ex:dog")] == ["q2"]
    rows = store.inspect("MATCH (q:Question {id: $id})-[:ANSWERED]->(a:Entity)"
                         "-[:hypernym]->(h:Entity) RETURN a.id, h.id", {"id": "q1"}).rows
    assert rows == [{"a.id": "ex:dog", "h.id": "ex:canine"}]


def test_upsert_replaces_a_questions_edges(store) -> None:
    store.write_question_records(RECORDS)
    fixed = dataclasses.replace(Q2, answer_text="dog", answer_entity_id="ex:dog", correct=True,
                                mentions=[("ex:puppy", 0.5, "puppy")], shows=[],
                                evidence_edges=[("ex:puppy", "hypernym", "ex:dog", 0.9)])
    assert store.write_question_records([fixed]) == 1
    assert _named(store, "question_entities", "q2") == [
        {"link": "MENTIONS", "entity": "ex:puppy", "label": "puppy", "score": 0.5,
         "span": "puppy"}]
    assert _named(store, "question_evidence", "q2") == [
        {"source": "ex:puppy", "relation": "hypernym", "target": "ex:dog", "score": 0.9}]
    assert _named(store, "linked_but_wrong", "ex:dog") == []
    assert [r["question"] for r in _named(store, "answers_for_entity", "ex:dog")] == ["q1", "q2"]
    assert _named(store, "runs") == EXPECTED[("runs", "")]  # still 4 questions, not 5
    assert _named(store, "question_entities", "q1") == EXPECTED[("question_entities", "q1")]


def test_a_bad_record_leaves_the_store_unchanged(store) -> None:
    store.write_question_records(RECORDS)
    before = _snapshot(store)
    new = dataclasses.replace(Q1, question_id="q5")
    bad = dataclasses.replace(Q2, question_id="q6", shows=[("ex:dog", math.nan)])
    with pytest.raises(InputError, match=r"record q6, field 'shows\[0\]': score must be finite"):
        store.write_question_records([new, bad])
    renamed = dataclasses.replace(Q1, answer_text="changed")
    with pytest.raises(InputError, match="question id given twice"):
        store.write_question_records([renamed, renamed])
    assert _snapshot(store) == before


def test_unknown_entity_is_refused_and_nothing_written(store) -> None:
    store.write_question_records([Q1])
    before = _snapshot(store)
    zebra = dataclasses.replace(Q2, evidence_edges=[("ex:dog", "hypernym", "ex:zebra", 0.1)])
    with pytest.raises(InputError, match=r"record q2, field 'evidence_edges\[0\]': entity "
                                         r"'ex:zebra' is not in the store"):
        store.write_question_records([Q3, zebra])
    assert _snapshot(store) == before
    assert _named(store, "question", "q3") == []


def test_inspection_stays_read_only(store) -> None:
    store.write_question_records(RECORDS)
    before = _snapshot(store)
    for query in ("MATCH (q:Question) DETACH DELETE q",
                  "MATCH (q:Question {id: 'q1'}) SET q.correct = false RETURN q",
                  "MATCH (q:Question)-[r:MENTIONS]->() DELETE r",
                  "CREATE (q:Question {id: 'x'}) RETURN q"):
        with pytest.raises(ReadOnlyViolationError):
            store.inspect(query)
    assert _snapshot(store) == before


def test_records_do_not_change_the_compiled_kg(store) -> None:
    before = CompiledKG.from_store(store).content_hash
    stats = store.stats()
    store.write_question_records(RECORDS)
    assert CompiledKG.from_store(store).content_hash == before
    assert store.stats() == stats
    assert store.export().stats() == toy_graph().stats()
    assert store.delete_question_records() == 4
    assert CompiledKG.from_store(store).content_hash == before


def test_delete_by_run(store) -> None:
    store.write_question_records(RECORDS)
    assert store.delete_question_records(run="r1") == 2
    assert _named(store, "runs") == [{"run": "r2", "model": "m2", "questions": 2}]
    assert _named(store, "question_entities", "q1") == []
    assert store.delete_question_records(run="r1") == 0
    assert store.delete_question_records() == 2
    assert _snapshot(store) == []


def test_relations_named_like_record_edges_are_refused(store) -> None:
    clash = GraphData([], [Relation("MENTIONS", "mentions")], [])
    store.import_data(clash)
    with pytest.raises(StoreError, match="MENTIONS"):
        store.write_question_records([Q1])


# -- embedded store specifics --------------------------------------------------------------
def test_embedded_records_survive_an_import_and_views_refresh(tmp_path) -> None:
    from kgmm.graph.model import Entity, Triple

    store = EmbeddedStore(tmp_path / "s")
    store.import_data(toy_graph())
    assert _named(store, "runs") == []  # builds and caches the view
    store.write_question_records([Q1])
    assert _named(store, "runs") == [{"run": "r1", "model": "m1", "questions": 1}]
    toy = toy_graph()
    canine = next(e for e in toy.entities if e.id == "ex:canine")
    store.import_data(GraphData([Entity("ex:wolf", "wolf"), canine], toy.relations,
                                [Triple("ex:wolf", "hypernym", "ex:canine")]))
    assert [p.name for p in (tmp_path / "s").glob("gen-*")] == [store.generation]
    assert _named(store, "question_entities", "q1") == EXPECTED[("question_entities", "q1")]
    assert store.question_records() == [Q1.validated()]
    store.check()  # the RDF database and the snapshot still agree
    reopened = EmbeddedStore(tmp_path / "s")
    assert _named(reopened, "runs") == [{"run": "r1", "model": "m1", "questions": 1}]


def test_embedded_failed_write_leaves_store_unchanged(tmp_path, monkeypatch) -> None:
    store = EmbeddedStore(tmp_path / "s")
    store.import_data(toy_graph())
    store.write_question_records([Q1])
    before = _snapshot(store)
    real_replace = os.replace

    def explode(src, dst):
        if str(dst).endswith("questions.jsonl"):
            raise OSError("disk full (injected)")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", explode)
    with pytest.raises(StoreError, match="store unchanged: disk full"):
        store.write_question_records([Q2])
    monkeypatch.undo()
    assert _snapshot(EmbeddedStore(tmp_path / "s")) == before
    generation = tmp_path / "s" / store.generation
    assert sorted(p.name for p in generation.iterdir()) == ["oxigraph", "questions.jsonl",
                                                            "snapshot"]


def test_embedded_empty_store_refuses_records(tmp_path) -> None:
    with pytest.raises(StoreError, match="import a knowledge graph"):
        EmbeddedStore(tmp_path / "s").write_question_records([Q1])
    assert EmbeddedStore(tmp_path / "s").delete_question_records() == 0


# -- Neo4j specifics -----------------------------------------------------------------------
@pytest.mark.neo4j
def test_neo4j_failure_inside_the_transaction_rolls_back(neo4j_clean_db, monkeypatch) -> None:
    from kgmm.graph.stores.neo4j_store import Neo4jStore

    with Neo4jStore(neo4j_clean_db.uri, neo4j_clean_db.user, neo4j_clean_db.password) as store:
        store.import_data(toy_graph())
        store.write_question_records(RECORDS)
        before = _snapshot(store)
        original = Neo4jStore._create_record_edges

        def fail_on_evidence(self, tx, edge_type, rows):
            original(self, tx, edge_type, rows)  # real writes inside the transaction
            if edge_type == "EVIDENCE":
                raise ConnectionResetError("connection lost (injected)")

        monkeypatch.setattr(Neo4jStore, "_create_record_edges", fail_on_evidence)
        changed = dataclasses.replace(Q1, answer_text="cat", mentions=[], shows=[])
        with pytest.raises(StoreError, match="connection lost"):
            store.write_question_records([changed, dataclasses.replace(Q2, question_id="q9")])
        monkeypatch.undo()
        assert _snapshot(store) == before
        with store._session(read=True) as session:
            constraints = {r["name"] for r in session.run("SHOW CONSTRAINTS YIELD name")}
        assert "kgmm_question_id" in constraints


# -- records without a store ---------------------------------------------------------------
@pytest.mark.parametrize(("change", "message"), [
    ({"question_id": ""}, "question_id"),
    ({"answer_score": "high"}, "answer_score"),
    ({"correct": 1}, "correct"),
    ({"accuracy": 1.5}, "accuracy"),
    ({"mentions": [("ex:dog", 0.5)]}, "mentions"),
    ({"mentions": [("ex:dog", 0.5, "dog"), ("ex:dog", 0.4, "dog")]}, r"mentions\[1\]"),
    ({"shows": "ex:dog"}, "shows"),
    ({"evidence_edges": [("ex:dog", "", "ex:cat", 0.1)]}, r"evidence_edges\[0\]"),
    ({"run": ""}, "run"),
])
def test_record_validation_names_the_field(change, message) -> None:
    with pytest.raises(InputError, match=f"record .*{message}"):
        dataclasses.replace(Q1, **change).validated()


def test_record_round_trips_through_dict() -> None:
    for record in RECORDS:
        assert QuestionRecord.from_dict(record.to_dict()).validated() == record.validated()


def test_named_query_parameters_are_checked() -> None:
    assert coerce_params("question", {"id": 42}) == {"id": "42"}
    with pytest.raises(InputError, match="needs parameter"):
        coerce_params("question", {})
    with pytest.raises(InputError, match="takes no parameter"):
        coerce_params("runs", {"run": "r1"})
    with pytest.raises(InputError, match="no named query"):
        coerce_params("drop_everything", {})
