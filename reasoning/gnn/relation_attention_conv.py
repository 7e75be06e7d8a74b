r"""Question-conditioned, transparent multi-hop propagation (TransferNet-style)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch_geometric.nn import MessagePassing

from .film_rgcn_conv import broadcast_query

__all__ = ["RelationAttentionConv", "add_reverse_edges"]

_RELATION_NORMS = ("sigmoid", "softmax")
_ACTIVATION_NORMS = ("clamp", "max", "none")


def add_reverse_edges(edge_index: Tensor, edge_type: Tensor, num_relations: int,
                      relation_inverse: Sequence[int] | None = None) -> tuple[Tensor, Tensor]:
    r"""Append every edge reversed: ``([2, 2E], [2E])``.

    Edge ``E + e`` is edge ``e`` reversed (``dst → src``). Its relation is ``r + R``, or
    ``relation_inverse[r]`` where that is ``≥ 0`` (e.g. :attr:`CompiledKG.relation_inverse`:
    the reverse of a ``hypernym`` edge is a ``hyponym`` edge), so the convs need ``2R``
    relation types. A graph that already stores both directions of an inverse pair gets
    those edges twice.
    """
    rev_type = edge_type + num_relations
    if relation_inverse is not None:
        inv = torch.as_tensor(list(relation_inverse), dtype=edge_type.dtype,
                              device=edge_type.device)
        if inv.numel() != num_relations:
            raise ValueError(f"relation_inverse has {inv.numel()} entries, expected "
                             f"{num_relations}")
        if edge_type.numel():
            mapped = inv[edge_type]
            rev_type = torch.where(mapped >= 0, mapped, rev_type)
    return (torch.cat([edge_index, edge_index.flip(0)], dim=1),
            torch.cat([edge_type, rev_type]))


class RelationAttentionConv(MessagePassing):
    r"""One step of question-guided activation transfer along typed edges.

    At step :math:`t` (one layer) the query picks relations, edges carry the activation
    :math:`p` of their source forward, and node states follow the same weighted edges:

    .. math::
        \mathbf{a}_t = \sigma(\mathbf{W}_t \mathbf{q} + \mathbf{b}_t) \in [0,1]^R
        \quad(\text{or } \mathrm{softmax} \text{ over } R)

        s_e = a_t[r_e] \cdot \sigma\big(\mathbf{w}^\top[\mathbf{h}_u ; \mathbf{h}_v ;
        \mathbf{q}] + c\big) \quad (\text{second factor only with } \texttt{edge\_gate})

        p_{t+1}(v) = \mathrm{clamp}\Big(\sum_{e=(u \to v)} p_t(u)\, s_e,\ 0,\ 1\Big)

        \mathbf{h}_v' = \mathbf{W}_0 \mathbf{h}_v + \mathbf{b} + \frac{1}{\max(1, d_v)}
        \sum_{e=(u \to v)} s_e \big(\mathbf{W}_1 \mathbf{h}_u + \mathbf{e}_{r_e}\big)

    with :math:`\mathbf{q}` the query of the edge's graph, :math:`d_v` the in-degree of
    :math:`v` and :math:`\mathbf{e}_r` a learned relation embedding. ``activation_norm="max"``
    instead divides :math:`z_v = \sum p_t(u) s_e` by :math:`\max(1, \max_{w \in g(v)} z_w)`
    (TransferNet's normalisation, it keeps gradients above 1); ``"none"`` keeps :math:`z_v`.

    Direction: messages flow ``edge_index[0] → edge_index[1]``. To walk edges backwards as a
    distinct relation, either pass reversed edges yourself (e.g. from
    :func:`add_reverse_edges`, with inverse relation ids) and count them in ``num_relations``,
    or set ``add_reverse=True``: the layer then appends edge ``e`` reversed as edge
    ``E + e`` with relation ``r_e + R``, ``a_t`` has ``2R`` entries and the returned scores
    have ``2E`` entries (forward edges first).

    Args:
        in_channels: ``C_in`` of the node states.
        out_channels: ``C_out``.
        num_relations: ``R``.
        query_dim: ``Dq``.
        add_reverse: append reversed edges with relations ``r + R`` (see above).
        relation_norm: ``"sigmoid"`` (independent weights) or ``"softmax"`` (over relations).
        activation_norm: ``"clamp"``, ``"max"`` or ``"none"`` (see above).
        edge_gate: multiply by the content gate :math:`\sigma(\mathbf{w}^\top[\mathbf{h}_u;
            \mathbf{h}_v;\mathbf{q}] + c)`.
        bias: learn ``b``.

    Shapes:
        input ``x [N, C_in]``, ``activation [N]``, ``edge_index [2, E]``, ``edge_type [E]``,
        ``query [B, Dq]``, ``batch [N]`` (optional for one graph);
        output ``(h [N, C_out], activation [N], edge_score [E] or [2E])``.
    """

    def __init__(self, in_channels: int, out_channels: int, num_relations: int, query_dim: int,
                 *, add_reverse: bool = False, relation_norm: str = "sigmoid",
                 activation_norm: str = "clamp", edge_gate: bool = False,
                 bias: bool = True) -> None:
        super().__init__(aggr="add", node_dim=0)
        if relation_norm not in _RELATION_NORMS:
            raise ValueError(f"relation_norm must be one of {_RELATION_NORMS}, "
                             f"got {relation_norm!r}")
        if activation_norm not in _ACTIVATION_NORMS:
            raise ValueError(f"activation_norm must be one of {_ACTIVATION_NORMS}, "
                             f"got {activation_norm!r}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.num_relations, self.query_dim = num_relations, query_dim
        self.add_reverse = add_reverse
        self.relation_norm, self.activation_norm = relation_norm, activation_norm
        r_eff = 2 * num_relations if add_reverse else num_relations
        self.rel_lin = nn.Linear(query_dim, r_eff)
        self.rel_emb = nn.Parameter(torch.empty(r_eff, out_channels))
        self.lin_msg = nn.Linear(in_channels, out_channels, bias=False)
        self.lin_root = nn.Linear(in_channels, out_channels, bias=bias)
        self.gate = nn.Linear(2 * in_channels + query_dim, 1) if edge_gate else None
        self.reset_parameters()

    @property
    def num_edge_types(self) -> int:
        """Number of relation weights per step (``2R`` with ``add_reverse``)."""
        return self.rel_lin.out_features

    def reset_parameters(self) -> None:
        self.rel_lin.reset_parameters()
        nn.init.normal_(self.rel_emb, std=0.1)
        self.lin_msg.reset_parameters()
        self.lin_root.reset_parameters()
        if self.gate is not None:
            self.gate.reset_parameters()

    def relation_weights(self, query: Tensor) -> Tensor:
        """``a_t`` for every graph: ``[B, R]`` (``[B, 2R]`` with ``add_reverse``)."""
        logits = self.rel_lin(query if query.dim() == 2 else query.unsqueeze(0))
        if self.relation_norm == "softmax":
            return logits.softmax(dim=-1)
        return torch.sigmoid(logits)

    def edge_scores(self, x: Tensor, edge_index: Tensor, edge_type: Tensor, query: Tensor,
                    batch: Tensor | None, rel_weights: Tensor | None = None) -> Tensor:
        """``s_e`` for the given (already reversed, if wanted) edges: ``[E]``."""
        src, dst = edge_index
        a = self.relation_weights(query) if rel_weights is None else rel_weights
        graph = torch.zeros_like(src) if batch is None else batch[src]
        s = a[graph, edge_type]
        if self.gate is not None:
            q_e = broadcast_query(query, batch, x.size(0))[src]
            s = s * torch.sigmoid(self.gate(torch.cat([x[src], x[dst], q_e], -1))).squeeze(-1)
        return s

    def forward(self, x: Tensor, activation: Tensor, edge_index: Tensor, edge_type: Tensor,
                query: Tensor, batch: Tensor | None = None,
                rel_weights: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """One step; ``rel_weights [B, R]`` overrides ``a_t`` (e.g. to force a relation)."""
        n = x.size(0)
        if self.add_reverse:
            edge_index, edge_type = add_reverse_edges(edge_index, edge_type, self.num_relations)
        s = self.edge_scores(x, edge_index, edge_type, query, batch, rel_weights)
        src, dst = edge_index
        z = x.new_zeros(n).index_add_(0, dst, activation[src] * s)
        if self.activation_norm == "clamp":
            p = z.clamp(0.0, 1.0)
        elif self.activation_norm == "max":
            graph = torch.zeros(n, dtype=torch.long, device=x.device) if batch is None else batch
            n_graphs = int(graph.max()) + 1 if n else 0
            peak = z.new_zeros(n_graphs).scatter_reduce(0, graph, z, "amax", include_self=True)
            p = z / peak.clamp(min=1.0)[graph]
        else:
            p = z
        deg = torch.bincount(dst, minlength=n).clamp(min=1).to(x.dtype)
        msg_in = self.lin_msg(x)
        agg = self.propagate(edge_index, h=msg_in, s=s, rel=self.rel_emb[edge_type],
                             size=(n, n))
        h = self.lin_root(x) + agg / deg.unsqueeze(-1)
        return h, p, s

    def message(self, h_j: Tensor, s: Tensor, rel: Tensor) -> Tensor:
        return s.unsqueeze(-1) * (h_j + rel)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.in_channels}, {self.out_channels}, "
                f"num_relations={self.num_relations}, add_reverse={self.add_reverse})")
