import pytest
import torch
from torch_geometric.data import Data

from kgmm.reasoning.evidence import extract_evidence, graph_evidence, graph_slice
from kgmm.reasoning.kg_reasoner import make_reasoner_batch, predict

from .test_kg_reasoner import trained_reasoner

# 0 is the seed, 3 the answer; three routes 0-1-3, 0-2-3 and the direct edge 0-3
EDGES = torch.tensor([[0, 1, 0, 2, 3, 0], [1, 3, 2, 3, 4, 3]])
TYPES = torch.tensor([0, 1, 0, 2, 0, 1])


def _data(edge_index: torch.Tensor = EDGES, edge_type: torch.Tensor = TYPES,
          n: int = 5, seeds: tuple[int, ...] = (0,)) -> Data:
    mask = torch.zeros(n, dtype=torch.bool)
    mask[list(seeds)] = True
    return Data(edge_index=edge_index, edge_type=edge_type, num_nodes=n, seed_mask=mask)


def test_k_best_paths_in_score_order() -> None:
    scores = torch.tensor([0.9, 0.8, 0.5, 0.9, 0.7, 0.3])
    ev = extract_evidence(_data(), [scores], torch.tensor([0.1, 0.2, 0.0, 0.9, 0.3]), 3,
                          mode="max")
    assert [p.nodes for p in ev.paths] == [[0, 1, 3], [0, 2, 3], [0, 3]]
    assert [p.edges for p in ev.paths] == [[0, 1], [2, 3], [5]]
    assert [p.relations for p in ev.paths] == [[0, 1], [0, 2], [1]]
    assert [p.score for p in ev.paths] == pytest.approx([0.72, 0.45, 0.3])
    assert ev.paths[0].reversed == [False, False]
    assert ev.top_nodes[:3] == [(3, pytest.approx(0.9)), (4, pytest.approx(0.3)),
                                (1, pytest.approx(0.2))]
    assert ev.answer_node == 3
    assert [p.nodes for p in extract_evidence(_data(), [scores], torch.zeros(5), 3, k_paths=1,
                                              mode="max").paths] == [[0, 1, 3]]
    short = extract_evidence(_data(), [scores], torch.zeros(5), 3, max_len=1, mode="max")
    assert [p.nodes for p in short.paths] == [[0, 3]]


def test_aligned_mode_scores_step_t_with_layer_t() -> None:
    layer1 = torch.tensor([0.9, 0.1, 0.2, 0.1, 0.1, 0.1])  # hop 1 prefers 0→1
    layer2 = torch.tensor([0.1, 0.1, 0.1, 0.9, 0.1, 0.1])  # hop 2 prefers 2→3
    aligned = extract_evidence(_data(), [layer1, layer2], torch.zeros(5), 3)
    # 0-2-3: 0.2·0.9 = 0.18 > 0-3: 0.1 (one hop, layer 1) > 0-1-3: 0.9·0.1 = 0.09
    assert [p.nodes for p in aligned.paths] == [[0, 2, 3], [0, 3], [0, 1, 3]]
    assert [p.score for p in aligned.paths] == pytest.approx([0.18, 0.1, 0.09])
    # a path whose edges score high only in the wrong order: "max" takes it, "aligned" not
    l1 = torch.tensor([0.1, 0.9, 0.9, 0.1, 0.1, 0.05])  # 1→3 high at hop 1 (too early)
    l2 = torch.tensor([0.9, 0.1, 0.1, 0.1, 0.1, 0.05])  # 0→1 high at hop 2 (too late)
    best_max = extract_evidence(_data(), [l1, l2], torch.zeros(5), 3, mode="max").paths[0]
    assert best_max.nodes == [0, 1, 3] and best_max.score == pytest.approx(0.81)
    best_aligned = extract_evidence(_data(), [l1, l2], torch.zeros(5), 3).paths[0]
    assert best_aligned.nodes == [0, 2, 3] and best_aligned.score == pytest.approx(0.09)
    # aligned paths are never longer than the number of layers
    one_layer = extract_evidence(_data(), [layer1], torch.zeros(5), 3)
    assert [p.nodes for p in one_layer.paths] == [[0, 3]]


def test_reverse_scores_walk_edges_backwards() -> None:
    data = _data(torch.tensor([[0, 1], [1, 2]]), torch.tensor([0, 0]), n=3, seeds=(2,))
    forward_only = torch.tensor([0.9, 0.9])
    assert extract_evidence(data, [forward_only], torch.zeros(3), 0, mode="max").paths == []
    both = torch.tensor([0.9, 0.9, 0.5, 0.6])  # entries 2, 3: edges 0, 1 reversed
    ev = extract_evidence(data, [both, both], torch.zeros(3), 0)
    (path,) = ev.paths
    assert path.nodes == [2, 1, 0] and path.edges == [1, 0] and path.relations == [0, 0]
    assert path.reversed == [True, True] and path.score == pytest.approx(0.3)


def test_parallel_edges_keep_the_best_and_seeds_and_trivial_paths() -> None:
    data = _data(torch.tensor([[0, 0, 4], [1, 1, 1]]), torch.tensor([0, 1, 2]), seeds=(0, 4))
    ev = extract_evidence(data, [torch.tensor([0.2, 0.7, 0.4])], torch.zeros(5), 1, mode="max")
    assert [(p.nodes, p.relations) for p in ev.paths] == [([0, 1], [1]), ([4, 1], [2])]
    seed_answer = extract_evidence(data, [torch.tensor([0.2, 0.7, 0.4])], torch.zeros(5), 4)
    assert seed_answer.paths[0].nodes == [4] and seed_answer.paths[0].score == 1.0
    no_path = extract_evidence(data, [torch.tensor([0.2, 0.7, 0.4])], torch.zeros(5), 2)
    assert no_path.paths == []
    by_score = Data(edge_index=data.edge_index, edge_type=data.edge_type, num_nodes=5,
                    seed_score=torch.tensor([0.0, 0.0, 0.0, 0.0, 0.8]))
    only_4 = extract_evidence(by_score, [torch.tensor([0.2, 0.7, 0.4])], torch.zeros(5), 1)
    assert [p.nodes for p in only_4.paths] == [[4, 1]]


def test_validation_and_determinism() -> None:
    scores = torch.tensor([0.9, 0.8, 0.5, 0.9, 0.7, 0.3])
    with pytest.raises(ValueError, match="edge scores have"):
        extract_evidence(_data(), [scores[:4]], torch.zeros(5), 3)
    with pytest.raises(ValueError, match="mode"):
        extract_evidence(_data(), [scores], torch.zeros(5), 3, mode="sum")
    ties = torch.ones(6)
    first = extract_evidence(_data(), [ties, ties], torch.zeros(5), 3, k_paths=3)
    assert first == extract_evidence(_data(), [ties, ties], torch.zeros(5), 3, k_paths=3)
    assert first.paths[0].nodes == [0, 3]  # shortest among equal scores


def test_graph_slice_of_a_batch_matches_a_single_graph() -> None:
    trained = trained_reasoner("relation_attention")
    model, questions = trained.model, trained.test[:3]
    batch = make_reasoner_batch([q.graph for q in questions],
                                torch.stack([q.query for q in questions]))
    with torch.no_grad():
        out = model(batch)
        alone = model(make_reasoner_batch([questions[1].graph], questions[1].query[None]))
    data, scores, node_scores = graph_slice(out, batch, 1)
    assert torch.equal(data.edge_index, questions[1].graph.edge_index)
    for s, s_alone in zip(scores, alone.edge_scores, strict=True):
        torch.testing.assert_close(s, s_alone)
    torch.testing.assert_close(node_scores, alone.node_activation)


def test_trained_model_evidence_follows_the_queried_chain() -> None:
    trained = trained_reasoner("relation_attention")
    questions = trained.test[:40]
    batch = make_reasoner_batch([q.graph for q in questions],
                                torch.stack([q.query for q in questions]))
    with torch.no_grad():
        out = trained.model(batch)
    top = predict(out, batch, k=1)
    checked = 0
    for i, (q, pred) in enumerate(zip(questions, top, strict=True)):
        if pred[0].index != q.answer:
            continue
        ev = graph_evidence(out, batch, i, q.answer)
        best = ev.paths[0]
        assert best.nodes[0] == q.seed and best.nodes[-1] == q.answer
        assert tuple(best.relations) == q.chain and best.reversed == [False, False]
        assert ev.top_nodes[0][0] == q.answer
        checked += 1
    assert checked >= 35


def test_best_first_search_equals_yens_algorithm_on_the_full_layered_graph() -> None:
    """The aligned search (best-first on the pruned layered graph) returns exactly the paths
    and scores of the reference (Yen's algorithm on the whole layered graph, then dropping
    walks that revisit a node), on random graphs with random per-layer scores."""
    from torch_geometric.data import Data

    g = torch.Generator().manual_seed(0)
    compared = several = 0
    for trial in range(120):
        n, e = (30, 90) if trial % 2 else (12, 60)  # small dense graphs: walks that revisit
        data = Data(edge_index=torch.randint(0, n, (2, e), generator=g),
                    edge_type=torch.randint(0, 4, (e,), generator=g), num_nodes=n,
                    seed_mask=torch.rand(n, generator=g) < 0.15)
        layers = [torch.rand(2 * e, generator=g) for _ in range(3 + trial % 2)]
        answer = trial % n
        k = 1 + trial % 5
        full = extract_evidence(data, layers, torch.zeros(n), answer, k_paths=k, prune=False)
        fast = extract_evidence(data, layers, torch.zeros(n), answer, k_paths=k)
        assert [(p.nodes, p.edges, p.reversed, p.relations) for p in fast.paths] == \
            [(p.nodes, p.edges, p.reversed, p.relations) for p in full.paths]
        assert [p.score for p in fast.paths] == pytest.approx([p.score for p in full.paths])
        compared += bool(full.paths)
        several += len(full.paths) > 1
    assert compared > 60  # most random graphs do have seed → answer paths
    assert several > 20
