import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch_geometric.utils import k_hop_subgraph, to_undirected

from kgmm.graph.compiled import CompiledKG
from kgmm.graph.model import Entity, GraphData, Relation, Triple

from .toy_kg import toy_graph


@pytest.fixture(scope="module")
def kg() -> CompiledKG:
    return CompiledKG.build(toy_graph())


def _ids(kg: CompiledKG, data) -> set[str]:
    return set(kg.ids_of(data.n_id.tolist()))


def test_one_hop_reaches_both_directions(kg: CompiledKG) -> None:
    data = kg.subgraph(["ex:dog"], hops=1)
    assert _ids(kg, data) == {"ex:dog", "ex:canine", "ex:puppy", "ex:cat"}
    assert data.seed_mask.sum().item() == 1
    assert kg.id_of(data.n_id[data.seed_mask].item()) == "ex:dog"
    n_id = data.n_id.tolist()
    edges = {(kg.id_of(n_id[s]), kg.relation_ids[r], kg.id_of(n_id[d]))
             for (s, d), r in zip(data.edge_index.t().tolist(), data.edge_type.tolist(),
                                  strict=True)}
    assert ("ex:dog", "hypernym", "ex:canine") in edges
    assert ("ex:canine", "hyponym", "ex:dog") in edges
    assert ("ex:puppy", "hypernym", "ex:dog") in edges
    assert len(edges) == data.edge_index.shape[1]  # no duplicate edges


def test_hops_and_hop_distances(kg: CompiledKG) -> None:
    data = kg.subgraph(["ex:dog"], hops=2)
    hop = dict(zip(kg.ids_of(data.n_id.tolist()), data.hop.tolist(), strict=True))
    assert hop["ex:dog"] == 0 and hop["ex:canine"] == 1 and hop["ex:animal"] == 2
    assert "ex:organism" not in hop
    assert data.n_id.tolist() == sorted(data.n_id.tolist())


def test_relation_filter_and_max_nodes(kg: CompiledKG) -> None:
    data = kg.subgraph(["ex:dog"], hops=3, relations=["hypernym"])
    assert _ids(kg, data) == {"ex:dog", "ex:canine", "ex:animal", "ex:organism", "ex:puppy",
                              "ex:cat"}  # cat: animal <-hypernym- cat at hop 3
    assert set(data.edge_type.tolist()) == {kg.relation_index("hypernym")}
    capped = kg.subgraph(["ex:dog"], hops=3, max_nodes=3)
    assert capped.num_nodes == 3 and capped.seed_mask.any()
    assert int(capped.edge_index.max()) < 3


def test_fanout_caps_and_is_deterministic(kg: CompiledKG) -> None:
    full = kg.subgraph(["ex:entity"], hops=1)
    capped = kg.subgraph(["ex:entity"], hops=1, fanout=3)
    assert full.num_nodes == 1 + 6  # organism, fruit, vehicle, wheel and the two banks
    assert capped.num_nodes <= 1 + 3
    again = kg.subgraph(["ex:entity"], hops=1, fanout=3)
    assert torch.equal(capped.n_id, again.n_id) and torch.equal(capped.edge_index,
                                                                again.edge_index)
    with pytest.raises(ValueError, match="entries for 2 hops"):
        kg.subgraph(["ex:dog"], hops=2, fanout=[3])
    with pytest.raises(ValueError, match="≥ 1"):
        kg.subgraph(["ex:dog"], hops=1, fanout=0)


def test_unknown_seeds_are_named(kg: CompiledKG) -> None:
    with pytest.raises(KeyError, match="ex:unicorn"):
        kg.subgraph(["ex:unicorn"])
    with pytest.raises(IndexError):
        kg.subgraph([999])


@st.composite
def random_graphs(draw):
    n = draw(st.integers(2, 40))
    edges = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, 2),
                                    st.integers(0, n - 1)), max_size=120))
    seeds = draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=4))
    hops = draw(st.integers(1, 3))
    return n, edges, seeds, hops


@settings(max_examples=60, deadline=None)
@given(random_graphs())
def test_same_node_sets_as_pyg_k_hop_subgraph(case) -> None:
    n, edges, seeds, hops = case
    entities = [Entity(f"n{i:03d}", f"node {i}") for i in range(n)]
    relations = [Relation(f"r{k}", f"r{k}") for k in range(3)]
    triples = [Triple(f"n{s:03d}", f"r{r}", f"n{d:03d}") for s, r, d in edges]
    kg = CompiledKG.build(GraphData(entities, relations, triples))
    data = kg.subgraph(seeds, hops=hops)
    edge_index = torch.tensor([[s for s, _, _ in edges], [d for _, _, d in edges]],
                              dtype=torch.long).reshape(2, -1)
    subset, _, _, _ = k_hop_subgraph(torch.tensor(seeds), hops,
                                     to_undirected(edge_index, num_nodes=n), num_nodes=n)
    assert set(data.n_id.tolist()) == set(subset.tolist())
    # every returned edge is a real edge with its stored relation
    real = {(s, r, d) for s, r, d in edges}
    n_id = data.n_id.tolist()
    for (s, d), r in zip(data.edge_index.t().tolist(), data.edge_type.tolist(), strict=True):
        assert (n_id[s], r, n_id[d]) in real
    # fan-out bounds the size: each expanded node adds at most `cap` neighbours
    capped = kg.subgraph(seeds, hops=hops, fanout=2)
    assert set(capped.n_id.tolist()) <= set(data.n_id.tolist())
    assert capped.num_nodes <= len(set(seeds)) * sum(3 ** h for h in range(hops + 1))
    assert np.isin(np.unique(seeds), capped.n_id.numpy()).all()
