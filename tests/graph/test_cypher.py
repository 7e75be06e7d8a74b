import pytest

from kgmm.graph.cypher import bind_parameters, write_keywords
from kgmm.graph.errors import QueryError, ReadOnlyViolationError
from kgmm.graph.stores.embedded import EmbeddedStore

from .cypher_cases import SAME_ROW_QUERIES, WRITE_QUERIES
from .toy_kg import toy_graph


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> EmbeddedStore:
    store = EmbeddedStore(tmp_path_factory.mktemp("cypher") / "s")
    store.import_data(toy_graph())
    return store


def test_parameters_become_single_escaped_literals() -> None:
    evil = 'x"}) DETACH DELETE n //'
    bound = bind_parameters("MATCH (n {id: $id}) RETURN n", {"id": evil})
    assert bound == 'MATCH (n {id: "x\\"}) DETACH DELETE n //"}) RETURN n'
    assert write_keywords(bound) == []  # the write words sit inside one string literal
    assert bind_parameters("MATCH (n) WHERE n.x IN $v RETURN n", {"v": [1, "a", None, True]}) \
        == 'MATCH (n) WHERE n.x IN [1, "a", NULL, TRUE] RETURN n'
    assert bind_parameters("RETURN '$id' // $id", {}) == 'RETURN "$id"  '
    with pytest.raises(QueryError, match=r"\$missing"):
        bind_parameters("MATCH (n {id: $missing}) RETURN n", {})
    with pytest.raises(QueryError, match="unsupported type"):
        bind_parameters("MATCH (n {id: $x}) RETURN n", {"x": object()})


def test_injection_through_a_parameter_matches_nothing(store: EmbeddedStore) -> None:
    result = store.inspect("MATCH (n:Entity {id: $id}) RETURN n.id",
                           {"id": 'ex:dog"}) RETURN n //'})
    assert result.rows == []
    assert store.stats().entities == 17


def test_rows_values_and_column_order(store: EmbeddedStore) -> None:
    query, params = SAME_ROW_QUERIES[2]
    result = store.inspect(query, params)
    assert result.columns == ["h.id", "h.label"]
    assert result.rows == [
        {"h.id": "ex:animal", "h.label": "animal"},
        {"h.id": "ex:canine", "h.label": "canine"},
        {"h.id": "ex:dog", "h.label": "dog"},
    ]
    node = store.inspect(*SAME_ROW_QUERIES[0]).rows[0]["n"]
    assert node == {"id": "ex:dog", "label": "dog", "aliases": ["domestic dog", "Canis familiaris"],
                    "description": "a member of the genus Canis", "types": ["noun.animal"]}
    edge = store.inspect(*SAME_ROW_QUERIES[-1]).rows
    assert edge == [{"r": {"type": "antonym"}, "b.label": "cat"}]


def test_row_limit_truncates(store: EmbeddedStore) -> None:
    result = store.inspect("MATCH (n:Entity) RETURN n.id", limit=5)
    assert len(result.rows) == 5 and result.truncated
    assert not store.inspect("MATCH (n:Entity) RETURN n.id", limit=50).truncated


@pytest.mark.parametrize("query", WRITE_QUERIES)
def test_writes_are_refused_and_store_unchanged(store: EmbeddedStore, query: str) -> None:
    with pytest.raises(ReadOnlyViolationError, match="read-only"):
        store.inspect(query)
    assert store.stats().as_dict() == {"entities": 17, "relations": 5, "triples": 34}
    assert store.inspect("MATCH (n:Entity {id: 'ex:dog'}) RETURN n.label").rows == [
        {"n.label": "dog"}]


def test_unsupported_syntax_is_a_query_error(store: EmbeddedStore) -> None:
    with pytest.raises(QueryError, match="supported Cypher subset"):
        store.inspect("MATCH (n RETURN n")


def test_timeout_stops_a_runaway_query(store: EmbeddedStore) -> None:
    with pytest.raises(QueryError, match="timed out"):
        store.inspect("MATCH (a)-->(b) MATCH (c)-->(d) MATCH (e)-->(f) RETURN a.id, f.id",
                      timeout_s=0.2,
                      limit=10_000_000)


def test_snapshot_view_equals_the_public_api_view() -> None:
    import networkx as nx

    from kgmm.graph.compiled import CompiledKG
    from kgmm.graph.cypher import networkx_view, networkx_view_of_snapshot

    data = toy_graph()
    slow = networkx_view(data)
    fast = networkx_view_of_snapshot(CompiledKG.build(data))
    assert dict(fast.nodes(data=True)) == dict(slow.nodes(data=True))
    assert sorted(fast.edges(data=True), key=repr) == sorted(slow.edges(data=True), key=repr)
    assert nx.utils.graphs_equal(fast, slow)
    assert fast.number_of_edges() == 34
