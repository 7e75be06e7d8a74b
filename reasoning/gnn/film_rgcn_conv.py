r"""R-GCN with basis decomposition, conditioned on a per-graph query by FiLM.

Also home of the pieces the other query-conditioned convs share: :class:`FiLM`,
:func:`broadcast_query` and :func:`relation_transform`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch_geometric.nn import MessagePassing

__all__ = ["FiLM", "FiLMRGCNConv", "broadcast_query", "relation_transform"]


def broadcast_query(query: Tensor, batch: Tensor | None, num_nodes: int) -> Tensor:
    """The per-graph query ``[B, Dq]`` repeated for every node: ``[N, Dq]``.

    ``query`` may be ``[Dq]`` or ``[1, Dq]`` when ``batch`` is ``None`` (one graph).
    """
    if query.dim() == 1:
        query = query.unsqueeze(0)
    if batch is None:
        if query.size(0) != 1:
            raise ValueError(f"query has {query.size(0)} rows but no batch vector was given")
        return query.expand(num_nodes, -1)
    return query[batch]


class FiLM(nn.Module):
    r"""Feature-wise linear modulation by a query (Perez et al., 2018).

    .. math::
        \mathbf{h}'' = \boldsymbol\gamma(\mathbf{q}) \odot \mathbf{h}
        + \boldsymbol\beta(\mathbf{q}), \qquad
        \boldsymbol\gamma(\mathbf{q}) = \mathbf{1} + \mathbf{W}_\gamma \mathbf{q}
        + \mathbf{b}_\gamma, \qquad
        \boldsymbol\beta(\mathbf{q}) = \mathbf{W}_\beta \mathbf{q} + \mathbf{b}_\beta

    With :math:`\mathbf{W}, \mathbf{b} = 0` it is the identity (``γ = 1, β = 0``).

    Shapes:
        ``h: [N, C]``, ``q: [N, Dq]`` (already broadcast to the rows of ``h``) → ``[N, C]``.
    """

    def __init__(self, query_dim: int, channels: int) -> None:
        super().__init__()
        self.lin = nn.Linear(query_dim, 2 * channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.lin.reset_parameters()

    def gamma_beta(self, q: Tensor) -> tuple[Tensor, Tensor]:
        d_gamma, beta = self.lin(q).chunk(2, dim=-1)
        return 1.0 + d_gamma, beta

    def forward(self, h: Tensor, q: Tensor) -> Tensor:
        gamma, beta = self.gamma_beta(q)
        return gamma * h + beta


def relation_transform(x: Tensor, index: Tensor, edge_type: Tensor, weight: Tensor | None,
                       basis: Tensor | None = None, comp: Tensor | None = None) -> Tensor:
    r"""Per-edge :math:`\mathbf{W}_{r_e} \mathbf{x}_{\mathrm{index}_e}`: ``[E, C_out]``.

    Either a full ``weight [R, C_in, C_out]`` (a loop over the relations present) or a basis
    decomposition :math:`\mathbf{W}_r = \sum_b a_{rb} \mathbf{V}_b` with ``basis [B, C_in,
    C_out]`` and ``comp [R, B]`` (vectorised: ``x V_b`` for every node, then a per-edge mix).
    """
    if basis is not None and comp is not None:
        n_basis, c_in, c_out = basis.shape
        xb = (x @ basis.permute(1, 0, 2).reshape(c_in, n_basis * c_out)).view(-1, n_basis, c_out)
        return torch.einsum("eb,ebo->eo", comp[edge_type], xb[index])
    assert weight is not None
    out = x.new_zeros(index.numel(), weight.size(-1))
    for r in torch.unique(edge_type).tolist():
        mask = edge_type == r
        out[mask] = x[index[mask]] @ weight[r]
    return out


class FiLMRGCNConv(MessagePassing):
    r"""Relational GCN (Schlichtkrull et al., 2018) followed by FiLM from the query.

    .. math::
        \mathbf{h}_i' = \mathbf{W}_0 \mathbf{h}_i + \mathbf{b} + \sum_{r=1}^{R}
        \sum_{j \in \mathcal{N}_r(i)} \frac{1}{|\mathcal{N}_r(i)|} \mathbf{W}_r \mathbf{h}_j,
        \qquad \mathbf{W}_r = \sum_{b=1}^{B} a_{rb} \mathbf{V}_b \text{ (with bases)}

        \mathbf{h}_i'' = \boldsymbol\gamma(\mathbf{q}_{g(i)}) \odot \mathbf{h}_i'
        + \boldsymbol\beta(\mathbf{q}_{g(i)})

    :math:`\mathcal{N}_r(i)` are the sources of edges of relation :math:`r` into :math:`i`
    (messages flow ``edge_index[0] → edge_index[1]``); :math:`g(i)` is node :math:`i`'s graph
    and :math:`\boldsymbol\gamma = 1 + \mathbf{W}_\gamma\mathbf{q} + \mathbf{b}_\gamma`,
    :math:`\boldsymbol\beta = \mathbf{W}_\beta\mathbf{q} + \mathbf{b}_\beta` (see :class:`FiLM`).
    To traverse edges both ways, pass the reversed edges with their own relation ids (see
    :func:`~kgmm.reasoning.gnn.add_reverse_edges`).

    Args:
        in_channels: ``C_in``.
        out_channels: ``C_out``.
        num_relations: ``R`` (edge types ``0 … R−1``).
        query_dim: ``Dq``.
        num_bases: ``B`` for the basis decomposition; ``None`` = one full matrix per relation.
        bias: learn ``b``.
        film: apply FiLM (``False`` gives the plain R-GCN, ignoring the query).

    Shapes:
        input ``x [N, C_in]``, ``edge_index [2, E]``, ``edge_type [E]``, ``query [B, Dq]``,
        ``batch [N]`` (optional for one graph) → ``[N, C_out]``.
    """

    def __init__(self, in_channels: int, out_channels: int, num_relations: int, query_dim: int,
                 num_bases: int | None = None, bias: bool = True, film: bool = True) -> None:
        super().__init__(aggr="add", node_dim=0)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.num_relations, self.query_dim, self.num_bases = num_relations, query_dim, num_bases
        if num_bases is not None:
            self.basis = nn.Parameter(torch.empty(num_bases, in_channels, out_channels))
            self.comp = nn.Parameter(torch.empty(num_relations, num_bases))
            self.register_parameter("weight", None)
        else:
            self.weight = nn.Parameter(torch.empty(num_relations, in_channels, out_channels))
            self.register_parameter("basis", None)
            self.register_parameter("comp", None)
        self.root = nn.Linear(in_channels, out_channels, bias=bias)
        self.film = FiLM(query_dim, out_channels) if film else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.in_channels)
        for p in (self.weight, self.basis):
            if p is not None:
                nn.init.uniform_(p, -bound, bound)
        if self.comp is not None:
            nn.init.uniform_(self.comp, -1.0, 1.0)
        self.root.reset_parameters()
        if self.film is not None:
            self.film.reset_parameters()

    def relation_weight(self) -> Tensor:
        """``W_r`` for every relation: ``[R, C_in, C_out]``."""
        if self.weight is not None:
            return self.weight
        return torch.einsum("rb,bio->rio", self.comp, self.basis)

    @staticmethod
    def edge_norm(edge_index: Tensor, edge_type: Tensor, num_nodes: int,
                  num_relations: int) -> Tensor:
        r""":math:`1/|\mathcal{N}_{r_e}(\mathrm{dst}_e)|` for every edge: ``[E]``."""
        key = edge_index[1] * num_relations + edge_type
        count = torch.bincount(key, minlength=num_nodes * num_relations)
        return 1.0 / count[key].to(torch.get_default_dtype())

    def forward(self, x: Tensor, edge_index: Tensor, edge_type: Tensor, query: Tensor,
                batch: Tensor | None = None) -> Tensor:
        n = x.size(0)
        msg = relation_transform(x, edge_index[0], edge_type, self.weight, self.basis, self.comp)
        norm = self.edge_norm(edge_index, edge_type, n, self.num_relations).to(x.dtype)
        out = self.propagate(edge_index, msg=msg * norm.unsqueeze(-1), size=(n, n))
        out = out + self.root(x)
        if self.film is not None:
            out = self.film(out, broadcast_query(query, batch, n))
        return out

    def message(self, msg: Tensor) -> Tensor:
        return msg

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.in_channels}, {self.out_channels}, "
                f"num_relations={self.num_relations}, num_bases={self.num_bases})")
