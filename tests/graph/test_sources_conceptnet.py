"""ConceptNet source: concept-level ids, language/relation/weight filters, gzip, errors."""

from __future__ import annotations

import gzip
import shutil
import tracemalloc
from pathlib import Path

import pytest

from kgmm.graph import Entity, InputError, Relation, Triple
from kgmm.graph.sources import read_conceptnet, read_source
from kgmm.graph.sources.conceptnet import relation_id

FIXTURES = Path(__file__).parents[1] / "fixtures" / "conceptnet"
ASSERTIONS = FIXTURES / "assertions.csv"
GOOD_LINE = ("/a/[/r/IsA/,/c/en/dog/n/,/c/en/animal/]\t/r/IsA\t/c/en/dog/n\t/c/en/animal\t"
             '{"dataset": "/d/conceptnet/4/en", "weight": 2.0}')


def write_lines(path: Path, *lines: str) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_english_graph_from_the_fixture() -> None:
    data = read_conceptnet(ASSERTIONS)
    # 24 lines: 6 touch fr/de, 1 ExternalURL, 1 self-loop (dog/n RelatedTo dog/v), and
    # "dog/n IsA animal" appears twice once senses are dropped
    assert data.stats() == {"entities": 18, "relations": 13, "triples": 15}
    assert data.source == str(ASSERTIONS)
    assert data.entities[:3] == [
        Entity("cn:/c/en/hot", "hot", properties={"language": "en"}),
        Entity("cn:/c/en/cold", "cold", properties={"language": "en"}),
        Entity("cn:/c/en/dog", "dog", properties={"language": "en"}),
    ]
    labels = {e.id: e.label for e in data.entities}
    assert labels["cn:/c/en/hot_dog"] == "hot dog"
    assert labels["cn:/c/en/the_beatles"] == "the beatles"
    assert "cn:/c/en/dog/n" not in labels


def test_senses_collapse_to_concepts_and_duplicates_are_dropped() -> None:
    data = read_conceptnet(ASSERTIONS)
    is_a = [t for t in data.triples if t.relation == "IsA"]
    assert is_a == [
        Triple("cn:/c/en/cat", "IsA", "cn:/c/en/animal"),
        Triple("cn:/c/en/dog", "IsA", "cn:/c/en/animal"),
        Triple("cn:/c/en/dog", "IsA", "cn:/c/en/canine"),
    ]
    assert Triple("cn:/c/en/dogs", "FormOf", "cn:/c/en/dog") in data.triples
    assert not [t for t in data.triples if t.subject == t.object]


def test_relations_ids_labels_and_symmetric_inverses() -> None:
    relations = {r.id: r for r in read_conceptnet(ASSERTIONS).relations}
    assert relations["IsA"] == Relation("IsA", "is a")
    assert relations["AtLocation"] == Relation("AtLocation", "at location")
    assert relations["dbpedia_genre"] == Relation("dbpedia_genre", "dbpedia genre")
    assert relations["RelatedTo"] == Relation("RelatedTo", "related to", inverse="RelatedTo")
    assert relations["Synonym"].inverse == "Synonym"
    assert relations["Antonym"].inverse == "Antonym"
    assert relations["PartOf"].inverse is None
    assert "ExternalURL" not in relations
    assert relation_id("/r/dbpedia/influencedBy") == "dbpedia_influencedBy"


def test_language_filter() -> None:
    every = read_conceptnet(ASSERTIONS, languages=None)
    assert every.stats() == {"entities": 23, "relations": 14, "triples": 21}
    assert Triple("cn:/c/en/dog", "Synonym", "cn:/c/fr/chien") in every.triples
    other = read_conceptnet(ASSERTIONS, languages=("fr", "de"))
    assert other.triples == [
        Triple("cn:/c/fr/chien", "IsA", "cn:/c/fr/animal"),
        Triple("cn:/c/de/hund", "IsA", "cn:/c/de/tier"),
        Triple("cn:/c/fr/chien", "Synonym", "cn:/c/de/hund"),
        Triple("cn:/c/de/hund", "HasProperty", "cn:/c/de/treu"),
    ]
    assert {e.id: e.properties["language"] for e in other.entities}["cn:/c/de/treu"] == "de"


def test_relation_and_weight_filters() -> None:
    only = read_conceptnet(ASSERTIONS, relations={"IsA", "/r/HasA"})
    assert [r.id for r in only.relations] == ["HasA", "IsA"]
    assert len(only.triples) == 4
    heavy = read_conceptnet(ASSERTIONS, min_weight=2.0)
    assert [(t.subject, t.relation, t.object) for t in heavy.triples] == [
        ("cn:/c/en/dog", "AtLocation", "cn:/c/en/kennel"),
        ("cn:/c/en/dog", "CapableOf", "cn:/c/en/bark"),
        ("cn:/c/en/dog", "HasA", "cn:/c/en/tail"),
        ("cn:/c/en/cat", "IsA", "cn:/c/en/animal"),
        ("cn:/c/en/dog", "IsA", "cn:/c/en/animal"),
        ("cn:/c/en/dog", "IsA", "cn:/c/en/canine"),
        ("cn:/c/en/puppy", "Synonym", "cn:/c/en/dog"),
    ]


def test_weight_defaults_to_one(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "a.csv", GOOD_LINE.replace(', "weight": 2.0', ""))
    assert len(read_conceptnet(path, min_weight=1.0).triples) == 1
    assert read_conceptnet(path, min_weight=1.5).triples == []


def test_gzipped_copy_reads_the_same(tmp_path: Path) -> None:
    packed = tmp_path / "conceptnet-assertions-5.7.0.csv.gz"
    with ASSERTIONS.open("rb") as source, gzip.open(packed, "wb") as target:
        shutil.copyfileobj(source, target)
    plain, unpacked = read_conceptnet(ASSERTIONS), read_conceptnet(packed)
    assert (unpacked.entities, unpacked.relations, unpacked.triples) == (
        plain.entities, plain.relations, plain.triples)
    assert unpacked.source == str(packed)
    assert read_source(packed).triples == plain.triples  # detected as ConceptNet


def test_memory_grows_with_kept_assertions_only(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    with path.open("w", encoding="utf-8") as handle:
        for number in range(10_000):
            handle.write(f"/a/x\t/r/IsA\t/c/fr/mot{number}\t/c/fr/chose\t{{\"weight\": 1.0}}\n")
        handle.write(GOOD_LINE + "\n")
    tracemalloc.start()
    data = read_conceptnet(path)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert data.stats() == {"entities": 2, "relations": 1, "triples": 1}
    assert peak < path.stat().st_size  # streamed, not loaded


# --- errors ---------------------------------------------------------------------------------


def test_wrong_column_count_names_file_and_line() -> None:
    path = FIXTURES / "malformed.csv"
    with pytest.raises(InputError) as caught:
        read_conceptnet(path)
    assert caught.value.line == 3
    assert str(caught.value) == (f"{path}:3: expected 5 tab-separated columns "
                                 "(assertion, relation, start, end, info), found 4")


def test_bad_json(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "a.csv", GOOD_LINE, GOOD_LINE.replace("2.0}", "2.0"))
    with pytest.raises(InputError, match=r"a\.csv:2, field 'info': invalid JSON") as caught:
        read_conceptnet(path)
    assert caught.value.line == 2


def test_bad_weight(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "a.csv", GOOD_LINE.replace("2.0", '"heavy"'))
    with pytest.raises(InputError, match=r"a\.csv:1, field 'info': weight must be a finite number"):
        read_conceptnet(path)


@pytest.mark.parametrize("column, bad, field", [
    (2, "/c/en/dog dog", "start"),
    (2, "dog", "start"),
    (3, "/c/en/", "end"),
    (3, "/c/EN/animal", "end"),
    (1, "/r/Is-A", "relation"),
    (1, "IsA", "relation"),
])
def test_bad_uris(tmp_path: Path, column: int, bad: str, field: str) -> None:
    columns = GOOD_LINE.split("\t")
    columns[column] = bad
    path = write_lines(tmp_path / "a.csv", GOOD_LINE, "\t".join(columns))
    with pytest.raises(InputError) as caught:
        read_conceptnet(path)
    assert (caught.value.source, caught.value.line, caught.value.field) == (str(path), 2, field)
    assert repr(bad) in str(caught.value)


def test_invalid_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes(GOOD_LINE.encode() + b"\n" + GOOD_LINE.encode().replace(b"dog", b"d\xffg"))
    with pytest.raises(InputError, match=r"a\.csv:2: not valid UTF-8"):
        read_conceptnet(path)
