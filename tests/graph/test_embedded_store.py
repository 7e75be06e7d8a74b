import dataclasses
import threading

import pytest
from rdflib import SKOS

from kgmm.graph.compiled import CompiledKG
from kgmm.graph.errors import InputError, StoreError
from kgmm.graph.model import Entity, GraphData, Triple
from kgmm.graph.stores.embedded import EmbeddedStore

from .toy_kg import toy_graph


def _sorted(data: GraphData):
    return (sorted(data.entities, key=lambda e: e.id), sorted(data.relations, key=lambda r: r.id),
            sorted(data.triples, key=lambda t: (t.subject, t.relation, t.object)))


def test_empty_store(tmp_path) -> None:
    store = EmbeddedStore(tmp_path / "s")
    assert store.stats().as_dict() == {"entities": 0, "relations": 0, "triples": 0}
    assert store.export().stats()["entities"] == 0
    with pytest.raises(StoreError, match="empty"):
        store.rdflib_graph()


def test_import_export_round_trip_and_reopen(tmp_path) -> None:
    data = toy_graph()
    store = EmbeddedStore(tmp_path / "s")
    report = store.import_data(data)
    assert (report.entities_added, report.relations_added, report.triples_added) == (17, 5, 34)
    assert _sorted(store.export()) == _sorted(data)
    store.close()
    reopened = EmbeddedStore(tmp_path / "s")  # persisted: no re-import
    assert reopened.stats().as_dict() == {"entities": 17, "relations": 5, "triples": 34}
    assert _sorted(reopened.export()) == _sorted(data)


def test_store_lives_under_kgmm_home(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("KGMM_HOME", str(tmp_path / "home"))
    store = EmbeddedStore()
    store.import_data(toy_graph())
    assert (tmp_path / "home" / "stores" / "default" / "CURRENT").exists()
    explicit = EmbeddedStore(data_dir=tmp_path / "other")
    assert explicit.root == tmp_path / "other" / "stores" / "default"


def test_import_twice_is_idempotent(tmp_path) -> None:
    store = EmbeddedStore(tmp_path / "s")
    store.import_data(toy_graph())
    first = CompiledKG.from_store(store).content_hash
    report = store.import_data(toy_graph())
    assert (report.entities_added, report.entities_updated, report.triples_added) == (0, 0, 0)
    assert CompiledKG.from_store(store).content_hash == first
    assert len(list((tmp_path / "s").glob("gen-*"))) == 1


def test_reimport_replaces_changed_entities_and_adds_new_data(tmp_path) -> None:
    store = EmbeddedStore(tmp_path / "s")
    store.import_data(toy_graph())
    data = toy_graph()
    dog = next(e for e in data.entities if e.id == "ex:dog")
    new_dog = dataclasses.replace(dog, aliases=("doggo",), description="changed")
    extra = GraphData([new_dog, Entity("ex:wolf", "wolf")], data.relations,
                      [Triple("ex:wolf", "hypernym", "ex:dog")])
    report = store.import_data(extra)
    assert (report.entities_added, report.entities_updated, report.triples_added) == (1, 1, 1)
    exported = {e.id: e for e in store.export().entities}
    assert exported["ex:dog"] == new_dog
    assert store.stats().as_dict() == {"entities": 18, "relations": 5, "triples": 35}
    labels = {str(o) for o in store.rdflib_graph().objects(predicate=SKOS.altLabel)}
    assert "doggo" in labels and "domestic dog" not in labels


def test_invalid_input_leaves_store_unchanged(tmp_path) -> None:
    store = EmbeddedStore(tmp_path / "s")
    store.import_data(toy_graph())
    before = CompiledKG.from_store(store).content_hash
    bad = toy_graph()
    bad.triples.append(Triple("ex:dog", "hypernym", "ex:nowhere"))
    with pytest.raises(InputError, match="ex:nowhere"):
        store.import_data(bad)
    assert CompiledKG.from_store(store).content_hash == before


def test_failure_half_way_leaves_store_unchanged(tmp_path, monkeypatch) -> None:
    """Fault injection: the bulk load dies after the copy was made; the swap never happens."""
    import pyoxigraph

    store = EmbeddedStore(tmp_path / "s")
    store.import_data(toy_graph())
    before = CompiledKG.from_store(store).content_hash
    generation = store.generation

    def explode(self, *args, **kwargs):
        raise OSError("disk full (injected)")

    monkeypatch.setattr(pyoxigraph.Store, "bulk_load", explode)
    extra = GraphData([Entity("ex:wolf", "wolf")], [], [])
    with pytest.raises(StoreError, match="store unchanged: disk full"):
        store.import_data(extra)
    monkeypatch.undo()
    assert store.generation == generation
    assert CompiledKG.from_store(EmbeddedStore(tmp_path / "s")).content_hash == before
    assert [p.name for p in (tmp_path / "s").glob("gen-*")] == [generation]


def test_concurrent_import_is_refused(tmp_path) -> None:
    import fcntl

    store = EmbeddedStore(tmp_path / "s")
    (tmp_path / "s").mkdir()
    with open(tmp_path / "s" / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        errors: list[Exception] = []

        def run() -> None:
            try:
                store.import_data(toy_graph())
            except StoreError as exc:
                errors.append(exc)

        thread = threading.Thread(target=run)
        thread.start()
        thread.join()
    assert errors and "another import" in str(errors[0])
    assert store.stats().entities == 0


def test_rdf_database_and_kept_snapshot_agree_after_updates(tmp_path) -> None:
    store = EmbeddedStore(tmp_path / "s")
    store.import_data(toy_graph())
    data = toy_graph()
    cat = next(e for e in data.entities if e.id == "ex:cat")
    store.import_data(GraphData([dataclasses.replace(cat, label="kitty"),
                                 Entity("ex:lion", "lion")], data.relations,
                                [Triple("ex:lion", "hypernym", "ex:cat")]))
    store.check()  # rebuilds from SPARQL reads and compares content hashes
    assert store.rdf_stats() == store.stats()
    assert CompiledKG.from_store(store).content_hash == CompiledKG.build(
        store.export()).content_hash
    labels = store.rdflib_graph().query(
        "SELECT ?l WHERE { <https://kgmm.dev/entity/ex:cat> "
        "<http://www.w3.org/2000/01/rdf-schema#label> ?l }")
    assert [str(row[0]) for row in labels] == ["kitty"]
