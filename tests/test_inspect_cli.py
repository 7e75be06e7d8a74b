"""`kgmm inspect …` on the embedded store, and building records from answers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kgmm.graph.errors import InputError
from kgmm.graph.inspection import QuestionRecord
from kgmm.graph.stores.embedded import EmbeddedStore
from kgmm.inspection import inspect_question, record_from_answer, write_answers
from kgmm.pipeline import Alternative, Answer, Evidence, EvidencePath, LinkedEntity

from .graph.toy_kg import toy_graph

RECORDS = [
    QuestionRecord("42", "what animal is this?", "img/dog.png", "m1", "dog", "ex:dog", 0.8, True,
                   mentions=[("ex:animal", 0.9, "animal")], shows=[("ex:dog", 0.7)],
                   evidence_edges=[("ex:dog", "hypernym", "ex:canine", 0.6)], run="r1"),
    QuestionRecord("43", "is the puppy a cat?", "img/puppy.png", "m1", "cat", "ex:cat", 0.6,
                   False, mentions=[("ex:puppy", 0.95, "puppy")], shows=[("ex:dog", 0.8)],
                   run="r1"),
]


def kgmm(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kgmm.cli", *args, "--data-dir", str(data_dir)],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("home")
    store = EmbeddedStore(data_dir=home)
    store.import_data(toy_graph())
    assert write_answers(store, RECORDS) == 2
    return home


def test_inspect_question(home: Path) -> None:
    result = kgmm("inspect", "question", "42", data_dir=home)
    assert result.returncode == 0, result.stderr
    for text in ("what animal is this?", "ex:animal", "MENTIONS", "SHOWS", "ex:canine",
                 "correct"):
        assert text in result.stdout
    as_json = kgmm("inspect", "question", "42", "--json", data_dir=home)
    found = json.loads(as_json.stdout)
    assert found["question"]["answer_entity"] == "ex:dog"
    assert [row["entity"] for row in found["linked"]] == ["ex:animal", "ex:dog"]
    assert found["evidence"] == [{"source": "ex:dog", "relation": "hypernym",
                                  "target": "ex:canine", "score": 0.6}]


def test_inspect_run_named_query(home: Path) -> None:
    result = kgmm("inspect", "run", "linked_but_wrong", "--param", "entity=ex:dog", "--json",
                  data_dir=home)
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["question"] for line in result.stdout.splitlines()] == ["43"]
    numeric = kgmm("inspect", "run", "question_entities", "-p", "id=43", "--json",
                   data_dir=home)  # a number-like id stays the string "43"
    assert [json.loads(line)["entity"] for line in numeric.stdout.splitlines()] == [
        "ex:puppy", "ex:dog"]
    table = kgmm("inspect", "run", "run_accuracy", "-p", "run=r1", data_dir=home)
    assert table.returncode == 0 and "0.5" in table.stdout


def test_inspect_cypher_and_queries(home: Path) -> None:
    result = kgmm("inspect", "cypher", "MATCH (q:Question)-[:SHOWS]->(e:Entity {id: $e}) "
                  "RETURN q.id ORDER BY q.id", "--param", "e=ex:dog", "--json", "--limit", "1",
                  data_dir=home)
    assert result.returncode == 0, result.stderr
    assert [json.loads(line) for line in result.stdout.splitlines()] == [{"q.id": "42"}]
    listed = subprocess.run([sys.executable, "-m", "kgmm.cli", "inspect", "queries", "--json"],
                            capture_output=True, text=True, timeout=120)
    names = [json.loads(line)["name"] for line in listed.stdout.splitlines()]
    assert "question_entities" in names and "linked_but_wrong" in names


def test_inspect_errors_are_one_line_with_status_2(home: Path) -> None:
    missing = kgmm("inspect", "question", "999", data_dir=home)
    assert missing.returncode == 2 and "no such question" in missing.stderr
    write = kgmm("inspect", "cypher", "MATCH (q:Question) DETACH DELETE q", data_dir=home)
    assert write.returncode == 2 and "ReadOnlyViolationError" in write.stderr
    no_param = kgmm("inspect", "run", "question", data_dir=home)
    assert no_param.returncode == 2 and "--param id=" in no_param.stderr
    for result in (missing, write, no_param):
        assert "Traceback" not in result.stderr
    assert inspect_question(EmbeddedStore(data_dir=home), 43).question["correct"] is False


def _answer() -> Answer:
    linked = [LinkedEntity("ex:puppy", "puppy", 0.9, "question", "puppy"),
              LinkedEntity("ex:puppy", "puppy", 0.7, "question", "puppy"),
              LinkedEntity("ex:dog", "dog", 0.4, "question", "puppy"),
              LinkedEntity("ex:dog", "dog", 0.8, "image", "x=0.20,y=0.40"),
              LinkedEntity("ex:cat", "cat", 0.6, "image", "x=0.70,y=0.40")]
    paths = [EvidencePath(["ex:puppy", "ex:dog", "ex:canine"], ["hypernym", "hypernym"], 0.5),
             EvidencePath(["object#0", "ex:dog", "ex:canine"], ["depicts", "hypernym"], 0.7),
             EvidencePath(["object#1", "ex:cat", "ex:dog"], ["depicts", "antonym"], 0.3),
             EvidencePath(["ex:canine", "ex:dog"], ["hypernym⁻¹"], 0.2),
             EvidencePath(["object#5", "ex:canine"], ["depicts"], 0.9)]
    evidence = Evidence(linked, subgraph_nodes=10, subgraph_edges=20,
                        top_nodes=[("ex:canine", 0.9), ("object#0", 0.5)], paths=paths)
    return Answer("canine", "ex:canine", 0.75, [Alternative("dog", 0.2, "ex:dog")], evidence,
                  question="what kind of animal is the puppy?")


def test_record_from_answer() -> None:
    record = record_from_answer(_answer(), question_id=7, image="img/7.png", model="m",
                                correct=True, run="r")
    assert (record.question_id, record.text, record.answer_entity_id) == (
        "7", "what kind of animal is the puppy?", "ex:canine")
    assert record.mentions == [("ex:puppy", 0.9, "puppy"), ("ex:dog", 0.4, "puppy")]
    assert record.shows == [("ex:dog", 0.8), ("ex:cat", 0.6)]
    # object#0 -> ex:dog (a self-loop: skipped), object#1 -> ex:cat, object#5 unknown: skipped;
    # the reversed step canine -[hypernym⁻¹]-> dog is the KG edge dog -[hypernym]-> canine
    assert sorted(record.evidence_edges) == [
        ("ex:cat", "antonym", "ex:dog", 0.3),
        ("ex:dog", "hypernym", "ex:canine", 0.7),
        ("ex:puppy", "hypernym", "ex:dog", 0.5),
    ]
    bare = record_from_answer(Answer("yes", None, 0.9, []), question_id="8", image="i",
                              model="m")
    assert (bare.mentions, bare.shows, bare.evidence_edges, bare.correct) == ([], [], [], None)


def test_answers_written_and_inspected_through_the_face(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "s")
    store.import_data(toy_graph())
    record = record_from_answer(_answer(), question_id="7", image="img/7.png", model="m")
    write_answers(store, [record])
    found = inspect_question(store, "7")
    assert (found.question["answer"], found.question["correct"]) == ("canine", None)
    assert [(r["link"], r["entity"]) for r in found.linked] == [
        ("MENTIONS", "ex:puppy"), ("SHOWS", "ex:dog"), ("SHOWS", "ex:cat"),
        ("MENTIONS", "ex:dog")]
    assert len(found.evidence) == 3
    with pytest.raises(InputError, match="no such question"):
        inspect_question(store, "8")
