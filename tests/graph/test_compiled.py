import json

import numpy as np
import pytest

from kgmm.graph.compiled import CompiledKG
from kgmm.graph.errors import SnapshotError
from kgmm.graph.model import GraphData

from .toy_kg import toy_graph


@pytest.fixture(scope="module")
def kg() -> CompiledKG:
    return CompiledKG.build(toy_graph())


def test_sizes_and_ids(kg: CompiledKG) -> None:
    assert (kg.num_nodes, kg.num_edges, kg.num_relations) == (17, 34, 5)
    ids = kg.ids_of(range(kg.num_nodes))
    assert ids == sorted(ids)
    assert kg.id_of(kg.index_of("ex:dog")) == "ex:dog"
    assert "ex:dog" in kg and "ex:wolf" not in kg
    assert kg.find_index("ex:wolf") is None
    with pytest.raises(KeyError, match="ex:wolf"):
        kg.index_of("ex:wolf")
    with pytest.raises(KeyError, match="ex:wolf"):
        kg.indices_of(["ex:dog", "ex:wolf"])
    assert kg.ids_of(kg.indices_of(["ex:cat", "ex:apple"])) == ["ex:cat", "ex:apple"]


def test_entity_round_trip(kg: CompiledKG) -> None:
    by_id = {e.id: e for e in toy_graph().entities}
    for index in range(kg.num_nodes):
        entity = kg.entity(index)
        assert entity == by_id[entity.id]
    dog = kg.index_of("ex:dog")
    assert kg.node_text(dog) == ("dog (domestic dog, Canis familiaris): a member of the "
                                 "genus Canis")


def test_csr_matches_triples_in_both_directions(kg: CompiledKG) -> None:
    expected = {(t.subject, t.relation, t.object) for t in toy_graph().triples}
    src, dst, rel = kg.edge_arrays()
    got = {(kg.id_of(s), kg.relation_ids[r], kg.id_of(d)) for s, d, r in zip(src, dst, rel,
                                                                              strict=True)}
    assert got == expected
    dog = kg.index_of("ex:dog")
    parents, rels = kg.out_edges(dog)
    assert {(kg.id_of(p), kg.relation_ids[r]) for p, r in zip(parents, rels, strict=True)} == {
        ("ex:canine", "hypernym"), ("ex:puppy", "hyponym"), ("ex:cat", "antonym")}
    children, _ = kg.in_edges(dog)
    assert {kg.id_of(c) for c in children} == {"ex:canine", "ex:puppy", "ex:cat"}
    assert kg.relation_inverse[kg.relation_index("hypernym")] == kg.relation_index("hyponym")
    assert kg.relation_inverse[kg.relation_index("antonym")] == kg.relation_index("antonym")


def test_lookup_orders_labels_before_aliases_and_folds_plurals(kg: CompiledKG) -> None:
    assert kg.ids_of(kg.lookup("Dog")) == ["ex:dog"]
    assert kg.ids_of(kg.lookup("domestic_dog")) == ["ex:dog"]
    assert kg.ids_of(kg.lookup("dogs")) == ["ex:dog"]
    assert kg.ids_of(kg.lookup("puppies")) == ["ex:puppy"]
    assert kg.ids_of(kg.lookup("automobiles")) == ["ex:car"]
    assert kg.lookup("dogs", fold_plurals=False) == []
    assert set(kg.ids_of(kg.lookup("bank"))) == {"ex:bank_river", "ex:bank_money"}
    assert kg.lookup("") == [] and kg.lookup("zebra") == []


def test_same_graph_in_any_order_gives_the_same_hash() -> None:
    data = toy_graph()
    shuffled = GraphData(data.entities[::-1], data.relations[::-1], data.triples[::-1])
    assert CompiledKG.build(shuffled).content_hash == CompiledKG.build(data).content_hash
    changed = toy_graph()
    changed.triples.pop()
    assert CompiledKG.build(changed).content_hash != CompiledKG.build(data).content_hash


def test_save_load_memory_maps_and_verifies(kg: CompiledKG, tmp_path) -> None:
    path = kg.save(tmp_path / "snap")
    loaded = CompiledKG.load(path)
    assert loaded.content_hash == kg.content_hash
    assert isinstance(loaded.array("out_dst").base, np.memmap)  # a view of the mapped file
    loaded.verify()
    assert loaded.entity(loaded.index_of("ex:car")) == kg.entity(kg.index_of("ex:car"))
    assert not list(tmp_path.glob(".*tmp"))


def test_save_to_home_and_load_by_name(kg: CompiledKG, tmp_path) -> None:
    kg.save_to_home(tmp_path, name="toy")
    assert CompiledKG.load_from_home(tmp_path, name="toy").content_hash == kg.content_hash
    with pytest.raises(SnapshotError, match="kgmm kg compile"):
        CompiledKG.load_from_home(tmp_path, name="other")


def test_corrupt_snapshots_raise_snapshot_error(kg: CompiledKG, tmp_path) -> None:
    path = kg.save(tmp_path / "snap")
    with pytest.raises(SnapshotError, match=r"no meta\.json"):
        CompiledKG.load(tmp_path)
    (path / "out_dst.npy").write_bytes((path / "out_dst.npy").read_bytes()[:60])
    with pytest.raises(SnapshotError, match="out_dst"):
        CompiledKG.load(path)
    path = kg.save(tmp_path / "snap2")
    meta = json.loads((path / "meta.json").read_text())
    meta["format_version"] = 99
    (path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(SnapshotError, match="recompile"):
        CompiledKG.load(path)
    path = kg.save(tmp_path / "snap3")
    arr = np.load(path / "out_rel.npy")
    arr[0] = (arr[0] + 1) % kg.num_relations
    np.save(path / "out_rel.npy", arr)
    with pytest.raises(SnapshotError, match="hash mismatch"):
        CompiledKG.load(path).verify()


def test_pickled_arrays_are_refused(kg: CompiledKG, tmp_path) -> None:
    path = kg.save(tmp_path / "snap")
    np.save(path / "ids.npy", np.array([object()], dtype=object), allow_pickle=True)
    with pytest.raises(SnapshotError, match="ids"):
        CompiledKG.load(path)


def test_to_graph_data_round_trips(kg: CompiledKG) -> None:
    back = kg.to_graph_data()
    data = toy_graph()
    assert sorted(back.entities, key=lambda e: e.id) == sorted(data.entities, key=lambda e: e.id)
    assert sorted(back.relations, key=lambda r: r.id) == sorted(data.relations, key=lambda r: r.id)
    assert set(back.triples) == set(data.triples) and len(back.triples) == len(data.triples)
    assert CompiledKG.build(back).content_hash == kg.content_hash
