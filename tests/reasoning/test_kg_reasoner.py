"""KGReasoner: config, batching, loss, prediction, and learning a synthetic multi-hop task.

The synthetic task (helpers below, also used by ``test_evidence``): random 10-node KGs with
3 relation types where every node has at most one out-edge per relation (so a chain has one
answer); a question is "follow relation r1 then r2 from the seed", given as a one-hot over
the 9 chains. Node features are random vectors from an entity pool, unrelated to the answer,
so only edges + query can find it.
"""

from __future__ import annotations

import contextlib
import functools
import math
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import Batch, Data

from kgmm.reasoning.heads import AnswerVocabulary, VocabClassifier, normalize_answer
from kgmm.reasoning.kg_reasoner import (
    Candidate,
    KGReasoner,
    KGReasonerConfig,
    ReasonerOutput,
    make_reasoner_batch,
    predict,
    reasoner_loss,
    segment_logsumexp,
)
from kgmm.reasoning.threads import torch_threads

R, N_NODES, D = 3, 10, 8
TRAIN_STEPS = 200


def one_thread() -> contextlib.AbstractContextManager[None]:
    """One intra-op thread for the block (see :func:`torch_threads`)."""
    return torch_threads(1)


@dataclass
class Question:
    graph: Data
    query: Tensor
    answer: int
    seed: int
    chain: tuple[int, int]
    n_reachable: int  # distinct nodes that some 2-relation chain reaches from the seed


def make_question(g: torch.Generator, pool: Tensor) -> Question:
    """A random KG over entities drawn from ``pool`` and a 2-hop chain question on it."""
    while True:
        nodes = torch.randperm(pool.size(0), generator=g)[:N_NODES]
        src, dst, rel, succ = [], [], [], {}
        for u in range(N_NODES):
            for r in range(R):
                if torch.rand((), generator=g) < 0.6:
                    v = int(torch.randint(0, N_NODES - 1, (), generator=g))
                    v += v >= u
                    src.append(u)
                    dst.append(v)
                    rel.append(r)
                    succ[u, r] = v
        chains = [(s, r1, r2, succ[succ[s, r1], r2]) for s in range(N_NODES)
                  for r1 in range(R) for r2 in range(R)
                  if (s, r1) in succ and (succ[s, r1], r2) in succ and succ[succ[s, r1], r2] != s]
        if chains:
            break
    s, r1, r2, answer = chains[int(torch.randint(0, len(chains), (), generator=g))]
    seed = torch.zeros(N_NODES)
    seed[s] = 1.0
    graph = Data(x=pool[nodes], edge_index=torch.tensor([src, dst]), edge_type=torch.tensor(rel),
                 seed_score=seed, seed_mask=seed.bool(), n_id=nodes, num_nodes=N_NODES)
    query = torch.zeros(R * R)
    query[r1 * R + r2] = 1.0
    return Question(graph, query, answer, s, (r1, r2), len({c[3] for c in chains if c[0] == s}))


def make_questions(n: int, seed: int, pool: Tensor) -> list[Question]:
    g = torch.Generator().manual_seed(seed)
    return [make_question(g, pool) for _ in range(n)]


def batchify(questions: list[Question]) -> tuple[Batch, Tensor]:
    batch = make_reasoner_batch([q.graph for q in questions],
                                torch.stack([q.query for q in questions]))
    targets = torch.zeros(batch.num_nodes)
    for i, q in enumerate(questions):
        targets[int(batch.ptr[i]) + q.answer] = 1.0
    return batch, targets


def accuracy(model: KGReasoner, questions: list[Question]) -> float:
    model.eval()
    batch, _ = batchify(questions)
    with torch.no_grad():
        top = predict(model(batch), batch, k=1)
    return sum(t[0].index == q.answer for t, q in zip(top, questions, strict=True)) / len(top)


@dataclass
class Trained:
    model: KGReasoner
    test: list[Question]
    novel: list[Question]
    seconds: float


@functools.cache
def trained_reasoner(conv: str, seed: int = 0, steps: int = TRAIN_STEPS,
                     drop_edges: bool = False) -> Trained:
    """Train on 512 questions (entity pool A); test on 200 new questions over pool A and 200
    over a novel pool B (node features never seen in training)."""
    import time

    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(100 + seed)
    pool, novel_pool = torch.randn(40, D, generator=g), torch.randn(40, D, generator=g)
    train = make_questions(512, seed, pool)
    test = make_questions(200, 1000 + seed, pool)
    novel = make_questions(200, 2000 + seed, novel_pool)
    if drop_edges:
        for q in train + test:
            q.graph = q.graph.clone()
            q.graph.edge_index = torch.zeros(2, 0, dtype=torch.long)
            q.graph.edge_type = torch.zeros(0, dtype=torch.long)
    config = KGReasonerConfig(conv=conv, node_dim=D, query_dim=R * R, hidden=32, layers=2,
                              heads=2, num_relations=R, dropout=0.0, vocab_size=0)
    model = KGReasoner(config)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    batches = [batchify(train[i:i + 32]) for i in range(0, len(train), 32)]
    start = time.perf_counter()
    with one_thread():
        model.train()
        for step in range(steps):
            batch, targets = batches[step % len(batches)]
            loss = reasoner_loss(model(batch), batch, targets)
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    return Trained(model, test, novel, time.perf_counter() - start)


# --- config, batching -------------------------------------------------------------------


def test_config_json_round_trip_and_validation() -> None:
    cfg = KGReasonerConfig(conv="rgat", node_dim=16, extra_node_dim=3, query_dim=8, hidden=12,
                           heads=3, num_relations=4, vocab_size=5, relation_inverse=[1, 0, -1, 3],
                           num_bases=2)
    assert KGReasonerConfig.from_json(cfg.to_json()) == cfg
    assert cfg.edge_types == 8
    with pytest.raises(ValueError, match="unknown conv"):
        KGReasonerConfig(conv="gcn")
    with pytest.raises(ValueError, match="divisible"):
        KGReasonerConfig(conv="rgat", hidden=10, heads=3)
    with pytest.raises(ValueError, match="relation_inverse"):
        KGReasonerConfig(num_relations=2, relation_inverse=[0])
    with pytest.raises(ValueError, match="unknown KGReasonerConfig keys"):
        KGReasonerConfig.from_dict({"conv": "rgcn", "hiden": 3})


def _graph(n: int, e: int, seed: int, extra: int = 0) -> Data:
    g = torch.Generator().manual_seed(seed)
    data = Data(x=torch.randn(n, D, generator=g), num_nodes=n,
                edge_index=torch.randint(0, n, (2, e), generator=g),
                edge_type=torch.randint(0, R, (e,), generator=g),
                seed_mask=torch.arange(n) == 0, n_id=torch.arange(n) + 100 * seed)
    if extra:
        data.node_extra = torch.randn(n, extra, generator=g)
    return data


def test_make_reasoner_batch_sets_query_and_defaults() -> None:
    graphs = [_graph(3, 4, 0), _graph(5, 6, 1)]
    queries = torch.randn(2, 7)
    batch = make_reasoner_batch(graphs, queries)
    assert torch.equal(batch.query, queries)
    assert batch.seed_score.tolist() == [1, 0, 0, 1, 0, 0, 0, 0]  # from seed_mask
    assert batch.n_id.tolist() == [0, 1, 2, 100, 101, 102, 103, 104]  # not shifted
    assert not hasattr(graphs[0], "query") and "seed_score" not in graphs[0]  # unchanged
    with pytest.raises(ValueError, match="queries must be"):
        make_reasoner_batch(graphs, torch.randn(3, 7))


@pytest.mark.parametrize("conv", ["relation_attention", "rgat", "rgcn"])
def test_forward_shapes_and_batch_equals_each_graph_alone(conv: str) -> None:
    torch.manual_seed(0)
    cfg = KGReasonerConfig(conv=conv, node_dim=D, extra_node_dim=2, query_dim=6, hidden=8,
                           heads=2, num_relations=R, vocab_size=4, num_bases=2)
    model = KGReasoner(cfg).eval()
    graphs, queries = [_graph(4, 6, 0, 2), _graph(5, 7, 1, 2)], torch.randn(2, 6)
    batch = make_reasoner_batch(graphs, queries)
    out = model(batch)
    assert out.node_logits.shape == (9,) and out.vocab_logits.shape == (2, 4)
    assert out.gate.shape == (2,) and ((out.gate > 0) & (out.gate < 1)).all()
    assert len(out.edge_scores) == 2 and all(s.shape == (26,) for s in out.edge_scores)
    assert out.node_activation.shape == (9,)
    for i, graph in enumerate(graphs):
        alone = model(make_reasoner_batch([graph], queries[i:i + 1]))
        nodes = slice(0, 4) if i == 0 else slice(4, 9)
        torch.testing.assert_close(out.node_logits[nodes], alone.node_logits)
        torch.testing.assert_close(out.vocab_logits[i], alone.vocab_logits[0])
        torch.testing.assert_close(out.gate[i], alone.gate[0])
    if conv != "relation_attention":  # activation = softmax of the logits within each graph
        torch.testing.assert_close(out.node_activation[:4].sum(), torch.tensor(1.0))
    with pytest.raises(ValueError, match="node_extra"):
        model(make_reasoner_batch([_graph(3, 2, 0)], queries[:1]))


@pytest.mark.parametrize("conv", ["relation_attention", "rgat", "rgcn"])
def test_gradients_reset_and_graphs_without_edges(conv: str) -> None:
    torch.manual_seed(0)
    cfg = KGReasonerConfig(conv=conv, node_dim=D, query_dim=6, hidden=8, heads=2,
                           num_relations=R, vocab_size=3, dropout=0.0)
    model = KGReasoner(cfg)
    batch = make_reasoner_batch([_graph(4, 8, 0), _graph(5, 9, 1)], torch.randn(2, 6))
    out = model(batch)
    loss = reasoner_loss(out, batch, (torch.arange(9) % 4 == 1).float(), torch.tensor([-1, 2]))
    (loss + (out.node_logits * torch.randn(9)).sum()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    torch.manual_seed(3)
    model.reset_parameters()
    first = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(3)
    model.reset_parameters()
    for k, v in model.state_dict().items():
        assert torch.equal(v, first[k]), k
    lonely = Data(x=torch.randn(1, D), edge_index=torch.zeros(2, 0, dtype=torch.long),
                  edge_type=torch.zeros(0, dtype=torch.long), num_nodes=1,
                  seed_mask=torch.tensor([True]))
    out = model.eval()(make_reasoner_batch([lonely, _graph(3, 0, 2)], torch.randn(2, 6)))
    assert torch.isfinite(out.node_logits).all() and out.edge_scores[0].numel() == 0


def test_gate_variants() -> None:
    torch.manual_seed(0)
    batch = make_reasoner_batch([_graph(4, 6, 0), _graph(3, 3, 1)], torch.randn(2, 6))
    base = {"node_dim": D, "query_dim": 6, "hidden": 8, "num_relations": R}
    shared = KGReasoner(KGReasonerConfig(**base, vocab_size=3, use_gate=False)).eval()
    out = shared(batch)  # no gate head: one softmax over nodes and words
    joint = [torch.cat([out.node_logits[:4], out.vocab_logits[0]]).softmax(0),
             torch.cat([out.node_logits[4:], out.vocab_logits[1]]).softmax(0)]
    torch.testing.assert_close(out.gate, torch.stack([joint[0][:4].sum(), joint[1][:3].sum()]))
    nodes_only = KGReasoner(KGReasonerConfig(**base, vocab_size=0)).eval()(batch)
    assert nodes_only.vocab_logits.shape == (2, 0) and nodes_only.gate.tolist() == [1.0, 1.0]


# --- loss and prediction ----------------------------------------------------------------


def _fake_output(node_logits: list[float], vocab_logits: list[list[float]],
                 gate: list[float]) -> ReasonerOutput:
    gate_t = torch.tensor(gate)
    return ReasonerOutput(node_logits=torch.tensor(node_logits),
                          vocab_logits=torch.tensor(vocab_logits), gate=gate_t,
                          gate_logit=torch.logit(gate_t), edge_scores=[],
                          node_activation=torch.zeros(len(node_logits)),
                          edge_index=torch.zeros(2, 0, dtype=torch.long),
                          edge_type=torch.zeros(0, dtype=torch.long))


def test_loss_formula_by_hand() -> None:
    # graph 0: nodes 0-2 (answers 0 and 2); graph 1: nodes 3-4 (vocab answer 1)
    batch = Batch(batch=torch.tensor([0, 0, 0, 1, 1]))
    out = _fake_output([1.0, 2.0, 0.5, 0.3, -1.0], [[0.1, 0.2, 0.3], [1.0, -1.0, 0.0]],
                       [0.8, 0.3])
    targets = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0])
    loss = reasoner_loss(out, batch, targets, torch.tensor([-1, 1]), torch.tensor([1.0, 0.0]))
    p = torch.tensor([1.0, 2.0, 0.5]).softmax(0).tolist()
    node = -math.log(p[0] + p[2])
    vocab = -float(torch.tensor([1.0, -1.0, 0.0]).log_softmax(0)[1])
    gate = -(math.log(0.8) + math.log(0.7)) / 2
    torch.testing.assert_close(loss, torch.tensor(node + vocab + gate))
    # soft targets (VQA-style weights): -log Σ t_v p_v
    soft = torch.tensor([0.3, 0.0, 1.0, 0.0, 0.0])
    loss_soft = reasoner_loss(out, batch, soft, torch.tensor([-1, 1]))  # gate target derived
    torch.testing.assert_close(loss_soft,
                               torch.tensor(-math.log(0.3 * p[0] + p[2]) + vocab + gate))
    # a node-only reasoner: just the node term
    nodes_only = _fake_output([1.0, 2.0, 0.5, 0.3, -1.0], [[], []], [1.0, 1.0])
    nodes_only.vocab_logits = torch.zeros(2, 0)
    torch.testing.assert_close(reasoner_loss(nodes_only, batch, targets), torch.tensor(node))


def test_segment_logsumexp_handles_empty_segments() -> None:
    x = torch.tensor([1.0, 2.0, float("-inf"), 3.0])
    out = segment_logsumexp(x, torch.tensor([0, 0, 1, 3]), 4)
    torch.testing.assert_close(out[0], torch.logsumexp(torch.tensor([1.0, 2.0]), 0))
    assert out[1] == float("-inf") and out[2] == float("-inf") and out[3] == 3.0


def test_predict_mixes_nodes_and_vocabulary() -> None:
    batch = Batch(batch=torch.tensor([0, 0, 1, 1, 1]), n_id=torch.tensor([7, 8, 9, 10, 11]))
    out = _fake_output([0.0, math.log(3.0), 0.0, 0.0, 0.0],
                       [[math.log(3.0), 0.0], [0.0, math.log(4.0)]], [0.5, 0.1])
    ranked = predict(out, batch, k=3)
    assert ranked[0] == [Candidate("node", 1, pytest.approx(0.375), 8),
                         Candidate("vocab", 0, pytest.approx(0.375)),
                         Candidate("node", 0, pytest.approx(0.125), 7)]
    assert ranked[1][0] == Candidate("vocab", 1, pytest.approx(0.72))
    assert ranked[1][1] == Candidate("vocab", 0, pytest.approx(0.18))
    assert ranked[1][2].kind == "node" and ranked[1][2].score == pytest.approx(0.1 / 3)
    excluded = predict(out, batch, k=5, exclude_vocab=[0])  # 5 asked, 3 left
    assert [(c.kind, c.index) for c in excluded[0]] == [("node", 1), ("node", 0), ("vocab", 1)]


def test_save_and_load_pretrained(tmp_path: object) -> None:
    torch.manual_seed(0)
    cfg = KGReasonerConfig(conv="rgat", node_dim=D, query_dim=6, hidden=8, heads=2,
                           num_relations=R, vocab_size=3)
    model = KGReasoner(cfg).eval()
    batch = make_reasoner_batch([_graph(4, 6, 0)], torch.randn(1, 6))
    path = model.save_pretrained(tmp_path / "reasoner")  # type: ignore[operator]
    loaded = KGReasoner.from_pretrained(path).eval()
    assert loaded.config == cfg
    torch.testing.assert_close(loaded(batch).node_logits, model(batch).node_logits)


# --- learning the synthetic multi-hop task ----------------------------------------------


def test_task_needs_the_query() -> None:
    """The best query-blind guess (any node some chain reaches) is right < 50 % of the time."""
    trained = trained_reasoner("relation_attention")
    blind = sum(1 / q.n_reachable for q in trained.test) / len(trained.test)
    assert blind < 0.5, blind


@pytest.mark.parametrize(("conv", "threshold"),
                         [("relation_attention", 0.9), ("rgat", 0.9), ("rgcn", 0.75)])
def test_learns_two_hop_relation_chains(conv: str, threshold: float) -> None:
    trained = trained_reasoner(conv)
    acc = accuracy(trained.model, trained.test)
    assert acc > threshold, (conv, acc)


def test_answers_novel_entities() -> None:
    """Test graphs over entities never seen in training: the propagation still finds them."""
    trained = trained_reasoner("relation_attention")
    acc = accuracy(trained.model, trained.novel)
    assert acc > 0.8, acc
    assert not any(torch.isin(q.graph.x[0], trained.test[0].graph.x).all() for q in trained.novel)


def test_features_alone_do_not_identify_the_answer() -> None:
    """Control: the same model trained without edges stays near chance (1/9)."""
    trained = trained_reasoner("relation_attention", steps=100, drop_edges=True)
    assert accuracy(trained.model, trained.test) < 0.25


def test_learned_relation_weights_follow_the_chain() -> None:
    trained = trained_reasoner("relation_attention")
    model = trained.model
    with torch.no_grad():
        q = model.query(torch.eye(R * R))
        for t, conv in enumerate(model.convs):
            picked = conv.relation_weights(q).argmax(-1)  # type: ignore[operator]
            chain_rel = torch.tensor([(c // R, c % R)[t] for c in range(R * R)])
            assert torch.equal(picked, chain_rel), (t, picked)


# --- heads --------------------------------------------------------------------------------


def test_answer_vocabulary() -> None:
    answers = ["yes", "No", "yes", "2", " no ", "two  dogs", "rare", "Two Dogs"]
    vocab = AnswerVocabulary.build(answers, min_count=2)
    assert vocab.itos == ["<unk>", "no", "two dogs", "yes"]  # count desc, then alphabetical
    assert vocab.encode("YES") == 3 and vocab.encode("rare") == vocab.unk_id == 0
    assert vocab.decode(1) == "no" and len(vocab) == 4 and "Two dogs" in vocab
    assert AnswerVocabulary.from_json(vocab.to_json()) == vocab
    assert AnswerVocabulary.build(answers, max_size=2).itos == ["<unk>", "no", "two dogs"]
    assert normalize_answer("  A\tB ") == "a b"


def test_answer_vocabulary_save_load(tmp_path: object) -> None:
    vocab = AnswerVocabulary(["red", "blue"])
    path = vocab.save(tmp_path / "vocab.json")  # type: ignore[operator]
    assert AnswerVocabulary.load(path).itos == ["<unk>", "red", "blue"]


def test_vocab_classifier_baseline_learns_query_to_answer() -> None:
    torch.manual_seed(0)
    head = VocabClassifier(6, 4, hidden=16, dropout=0.0)
    q = torch.randn(32, 6)
    y = q[:, :4].argmax(-1)
    opt = torch.optim.Adam(head.parameters(), lr=2e-2)
    with one_thread():
        for _ in range(60):
            loss = F.cross_entropy(head(q), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    assert head(q).shape == (32, 4) and (head(q).argmax(-1) == y).float().mean() > 0.95
    before = head.lin1.weight.clone()
    head.reset_parameters()
    assert not torch.equal(before, head.lin1.weight)


def test_segment_logsumexp_has_finite_gradients_for_empty_segments() -> None:
    from kgmm.reasoning.kg_reasoner import segment_logsumexp

    x = torch.tensor([0.5, float("-inf"), 1.0], requires_grad=True)
    out = segment_logsumexp(x, torch.tensor([0, 1, 2]), 4)
    assert torch.isinf(out[1]) and torch.isinf(out[3])
    out[torch.isfinite(out)].sum().backward()
    assert torch.isfinite(x.grad).all()


def test_feature_score_reads_the_feature_the_query_names() -> None:
    """The answer is the node with the largest value in the feature column the query names
    (one-hot over 3 columns); node text is noise. With ``feature_score`` the query picks the
    column directly and the reasoner learns it in a few hundred steps."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)

    def question() -> tuple[Data, Tensor, int]:
        n = 6
        extra = torch.rand(n, 3, generator=g)
        column = int(torch.randint(0, 3, (1,), generator=g))
        graph = Data(x=torch.randn(n, D, generator=g), node_extra=extra, num_nodes=n,
                     edge_index=torch.zeros(2, 0, dtype=torch.long),
                     edge_type=torch.zeros(0, dtype=torch.long))
        return graph, F.one_hot(torch.tensor(column), 3).float(), int(extra[:, column].argmax())

    def accuracy(model: KGReasoner, questions: list) -> float:
        model.eval()
        batch = make_reasoner_batch([q[0] for q in questions],
                                    torch.stack([q[1] for q in questions]))
        with torch.no_grad():
            logits = model(batch).node_logits.view(len(questions), -1)
        return float((logits.argmax(-1) == torch.tensor([q[2] for q in questions])).float()
                     .mean())

    test = [question() for _ in range(200)]
    cfg = KGReasonerConfig(node_dim=D, extra_node_dim=3, query_dim=3, hidden=16,
                           num_relations=1, layers=1, dropout=0.0, feature_score=True)
    with one_thread():
        model = KGReasoner(cfg)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(300):
            chunk = [question() for _ in range(32)]
            batch = make_reasoner_batch([q[0] for q in chunk], torch.stack([q[1] for q in chunk]))
            targets = torch.cat([F.one_hot(torch.tensor(q[2]), 6).float() for q in chunk])
            loss = reasoner_loss(model.train()(batch), batch, targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        assert accuracy(model, test) > 0.9
        # the explanation: per-feature terms that sum to the feature score's share of the
        # logit, and for the answer node the largest one is the column the question names
        model.eval()
        batch = make_reasoner_batch([q[0] for q in test], torch.stack([q[1] for q in test]))
        with torch.no_grad():
            out = model(batch)
            assert out.feature_terms is not None and out.feature_terms.shape == (6 * 200, 4)
            for p in model.feature_score.parameters():
                p.zero_()
            without = model(batch).node_logits
        torch.testing.assert_close(out.node_logits - without, out.feature_terms.sum(-1))
        answer_rows = torch.tensor([6 * i + q[2] for i, q in enumerate(test)])
        named = out.feature_terms[answer_rows, :3].argmax(-1)
        asked = torch.stack([q[1] for q in test]).argmax(-1)
        assert float((named == asked).float().mean()) > 0.9
    assert KGReasonerConfig.from_dict({"conv": "rgcn"}).feature_score is False
    plain = KGReasoner(KGReasonerConfig(node_dim=D, extra_node_dim=3, query_dim=3, hidden=16,
                                        num_relations=1, layers=1, feature_score=False))
    assert plain.eval()(batch).feature_terms is None


def test_node_text_dropout_hides_text_only_while_training() -> None:
    torch.manual_seed(0)
    cfg = KGReasonerConfig(node_dim=D, query_dim=6, hidden=8, num_relations=R,
                           dropout=0.0, node_text_dropout=0.5)
    model = KGReasoner(cfg)
    batch = make_reasoner_batch([_graph(40, 60, 0)], torch.randn(1, 6))
    model.eval()
    first, second = model(batch).node_logits, model(batch).node_logits
    assert torch.equal(first, second)  # inference: every node keeps its text
    model.train()
    seen = model.input.register_forward_hook(
        lambda module, args, out: hidden.append(args[0][:, :D].clone()))
    hidden: list[Tensor] = []
    model(batch)
    seen.remove()
    zeroed = (hidden[0].abs().sum(-1) == 0).float().mean().item()
    assert 0.3 < zeroed < 0.7  # about half the nodes lose their text, whole rows at a time
