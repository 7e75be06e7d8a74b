"""RDF source: Turtle / N-Triples / JSON-LD reading, the mapping rules, errors, round trips."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import pytest

from kgmm.graph import Entity, GraphData, InputError, Relation, SourceNotFoundError, Triple
from kgmm.graph.sources import read_rdf, read_source, write_rdf
from kgmm.graph.sources.rdf import KGMM_ID, KGMM_NS

FIXTURES = Path(__file__).parents[1] / "fixtures" / "rdf"
EX = "http://example.org/animals/"


def canonical(data: GraphData) -> tuple[list[Entity], list[Relation], list[Triple]]:
    """Entities, relations and triples sorted, for order-insensitive comparison."""
    return (sorted(data.entities, key=lambda e: e.id),
            sorted(data.relations, key=lambda r: r.id),
            sorted(data.triples, key=lambda t: (t.subject, t.relation, t.object)))


@pytest.fixture(scope="module")
def animals() -> GraphData:
    return read_rdf(FIXTURES / "animals.ttl")


def by_id(data: GraphData) -> dict[str, Entity]:
    return {entity.id: entity for entity in data.entities}


# --- mapping --------------------------------------------------------------------------------


def test_entities_are_subjects_and_objects_but_not_schema_terms(animals: GraphData) -> None:
    assert [e.id for e in animals.entities] == [
        "_:b1", "ex:Animal", "ex:Cat", "ex:Dog", "ex:dog_food", "ex:fido", "ex:fido_tail",
        "ex:whiskers",
    ]
    # not entities: the owl:Ontology header, properties (ex:hasPart, ex:eats, ex:age,
    # ex:partOf), owl:/xsd: terms, the owl:Restriction blank node and the RDF list cells,
    # and ex:Mouse (only inside the restriction)
    assert animals.stats() == {"entities": 8, "relations": 7, "triples": 7}
    assert animals.source == str(FIXTURES / "animals.ttl")


def test_labels_aliases_descriptions_types(animals: GraphData) -> None:
    entities = by_id(animals)
    assert entities["ex:Dog"] == Entity(
        "ex:Dog", "dog", aliases=("Canis familiaris", "chien", "domestic dog"),
        description="A domesticated carnivorous mammal.", types=("owl:Class",))
    # English rdfs:label wins over the French one, which becomes an alias
    whiskers = entities["ex:whiskers"]
    assert whiskers.label == "Whiskers"
    assert whiskers.aliases == ("Moustaches",)
    assert whiskers.description == "A grey tabby."
    assert whiskers.types == ("ex:Cat", "schema:Thing")
    assert entities["ex:Cat"].description == "A small domesticated feline."
    # no label in the file: the local name, "_" read as a space
    assert entities["ex:dog_food"].label == "dog food"
    assert entities["ex:fido_tail"].label == "Fido's tail"
    assert entities["_:b1"].label == "Alice"


def test_literal_properties_are_typed(animals: GraphData) -> None:
    fido = by_id(animals)["ex:fido"]
    assert fido.properties == {
        "born": "2017-03-01",           # xsd:date: lexical form
        "ex_age": 7,                    # xsd:integer; foaf:age shares the local name
        "nickname": ("Fi", "Fifi"),     # repeated values: sorted tuple of strings
        "tricks": ("sit", "roll over"),  # an RDF list: tuple in list order
        "vaccinated": True,
        "weight": 12.5,                 # xsd:decimal
    }
    assert isinstance(fido.properties["ex_age"], int)
    assert by_id(animals)["_:b1"].properties == {"foaf_age": 34}
    assert by_id(animals)["ex:whiskers"].properties == {"name": "Whiskers the cat"}


def test_relations_ids_labels_inverses(animals: GraphData) -> None:
    assert animals.relations == [
        Relation("eats", "eats"),
        Relation("ex_knows", "knows"),      # ex:knows and foaf:knows share a local name
        Relation("foaf_knows", "knows"),
        Relation("hasPart", "has part", inverse="partOf"),  # English label of the two
        Relation("owner", "owner"),
        Relation("partOf", "part of", inverse="hasPart"),   # owl:inverseOf read both ways
        Relation("subClassOf", "sub class of"),
    ]


def test_triples(animals: GraphData) -> None:
    assert animals.triples == [
        Triple("ex:Cat", "subClassOf", "ex:Animal"),  # the restriction superclass is skipped
        Triple("ex:Dog", "subClassOf", "ex:Animal"),
        Triple("ex:fido", "eats", "ex:dog_food"),
        Triple("ex:fido", "ex_knows", "ex:whiskers"),
        Triple("ex:fido", "foaf_knows", "ex:whiskers"),
        Triple("ex:fido", "hasPart", "ex:fido_tail"),
        Triple("ex:whiskers", "owner", "_:b1"),
    ]


def test_same_content_in_three_syntaxes_gives_equal_data(animals: GraphData) -> None:
    json_ld = read_rdf(FIXTURES / "animals.jsonld")
    # N-Triples declares no prefixes: pass the one the Turtle file declares
    ntriples = read_rdf(FIXTURES / "animals.nt", prefixes={"ex": EX})
    assert canonical(json_ld) == canonical(animals)
    assert canonical(ntriples) == canonical(animals)


def test_without_prefixes_ids_are_full_iris_and_blank_nodes_numbered() -> None:
    data = read_rdf(FIXTURES / "animals.nt")
    ids = [e.id for e in data.entities]
    assert ids[0] == "_:b1"
    assert EX + "fido" in ids
    assert Triple(EX + "fido", "ex_knows", EX + "whiskers") not in data.triples
    # ex:knows has no prefix now: it keeps the bare local name, foaf:knows is qualified
    assert [r.id for r in data.relations] == [
        "eats", "foaf_knows", "hasPart", "knows", "owner", "partOf", "subClassOf"]
    assert by_id(data)[EX + "fido"].properties["age"] == 7


def test_blank_node_ids_do_not_depend_on_the_labels_in_the_file(tmp_path: Path) -> None:
    template = ("@prefix ex: <http://example.org/> .\n"
                "ex:a ex:r _:{0} . ex:a ex:r _:{1} .\n"
                '_:{0} ex:name "zed" . _:{1} ex:name "amy" .\n')
    first, second = tmp_path / "one.ttl", tmp_path / "two.ttl"
    first.write_text(template.format("x", "y"))
    second.write_text(template.format("q", "p"))
    assert canonical(read_rdf(first)) == canonical(read_rdf(second))
    assert [e.id for e in read_rdf(first).entities] == ["_:b1", "_:b2", "ex:a"]


def test_blank_nodes_told_apart_by_their_neighbours(tmp_path: Path) -> None:
    forward = ('@prefix ex: <http://example.org/> .\n'
               'ex:a ex:r [ ex:s [ ex:name "p" ] ] .\nex:a ex:r [ ex:s [ ex:name "q" ] ] .\n')
    backward = ('@prefix ex: <http://example.org/> .\n'
                'ex:a ex:r _:z1 . _:z1 ex:s _:z2 . _:z2 ex:name "q" .\n'
                'ex:a ex:r _:y1 . _:y1 ex:s _:y2 . _:y2 ex:name "p" .\n')
    (tmp_path / "f.ttl").write_text(forward)
    (tmp_path / "b.ttl").write_text(backward)
    first, second = read_rdf(tmp_path / "f.ttl"), read_rdf(tmp_path / "b.ttl")
    assert canonical(first) == canonical(second)
    assert len(first.entities) == 5
    assert sum(1 for t in first.triples if t.relation == "s") == 2


def test_languages_option_prefers_and_filters(tmp_path: Path) -> None:
    path = tmp_path / "labels.ttl"
    path.write_text('@prefix ex: <http://example.org/> .\n'
                    '@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .\n'
                    'ex:dog rdfs:label "dog"@en , "chien"@fr , "Hund"@de , "doggo" ;\n'
                    '    rdfs:comment "a dog"@en , "un chien"@fr-CA .\n')
    default = by_id(read_rdf(path))["ex:dog"]
    assert (default.label, default.aliases, default.description) == (
        "dog", ("Hund", "chien", "doggo"), "a dog")
    french = by_id(read_rdf(path, languages=["fr"]))["ex:dog"]
    assert (french.label, french.aliases, french.description) == (
        "chien", ("doggo",), "un chien")


def test_relation_ids_are_sanitized_and_prefix_qualified(tmp_path: Path) -> None:
    path = tmp_path / "names.ttl"
    path.write_text('@prefix a: <http://a.example/> .\n@prefix b: <http://b.example/> .\n'
                    'a:x a:part-of a:y ; b:part-of a:y ; <http://a.example/2nd> a:y .\n'
                    'a:y <urn:x:label> "why" .\n')
    data = read_rdf(path)
    assert [r.id for r in data.relations] == ["_2nd", "a_part_of", "b_part_of"]
    assert [r.label for r in data.relations] == ["2nd", "part of", "part of"]
    # a property named like a reserved entity field is qualified (no prefix: numbered)
    assert by_id(data)["a:y"].properties == {"label_2": "why"}


def test_symmetric_property_is_its_own_inverse(tmp_path: Path) -> None:
    path = tmp_path / "sym.ttl"
    path.write_text('@prefix ex: <http://example.org/> .\n'
                    '@prefix owl: <http://www.w3.org/2002/07/owl#> .\n'
                    'ex:near a owl:SymmetricProperty .\nex:a ex:near ex:b .\n')
    assert read_rdf(path).relations == [Relation("near", "near", inverse="near")]


def test_gzipped_turtle_and_dispatcher(tmp_path: Path, animals: GraphData) -> None:
    packed = tmp_path / "animals.ttl.gz"
    packed.write_bytes(gzip.compress((FIXTURES / "animals.ttl").read_bytes()))
    assert canonical(read_rdf(packed)) == canonical(animals)
    assert canonical(read_source(FIXTURES / "animals.jsonld")) == canonical(animals)
    assert canonical(read_source(packed, kind="rdf")) == canonical(animals)


# --- errors ---------------------------------------------------------------------------------


def test_malformed_turtle_names_file_and_line() -> None:
    path = FIXTURES / "malformed.ttl"
    with pytest.raises(InputError) as caught:
        read_rdf(path)
    error = caught.value
    assert error.source == str(path)
    assert error.line == 8  # after a multi-line literal on lines 5-6
    assert str(error).startswith(f"{path}:8: invalid Turtle: expected '.'")
    assert "ex:cat rdfs:label" in str(error)


def test_malformed_ntriples_names_file_and_line() -> None:
    path = FIXTURES / "malformed.nt"
    with pytest.raises(InputError) as caught:
        read_rdf(path)
    assert caught.value.line == 4
    assert str(caught.value).startswith(f"{path}:4: invalid N-Triples")
    assert '"mouse .' in str(caught.value)


def test_malformed_json_ld_names_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonld"
    path.write_text('{\n  "@id": "http://example.org/a",\n  "http://example.org/b": [\n}\n')
    with pytest.raises(InputError, match=r"bad\.jsonld:4: invalid JSON-LD") as caught:
        read_rdf(path)
    assert caught.value.line == 4


def test_unknown_format_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot tell the RDF format"):
        read_rdf(FIXTURES.parent / "tsv" / "triples.tsv")
    with pytest.raises(InputError, match="unknown RDF format 'yaml'"):
        read_rdf(FIXTURES / "animals.ttl", format="yaml")
    with pytest.raises(SourceNotFoundError):
        read_rdf(tmp_path / "absent.ttl")


def test_two_iris_on_one_id_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "clash.ttl"
    path.write_text(f'@prefix ex: <http://example.org/> .\n'
                    f'ex:dog ex:likes <{KGMM_ID}ex:dog> .\n')
    with pytest.raises(InputError, match="both map to entity id 'ex:dog'"):
        read_rdf(path)


# --- writing and round trips ----------------------------------------------------------------


def sample(*, xml: bool = False) -> GraphData:
    """Graph data exercising ids, aliases, inverses and every property type."""
    odd_key = {} if xml else {"sense key": "dog%1:05:00::"}  # not an XML name
    return GraphData(
        entities=[
            Entity("wn:dog.n.01", "dog", aliases=("Canis familiaris", "domestic dog"),
                   description="a member of the genus Canis", types=("noun.animal",),
                   properties={"offset": "02084071", "lemmas": ("dog", "domestic_dog"),
                               "one": ("only",), "none": (), "senses": 7, "freq": 0.25,
                               "common": True, **odd_key}),
            Entity("wn:canine.n.02", "canine", types=("noun.animal", "owl:Class")),
            Entity("cn:/c/en/dog", "dog", properties={"language": "en"}),
            Entity("odd id, with spaces & 100%", "odd"),
            Entity("https://example.org/cat", "cat"),
            Entity("_:b9", "anonymous"),
            Entity("owl:Thing", "thing"),
        ],
        relations=[
            Relation("hypernym", "hypernym", inverse="hyponym"),
            Relation("hyponym", "hyponym", inverse="hypernym"),
            Relation("RelatedTo", "related to", inverse="RelatedTo"),
            Relation("unused", "never used"),
        ],
        triples=[
            Triple("wn:dog.n.01", "hypernym", "wn:canine.n.02"),
            Triple("wn:canine.n.02", "hyponym", "wn:dog.n.01"),
            Triple("wn:dog.n.01", "RelatedTo", "cn:/c/en/dog"),
            Triple("odd id, with spaces & 100%", "RelatedTo", "_:b9"),
            Triple("owl:Thing", "hyponym", "https://example.org/cat"),
        ],
    ).validate()


@pytest.mark.parametrize("fmt, suffix", [("turtle", ".ttl"), ("nt", ".nt"),
                                         ("json-ld", ".jsonld"), ("xml", ".rdf"), ("n3", ".n3")])
def test_write_then_read_round_trips(tmp_path: Path, fmt: str, suffix: str) -> None:
    data = sample(xml=fmt == "xml")
    path = write_rdf(data, tmp_path / f"out{suffix}", format=fmt)
    assert path == tmp_path / f"out{suffix}"
    assert canonical(read_rdf(path)) == canonical(data)


def test_rdf_xml_refuses_property_names_that_are_not_xml_names(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"property 'sense key' of entity 'wn:dog\.n\.01'"):
        write_rdf(sample(), tmp_path / "out.rdf", format="xml")
    assert list(tmp_path.iterdir()) == []


def test_round_trip_of_a_read_file_with_prefixes(tmp_path: Path, animals: GraphData) -> None:
    prefixes = {"ex": EX}
    turtle = write_rdf(animals, tmp_path / "animals.ttl", prefixes=prefixes)
    text = turtle.read_text()
    assert f"@prefix ex: <{EX}> ." in text
    assert "ex:fido a ex:Dog" in text
    assert canonical(read_rdf(turtle)) == canonical(animals)
    ntriples = write_rdf(animals, tmp_path / "animals.nt", format="nt", prefixes=prefixes)
    assert f"<{EX}fido>" in ntriples.read_text()
    assert canonical(read_rdf(ntriples, prefixes=prefixes)) == canonical(animals)


def test_written_vocabulary(tmp_path: Path) -> None:
    import rdflib
    from rdflib.namespace import DCTERMS, OWL, RDF, RDFS, SKOS

    path = write_rdf(sample(), tmp_path / "out.nt", format="nt")
    graph = rdflib.Graph().parse(path, format="nt")
    dog = rdflib.URIRef(KGMM_ID + "wn:dog.n.01")
    kgmm = rdflib.Namespace(KGMM_NS)
    assert (dog, RDFS.label, rdflib.Literal("dog")) in graph
    assert (dog, SKOS.altLabel, rdflib.Literal("domestic dog")) in graph
    assert (dog, DCTERMS.description, rdflib.Literal("a member of the genus Canis")) in graph
    assert (dog, RDF.type, rdflib.URIRef(KGMM_ID + "noun.animal")) in graph
    assert (dog, kgmm.hypernym, rdflib.URIRef(KGMM_ID + "wn:canine.n.02")) in graph
    assert (dog, kgmm.senses, rdflib.Literal(7)) in graph
    assert (kgmm.hypernym, OWL.inverseOf, kgmm.hyponym) in graph
    assert (kgmm.hypernym, RDF.type, OWL.ObjectProperty) in graph
    canine = rdflib.URIRef(KGMM_ID + "wn:canine.n.02")
    assert (canine, RDF.type, OWL.Class) in graph  # known prefixes expand
    assert (rdflib.URIRef("https://example.org/cat"), RDFS.label, rdflib.Literal("cat")) in graph


def test_standard_prefixes_cannot_be_rebound(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="prefix 'owl' is reserved"):
        write_rdf(sample(), tmp_path / "x.ttl", prefixes={"owl": "http://example.org/owl#"})


def test_aliases_come_back_sorted(tmp_path: Path) -> None:
    data = GraphData([Entity("x", "x", aliases=("b", "a"))], [], [])
    back = read_rdf(write_rdf(data, tmp_path / "x.ttl"))
    assert back.entities == [Entity("x", "x", aliases=("a", "b"))]


def test_write_is_atomic_and_gzip_aware(tmp_path: Path) -> None:
    path = write_rdf(sample(), tmp_path / "out.ttl.gz")
    assert gzip.decompress(path.read_bytes()).startswith(b"@prefix")
    assert canonical(read_rdf(path)) == canonical(sample())
    assert [p.name for p in tmp_path.iterdir()] == ["out.ttl.gz"]


def test_import_does_not_load_rdflib() -> None:
    code = ("import sys, kgmm.graph.sources; "
            "print('rdflib' in sys.modules, 'kgmm.graph.sources.wordnet' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.split() == ["False", "False"]
