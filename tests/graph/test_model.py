import pytest

from kgmm.graph.errors import InputError
from kgmm.graph.model import Entity, GraphData, Relation, Triple

from .toy_kg import toy_graph


def test_toy_graph_is_valid() -> None:
    data = toy_graph().validate()
    assert data.stats() == {"entities": 17, "relations": 5, "triples": 34}


@pytest.mark.parametrize(
    ("data", "field", "needle"),
    [
        (GraphData([Entity("", "x")], [], []), "id", "empty or padded"),
        (GraphData([Entity("a", "")], [], []), "label", "no label"),
        (GraphData([Entity("a", "x", properties={"label": "y"})], [], []), "properties",
         "reserved"),
        (GraphData([Entity("a", "x"), Entity("a", "y")], [], []), "id", "defined twice"),
        (GraphData([Entity("a", "x")], [Relation("is a", "is a")], []), "id", "must match"),
        (GraphData([Entity("a", "x")], [Relation("r", "r")], [Triple("a", "r", "b")]), "object",
         "unknown entity 'b'"),
        (GraphData([Entity("a", "x")], [], [Triple("a", "r", "a")]), "relation", "undeclared"),
    ],
)
def test_validate_names_record_and_field(data: GraphData, field: str, needle: str) -> None:
    data.source = "mine.tsv"
    with pytest.raises(InputError) as info:
        data.validate()
    assert info.value.field == field
    assert needle in str(info.value)
    assert str(info.value).startswith("mine.tsv")


def test_duplicates_are_not_errors_and_are_removed() -> None:
    data = toy_graph()
    doubled = GraphData(data.entities * 2, data.relations * 2, data.triples * 2)
    assert doubled.validate().deduplicated().stats() == data.stats()
