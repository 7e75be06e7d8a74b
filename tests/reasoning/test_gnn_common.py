"""Shared pieces of the GNN layers (FiLM, query broadcast, reverse edges) and test helpers.

The helpers (names not starting with ``test``) are imported by the other ``test_gnn_*`` files.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn

from kgmm.reasoning.gnn import FiLM, add_reverse_edges, broadcast_query, relation_transform

DQ = 3


def small_graph(seed: int = 0, c_in: int = 4) -> tuple[Tensor, Tensor, Tensor]:
    """4 nodes, 5 typed edges (R = 2): node 2 has three in-edges (two of relation 0)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(4, c_in, generator=g)
    edge_index = torch.tensor([[0, 1, 3, 2, 0], [2, 2, 2, 0, 1]])
    edge_type = torch.tensor([0, 0, 1, 1, 0])
    return x, edge_index, edge_type


def two_graph_batch(seed: int = 0, c_in: int = 4) -> dict[str, Tensor]:
    """Two different small graphs as one disjoint union with a ``batch`` vector."""
    x1, ei1, et1 = small_graph(seed, c_in)
    x2, ei2, et2 = small_graph(seed + 1, c_in)
    ei2 = torch.tensor([[1, 3, 0, 2], [0, 0, 3, 1]])
    et2 = torch.tensor([1, 0, 0, 1])
    g = torch.Generator().manual_seed(seed + 7)
    q = torch.randn(2, DQ, generator=g)
    return {
        "x1": x1, "ei1": ei1, "et1": et1, "x2": x2, "ei2": ei2, "et2": et2, "q": q,
        "x": torch.cat([x1, x2]), "edge_index": torch.cat([ei1, ei2 + 4], dim=1),
        "edge_type": torch.cat([et1, et2]), "batch": torch.tensor([0] * 4 + [1] * 4),
    }


def zero_film(film: FiLM | None) -> None:
    """Make FiLM the identity (γ = 1, β = 0)."""
    assert film is not None
    with torch.no_grad():
        film.lin.weight.zero_()
        film.lin.bias.zero_()


def check_reset_parameters(module: nn.Module) -> None:
    """reset_parameters() restores the same weights under the same seed, others otherwise."""
    torch.manual_seed(0)
    module.reset_parameters()  # type: ignore[operator]
    first = {k: v.clone() for k, v in module.state_dict().items()}
    with torch.no_grad():
        for p in module.parameters():
            p.add_(1.0)
    torch.manual_seed(1)
    module.reset_parameters()  # type: ignore[operator]
    changed = [n for n, p in module.named_parameters() if not torch.equal(p, first[n])]
    assert changed, "a different seed should give different random weights"
    torch.manual_seed(0)
    module.reset_parameters()  # type: ignore[operator]
    for name, value in module.state_dict().items():
        torch.testing.assert_close(value, first[name], rtol=0, atol=0, msg=name)


def check_all_parameters_get_gradients(module: nn.Module,
                                       outputs: Callable[[], list[Tensor]]) -> None:
    torch.manual_seed(0)
    module.zero_grad()
    loss = sum((o * torch.randn_like(o)).sum() for o in outputs())
    assert isinstance(loss, Tensor)
    loss.backward()
    for name, p in module.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert p.grad.abs().sum() > 0, f"{name} got a zero gradient"


# --- tests of the shared pieces ---------------------------------------------------------


def test_film_formula_and_identity() -> None:
    torch.manual_seed(0)
    film = FiLM(DQ, 2)
    h, q = torch.randn(5, 2), torch.randn(5, DQ)
    out = film(h, q)
    raw = q @ film.lin.weight.t() + film.lin.bias
    torch.testing.assert_close(out, (1 + raw[:, :2]) * h + raw[:, 2:])
    zero_film(film)
    torch.testing.assert_close(film(h, q), h)


def test_broadcast_query() -> None:
    q = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    b = torch.tensor([0, 1, 1])
    assert broadcast_query(q, b, 3).tolist() == [[1, 2], [3, 4], [3, 4]]
    assert broadcast_query(q[0], None, 2).tolist() == [[1, 2], [1, 2]]
    with pytest.raises(ValueError, match="no batch vector"):
        broadcast_query(q, None, 3)


def test_add_reverse_edges_layout_and_inverse_ids() -> None:
    ei = torch.tensor([[0, 1], [1, 2]])
    et = torch.tensor([0, 2])
    rev_ei, rev_et = add_reverse_edges(ei, et, 3)
    assert rev_ei.tolist() == [[0, 1, 1, 2], [1, 2, 0, 1]]
    assert rev_et.tolist() == [0, 2, 3, 5]
    # relation 0's inverse is relation 1; relation 2 has none
    _, inv_et = add_reverse_edges(ei, et, 3, relation_inverse=[1, 0, -1])
    assert inv_et.tolist() == [0, 2, 1, 5]
    with pytest.raises(ValueError, match="entries"):
        add_reverse_edges(ei, et, 3, relation_inverse=[1])


def test_relation_transform_full_and_basis_agree() -> None:
    torch.manual_seed(0)
    x = torch.randn(4, 3)
    index, rel = torch.tensor([0, 3, 1, 0]), torch.tensor([1, 0, 1, 2])
    basis, comp = torch.randn(2, 3, 5), torch.randn(3, 2)
    weight = torch.einsum("rb,bio->rio", comp, basis)
    full = relation_transform(x, index, rel, weight)
    expected = torch.stack([x[i] @ weight[r] for i, r in zip(index, rel, strict=True)])
    torch.testing.assert_close(full, expected)
    torch.testing.assert_close(relation_transform(x, index, rel, None, basis, comp), expected)
