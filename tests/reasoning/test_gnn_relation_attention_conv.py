import pytest
import torch

from kgmm.reasoning.gnn import RelationAttentionConv, add_reverse_edges

from .test_gnn_common import (
    DQ,
    check_all_parameters_get_gradients,
    check_reset_parameters,
    small_graph,
    two_graph_batch,
)

# toy KG: dog --hypernym--> canine --hypernym--> animal; dog --antonym--> cat
DOG, CANINE, ANIMAL, CAT = range(4)
HYPERNYM, ANTONYM = 0, 1
TOY_EI = torch.tensor([[DOG, CANINE, DOG], [CANINE, ANIMAL, CAT]])
TOY_ET = torch.tensor([HYPERNYM, HYPERNYM, ANTONYM])


def _one_hot(n: int, *hot: int) -> torch.Tensor:
    v = torch.zeros(n)
    v[list(hot)] = 1.0
    return v


def _walk(conv: RelationAttentionConv, start: int, relations: list[int],
          ei: torch.Tensor = TOY_EI, et: torch.Tensor = TOY_ET) -> list[list[float]]:
    """Activations after each step when step t is forced onto relation ``relations[t]``."""
    x = torch.randn(4, conv.in_channels)
    p = _one_hot(4, start)
    seen = []
    for rel in relations:
        a = _one_hot(conv.num_edge_types, rel).unsqueeze(0)
        _, p, _ = conv(x, p, ei, et, torch.zeros(1, DQ), rel_weights=a)
        seen.append(p.tolist())
    return seen


def test_shapes_and_reverse_scores() -> None:
    torch.manual_seed(0)
    x, ei, et = small_graph()
    conv = RelationAttentionConv(4, 6, 2, DQ)
    h, p, s = conv(x, torch.rand(4), ei, et, torch.randn(DQ))
    assert h.shape == (4, 6) and p.shape == (4,) and s.shape == (5,)
    rev = RelationAttentionConv(4, 6, 2, DQ, add_reverse=True)
    h, p, s = rev(x, torch.rand(4), ei, et, torch.randn(DQ))
    assert rev.num_edge_types == 4 and s.shape == (10,)
    assert ((s >= 0) & (s <= 1)).all()


@pytest.mark.parametrize("norm", ["clamp", "max", "none"])
def test_formula_by_hand(norm: str) -> None:
    torch.manual_seed(0)
    x, ei, et = small_graph()
    conv = RelationAttentionConv(4, 3, 2, DQ, edge_gate=True, activation_norm=norm)
    q, p0 = torch.randn(DQ), 3 * torch.tensor([0.9, 0.8, 0.2, 0.7])
    h, p, s = conv(x, p0, ei, et, q)
    a = torch.sigmoid(conv.rel_lin.weight @ q + conv.rel_lin.bias)
    assert conv.gate is not None
    z = torch.zeros(4)
    agg = torch.zeros(4, 3)
    for e in range(5):
        u, v, r = int(ei[0, e]), int(ei[1, e]), int(et[e])
        gate = torch.sigmoid(conv.gate(torch.cat([x[u], x[v], q])))[0]
        s_e = a[r] * gate
        torch.testing.assert_close(s[e], s_e)
        z[v] += p0[u] * s_e
        agg[v] += s_e * (conv.lin_msg(x[u]) + conv.rel_emb[r])
    deg = torch.tensor([1.0, 1.0, 3.0, 1.0])  # in-degrees, node 3 has none: max(1, 0)
    torch.testing.assert_close(h, conv.lin_root(x) + agg / deg[:, None])
    z = z.detach()
    assert z.max() > 1.0  # so that the normalisations have something to do
    want = {"clamp": z.clamp(0, 1), "max": z / z.max(), "none": z}[norm]
    torch.testing.assert_close(p, want)


def test_clamp_caps_activation_at_one() -> None:
    conv = RelationAttentionConv(2, 2, 1, DQ)
    ei, et = torch.tensor([[0, 1], [2, 2]]), torch.tensor([0, 0])
    ones = torch.ones(1, 1)
    _, p, _ = conv(torch.zeros(3, 2), torch.tensor([1.0, 1.0, 0.0]), ei, et,
                   torch.zeros(DQ), rel_weights=ones)
    assert p.tolist() == [0.0, 0.0, 1.0]  # 1 + 1 clamped


def test_forced_relations_follow_the_chosen_path() -> None:
    torch.manual_seed(0)
    conv = RelationAttentionConv(3, 3, 2, DQ)
    hyp2 = _walk(conv, DOG, [HYPERNYM, HYPERNYM])
    assert hyp2 == [_one_hot(4, CANINE).tolist(), _one_hot(4, ANIMAL).tolist()]
    assert _walk(conv, DOG, [ANTONYM]) == [_one_hot(4, CAT).tolist()]
    assert _walk(conv, DOG, [HYPERNYM, ANTONYM])[-1] == [0.0] * 4  # canine has no antonym


def test_forced_relations_in_reverse_direction() -> None:
    torch.manual_seed(0)
    conv = RelationAttentionConv(3, 3, 2, DQ, add_reverse=True)
    up = _walk(conv, ANIMAL, [HYPERNYM + 2, HYPERNYM + 2])  # walk hypernym edges backwards
    assert up == [_one_hot(4, CANINE).tolist(), _one_hot(4, DOG).tolist()]
    assert _walk(conv, CAT, [ANTONYM + 2]) == [_one_hot(4, DOG).tolist()]
    assert _walk(conv, ANIMAL, [HYPERNYM])[-1] == [0.0] * 4  # forward from animal: nothing
    # callers may add the reverse edges themselves with inverse ids: antonym is its own
    # inverse, a reversed hypernym edge gets the new id 0 + R = 2 (a "hyponym" edge)
    ei, et = add_reverse_edges(TOY_EI, TOY_ET, 2, relation_inverse=[-1, ANTONYM])
    assert et.tolist() == [HYPERNYM, HYPERNYM, ANTONYM, 2, 2, ANTONYM]  # 2: "hyponym"
    own = RelationAttentionConv(3, 3, 3, DQ)
    assert _walk(own, ANIMAL, [2, 2], ei, et)[-1] == _one_hot(4, DOG).tolist()
    assert _walk(own, CAT, [ANTONYM], ei, et) == [_one_hot(4, DOG).tolist()]


def test_relation_weights_from_the_query_pick_the_path() -> None:
    """Force a_t through the query layer itself (saturated bias), not the override."""
    torch.manual_seed(0)
    conv = RelationAttentionConv(3, 3, 2, DQ)
    with torch.no_grad():
        conv.rel_lin.weight.zero_()
        conv.rel_lin.bias.copy_(torch.tensor([30.0, -30.0]))  # hypernym on, antonym off
    x, p = torch.randn(4, 3), _one_hot(4, DOG)
    for target in (CANINE, ANIMAL):
        _, p, _ = conv(x, p, TOY_EI, TOY_ET, torch.randn(1, DQ))
        torch.testing.assert_close(p, _one_hot(4, target), atol=1e-6, rtol=0)


def test_softmax_relation_weights_and_query_dependence() -> None:
    torch.manual_seed(0)
    conv = RelationAttentionConv(4, 3, 2, DQ, relation_norm="softmax")
    q = torch.randn(5, DQ)
    torch.testing.assert_close(conv.relation_weights(q).sum(-1), torch.ones(5))
    x, ei, et = small_graph()
    h1, p1, _ = conv(x, torch.ones(4), ei, et, q[0])
    h2, p2, _ = conv(x, torch.ones(4), ei, et, q[1])
    assert not torch.allclose(p1, p2) and not torch.allclose(h1, h2)
    with pytest.raises(ValueError, match="relation_norm"):
        RelationAttentionConv(4, 3, 2, DQ, relation_norm="tanh")
    with pytest.raises(ValueError, match="activation_norm"):
        RelationAttentionConv(4, 3, 2, DQ, activation_norm="softmax")


@pytest.mark.parametrize("norm", ["clamp", "max"])
def test_two_graphs_in_a_batch_equal_each_alone(norm: str) -> None:
    torch.manual_seed(0)
    d = two_graph_batch()
    conv = RelationAttentionConv(4, 3, 2, DQ, add_reverse=True, edge_gate=True,
                                 activation_norm=norm, relation_norm="softmax")
    p0 = torch.tensor([1.0, 0.0, 0.5, 0.3, 0.0, 1.0, 1.0, 0.2])
    h, p, s = conv(d["x"], 3 * p0, d["edge_index"], d["edge_type"], d["q"], d["batch"])
    h1, p1, s1 = conv(d["x1"], 3 * p0[:4], d["ei1"], d["et1"], d["q"][0])
    h2, p2, s2 = conv(d["x2"], 3 * p0[4:], d["ei2"], d["et2"], d["q"][1])
    torch.testing.assert_close(h, torch.cat([h1, h2]))
    torch.testing.assert_close(p, torch.cat([p1, p2]))
    e1, e2 = 5, 4  # forward edges first, then the reversed ones
    torch.testing.assert_close(s, torch.cat([s1[:e1], s2[:e2], s1[e1:], s2[e2:]]))


def test_reset_parameters_and_gradients() -> None:
    conv = RelationAttentionConv(4, 3, 2, DQ, edge_gate=True, add_reverse=True)
    check_reset_parameters(conv)
    d = two_graph_batch()
    p0 = torch.full((8,), 0.3)
    check_all_parameters_get_gradients(conv, lambda: list(conv(
        d["x"], p0, d["edge_index"], d["edge_type"], d["q"], d["batch"])))
