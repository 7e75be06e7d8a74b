import pytest
import torch
import torch.nn.functional as F

from kgmm.reasoning.gnn import FiLMRGATConv

from .test_gnn_common import (
    DQ,
    check_all_parameters_get_gradients,
    check_reset_parameters,
    small_graph,
    two_graph_batch,
    zero_film,
)


def _by_hand(conv: FiLMRGATConv, x: torch.Tensor, ei: torch.Tensor, et: torch.Tensor,
             q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The docstring formula, edge by edge and node by node (before FiLM)."""
    k, c = conv.heads, conv.out_channels
    w = (conv.weight if conv.weight is not None
         else torch.einsum("rb,bio->rio", conv.comp, conv.basis))
    logits = torch.zeros(ei.size(1), k)
    for e in range(ei.size(1)):
        j, i, r = int(ei[0, e]), int(ei[1, e]), int(et[e])
        wi, wj = (x[i] @ w[r]).view(k, c), (x[j] @ w[r]).view(k, c)
        e_r = conv.rel_emb[r]
        for h in range(k):
            a = torch.cat([conv.att_dst[h], conv.att_src[h], conv.att_rel[h]])
            concat = torch.dot(a, torch.cat([wi[h], wj[h], e_r]))
            concat = concat + conv.att_query.weight[h] @ q + conv.att_query.bias[h]
            p_q = conv.query_rel.weight.view(k, conv.relation_dim, -1)[h] @ q
            logits[e, h] = F.leaky_relu(concat + p_q @ e_r, conv.negative_slope)
    alpha = torch.zeros_like(logits)
    out = torch.zeros(x.size(0), k, c)
    for i in range(x.size(0)):
        incoming = (ei[1] == i).nonzero().flatten()
        if incoming.numel():
            alpha[incoming] = logits[incoming].softmax(dim=0)
        for e in incoming.tolist():
            j, r = int(ei[0, e]), int(et[e])
            out[i] += alpha[e].unsqueeze(-1) * (x[j] @ w[r]).view(k, c)
    h_out = out.reshape(x.size(0), k * c) if conv.concat else out.mean(1)
    assert conv.res is not None and conv.bias is not None
    return h_out + conv.res(x) + conv.bias, alpha


@pytest.mark.parametrize(("concat", "num_bases"), [(True, None), (False, 2)])
def test_formula_by_hand(concat: bool, num_bases: int | None) -> None:
    torch.manual_seed(0)
    x, ei, et = small_graph()
    conv = FiLMRGATConv(4, 3, 2, DQ, heads=2, concat=concat, num_bases=num_bases)
    with torch.no_grad():
        conv.bias.normal_()  # type: ignore[union-attr]
    q = torch.randn(DQ)
    out, alpha = conv(x, ei, et, q)
    assert out.shape == ((4, 6) if concat else (4, 3)) and alpha.shape == (5, 2)
    want_h, want_alpha = _by_hand(conv, x, ei, et, q)
    torch.testing.assert_close(alpha, want_alpha)
    assert conv.film is not None
    gamma, beta = conv.film.gamma_beta(q.unsqueeze(0))
    torch.testing.assert_close(out, gamma * want_h + beta)
    # attention sums to one over each node's incoming edges (node 2 has three)
    torch.testing.assert_close(alpha[:3].sum(0), torch.ones(2))
    torch.testing.assert_close(alpha[3:], torch.ones(2, 2))  # single in-edges
    # γ = 1, β = 0 gives the unconditioned layer
    zero_film(conv.film)
    torch.testing.assert_close(conv(x, ei, et, q)[0], want_h)


def test_query_changes_attention_and_output() -> None:
    torch.manual_seed(0)
    x, ei, et = small_graph()
    conv = FiLMRGATConv(4, 3, 2, DQ, heads=2)
    out1, a1 = conv(x, ei, et, torch.randn(DQ))
    out2, a2 = conv(x, ei, et, torch.randn(DQ))
    assert not torch.allclose(out1, out2)
    assert not torch.allclose(a1[:3], a2[:3])  # the query-relation term moves the softmax


def test_two_graphs_in_a_batch_equal_each_alone() -> None:
    torch.manual_seed(0)
    d = two_graph_batch()
    conv = FiLMRGATConv(4, 3, 2, DQ, heads=2)
    both, alpha = conv(d["x"], d["edge_index"], d["edge_type"], d["q"], d["batch"])
    one, a1 = conv(d["x1"], d["ei1"], d["et1"], d["q"][0])
    two, a2 = conv(d["x2"], d["ei2"], d["et2"], d["q"][1])
    torch.testing.assert_close(both, torch.cat([one, two]))
    torch.testing.assert_close(alpha, torch.cat([a1, a2]))


def test_reset_parameters_and_gradients() -> None:
    for num_bases in (None, 2):
        conv = FiLMRGATConv(4, 3, 2, DQ, heads=2, num_bases=num_bases)
        check_reset_parameters(conv)
        d = two_graph_batch()
        check_all_parameters_get_gradients(conv, lambda c=conv, d=d: list(c(
            d["x"], d["edge_index"], d["edge_type"], d["q"], d["batch"])))


def test_attention_dropout_only_in_training() -> None:
    torch.manual_seed(0)
    x, ei, et = small_graph()
    conv = FiLMRGATConv(4, 3, 2, DQ, heads=2, dropout=0.5)
    q = torch.randn(DQ)
    with torch.no_grad():
        train1, alpha1 = conv(x, ei, et, q)
        train2, alpha2 = conv(x, ei, et, q)
        conv.eval()
        eval1, alpha_eval = conv(x, ei, et, q)
    assert not torch.allclose(train1, train2)  # dropped attention differs between calls
    torch.testing.assert_close(alpha1, alpha_eval)  # the returned α is before dropout
    torch.testing.assert_close(alpha2, alpha_eval)
    torch.testing.assert_close(eval1, conv(x, ei, et, q)[0].detach())
