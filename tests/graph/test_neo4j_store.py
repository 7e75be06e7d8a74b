"""The Neo4j store against a real Neo4j 5 server (started by the session fixture)."""

import pytest

from kgmm.graph.compiled import CompiledKG
from kgmm.graph.errors import (
    InputError,
    QueryError,
    ReadOnlyViolationError,
    StoreAuthError,
    StoreError,
    StoreUnavailableError,
)
from kgmm.graph.model import Entity, GraphData, Triple
from kgmm.graph.stores.embedded import EmbeddedStore
from kgmm.graph.stores.neo4j_store import Neo4jStore

from .cypher_cases import SAME_ROW_QUERIES, WRITE_QUERIES
from .toy_kg import toy_graph

pytestmark = pytest.mark.neo4j


@pytest.fixture
def store(neo4j_clean_db):
    s = Neo4jStore(neo4j_clean_db.uri, neo4j_clean_db.user, neo4j_clean_db.password,
                   batch_size=7)  # small batches: several transactions per step
    yield s
    s.close()


@pytest.fixture
def loaded(store):
    store.import_data(toy_graph())
    return store


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    s = EmbeddedStore(tmp_path_factory.mktemp("emb") / "s")
    s.import_data(toy_graph())
    return s


def test_import_counts_schema_and_idempotence(store) -> None:
    report = store.import_data(toy_graph())
    assert (report.entities_added, report.relations_added, report.triples_added) == (17, 5, 34)
    assert store.stats().as_dict() == {"entities": 17, "relations": 5, "triples": 34}
    again = store.import_data(toy_graph())
    assert (again.entities_added, again.entities_updated, again.triples_added) == (0, 0, 0)
    assert store.stats().as_dict() == {"entities": 17, "relations": 5, "triples": 34}
    with store._session(read=True) as session:
        constraints = {r["name"] for r in session.run("SHOW CONSTRAINTS YIELD name")}
        indexes = {r["name"] for r in session.run("SHOW INDEXES YIELD name")}
    assert {"kgmm_entity_id", "kgmm_relation_id"} <= constraints
    assert "kgmm_entity_label" in indexes


def test_both_backends_compile_to_the_same_snapshot(loaded, embedded) -> None:
    assert CompiledKG.from_store(loaded).content_hash == \
        CompiledKG.from_store(embedded).content_hash


def test_update_replaces_changed_entity(loaded) -> None:
    data = toy_graph()
    dog = next(e for e in data.entities if e.id == "ex:dog")
    changed = Entity(dog.id, dog.label, ("doggo",), "changed", dog.types, {"rank": 7})
    report = loaded.import_data(GraphData([changed, Entity("ex:wolf", "wolf")], data.relations,
                                          [Triple("ex:wolf", "hypernym", "ex:dog")]))
    assert (report.entities_added, report.entities_updated, report.triples_added) == (1, 1, 1)
    exported = {e.id: e for e in loaded.export().entities}
    assert exported["ex:dog"] == changed


@pytest.mark.parametrize(("query", "params"), SAME_ROW_QUERIES)
def test_same_rows_as_embedded_store(loaded, embedded, query, params) -> None:
    neo = loaded.inspect(query, params)
    emb = embedded.inspect(query, params)
    assert neo.columns == emb.columns
    if "ORDER BY" in query:
        assert neo.rows == emb.rows
    else:
        key = lambda row: repr(sorted(row.items()))  # noqa: E731
        assert sorted(neo.rows, key=key) == sorted(emb.rows, key=key)
    assert neo.rows  # every case returns something


@pytest.mark.parametrize("query", WRITE_QUERIES)
def test_writes_are_refused_and_store_unchanged(loaded, query) -> None:
    before = CompiledKG.from_store(loaded).content_hash
    with pytest.raises(ReadOnlyViolationError, match="read-only"):
        loaded.inspect(query)
    assert CompiledKG.from_store(loaded).content_hash == before
    with loaded._session(read=True) as session:
        assert session.run("MATCH (n:Hacked) RETURN count(n) AS c").single()["c"] == 0


def test_profile_is_refused_and_reads_still_run(loaded) -> None:
    """PROFILE would execute the query; kgmm adds EXPLAIN itself and refuses both."""
    with pytest.raises(ReadOnlyViolationError):
        loaded.inspect("PROFILE MATCH (n) RETURN n")
    result = loaded.inspect("MATCH (n:Entity) WHERE n.label = $l RETURN n.id", {"l": "dog"})
    assert result.rows == [{"n.id": "ex:dog"}]


def test_row_limit_and_bad_syntax(loaded) -> None:
    result = loaded.inspect("MATCH (n:Entity) RETURN n.id", limit=5)
    assert len(result.rows) == 5 and result.truncated
    with pytest.raises(QueryError, match="syntax"):
        loaded.inspect("MATCH (n RETURN n")


def test_invalid_input_writes_nothing(store) -> None:
    bad = toy_graph()
    bad.triples.append(Triple("ex:dog", "hypernym", "ex:nowhere"))
    with pytest.raises(InputError, match="ex:nowhere"):
        store.import_data(bad)
    assert store.stats().as_dict() == {"entities": 0, "relations": 0, "triples": 0}


def test_failure_half_way_is_cleaned_up(loaded, monkeypatch) -> None:
    """Fault injection: the connection 'drops' after some triples were written."""
    before = CompiledKG.from_store(loaded).content_hash
    original = Neo4jStore._merge_edges

    def fail_after_writing(self, triples, run, progress, existed):
        original(self, triples[:3], run, progress, existed)  # real writes reach the server
        raise ConnectionResetError("connection lost (injected)")

    monkeypatch.setattr(Neo4jStore, "_merge_edges", fail_after_writing)
    extra = toy_graph("more:")
    with pytest.raises(StoreUnavailableError, match="connection lost"):
        loaded.import_data(extra)
    monkeypatch.undo()
    assert loaded.stats().as_dict() == {"entities": 17, "relations": 5, "triples": 34}
    assert CompiledKG.from_store(loaded).content_hash == before


def test_wrong_password_and_server_down(neo4j_server) -> None:
    with pytest.raises(StoreAuthError, match="wrong password"):
        Neo4jStore(neo4j_server.uri, neo4j_server.user, "not-the-password")
    with pytest.raises(StoreUnavailableError, match=r"cannot reach Neo4j at bolt://127\.0\.0\.1:9"):
        Neo4jStore("bolt://127.0.0.1:9", "neo4j", "x", connection_timeout_s=1,
                   max_retry_time_s=0)
    assert issubclass(StoreAuthError, StoreError)


def test_settings_from_environment(neo4j_server, monkeypatch) -> None:
    monkeypatch.setenv("KGMM_NEO4J_URI", neo4j_server.uri)
    monkeypatch.setenv("KGMM_NEO4J_USER", neo4j_server.user)
    monkeypatch.setenv("KGMM_NEO4J_PASSWORD", neo4j_server.password)
    with Neo4jStore() as store:
        assert store.uri == neo4j_server.uri
        store.stats()
