import pytest
import torch

from kgmm.reasoning.gnn import FiLMRGCNConv

from .test_gnn_common import (
    DQ,
    check_all_parameters_get_gradients,
    check_reset_parameters,
    small_graph,
    two_graph_batch,
    zero_film,
)


def _by_hand(conv: FiLMRGCNConv, x: torch.Tensor, ei: torch.Tensor,
             et: torch.Tensor) -> torch.Tensor:
    """h_i' = W_0 h_i + b + Σ_r Σ_{j∈N_r(i)} W_r h_j / |N_r(i)|, node by node."""
    w = conv.relation_weight()
    out = conv.root(x).clone()
    for i in range(x.size(0)):
        for r in range(conv.num_relations):
            sources = [int(s) for s, d, t in zip(ei[0], ei[1], et, strict=True)
                       if d == i and t == r]
            for j in sources:
                out[i] = out[i] + (x[j] @ w[r]) / len(sources)
    return out


def test_shapes() -> None:
    torch.manual_seed(0)
    x, ei, et = small_graph()
    conv = FiLMRGCNConv(4, 6, 2, DQ)
    assert conv(x, ei, et, torch.randn(1, DQ)).shape == (4, 6)
    assert "FiLMRGCNConv(4, 6" in repr(conv)


@pytest.mark.parametrize("num_bases", [None, 2])
def test_formula_by_hand_with_identity_film(num_bases: int | None) -> None:
    torch.manual_seed(0)
    x, ei, et = small_graph()
    conv = FiLMRGCNConv(4, 3, 2, DQ, num_bases=num_bases)
    zero_film(conv.film)
    out = conv(x, ei, et, torch.randn(DQ))
    torch.testing.assert_close(out, _by_hand(conv, x, ei, et))
    # node 2 by hand once more, explicitly: two relation-0 neighbours averaged, one relation-1
    w = conv.relation_weight()
    node2 = conv.root(x[2]) + (x[0] @ w[0] + x[1] @ w[0]) / 2 + x[3] @ w[1]
    torch.testing.assert_close(out[2], node2)
    # γ = 1, β = 0 is the plain conv
    plain = FiLMRGCNConv(4, 3, 2, DQ, num_bases=num_bases, film=False)
    plain.load_state_dict(conv.state_dict(), strict=False)
    torch.testing.assert_close(plain(x, ei, et, torch.randn(DQ)), out)


def test_film_applies_gamma_beta_of_the_query() -> None:
    torch.manual_seed(0)
    x, ei, et = small_graph()
    conv = FiLMRGCNConv(4, 3, 2, DQ)
    q = torch.randn(1, DQ)
    out = conv(x, ei, et, q)
    assert conv.film is not None
    gamma, beta = conv.film.gamma_beta(q)
    torch.testing.assert_close(out, gamma * _by_hand(conv, x, ei, et) + beta)
    assert not torch.allclose(out, conv(x, ei, et, torch.randn(1, DQ)))  # q matters


def test_two_graphs_in_a_batch_equal_each_alone() -> None:
    torch.manual_seed(0)
    d = two_graph_batch()
    conv = FiLMRGCNConv(4, 5, 2, DQ, num_bases=3)
    both = conv(d["x"], d["edge_index"], d["edge_type"], d["q"], d["batch"])
    torch.testing.assert_close(both[:4], conv(d["x1"], d["ei1"], d["et1"], d["q"][0]))
    torch.testing.assert_close(both[4:], conv(d["x2"], d["ei2"], d["et2"], d["q"][1]))


def test_reset_parameters_and_gradients() -> None:
    for num_bases in (None, 2):
        conv = FiLMRGCNConv(4, 3, 2, DQ, num_bases=num_bases)
        check_reset_parameters(conv)
        d = two_graph_batch()
        check_all_parameters_get_gradients(conv, lambda c=conv, d=d: [c(
            d["x"], d["edge_index"], d["edge_type"], d["q"], d["batch"])])


def test_isolated_node_keeps_root_term() -> None:
    torch.manual_seed(0)
    conv = FiLMRGCNConv(2, 2, 1, DQ, film=False)
    x = torch.randn(3, 2)
    out = conv(x, torch.tensor([[0], [1]]), torch.tensor([0]), torch.zeros(DQ))
    torch.testing.assert_close(out[2], conv.root(x[2]))
