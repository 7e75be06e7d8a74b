r"""Relational graph attention conditioned on a per-graph query (attention term + FiLM)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import MessagePassing
from torch_geometric.utils import softmax

from .film_rgcn_conv import FiLM, broadcast_query, relation_transform

__all__ = ["FiLMRGATConv"]


class FiLMRGATConv(MessagePassing):
    r"""Multi-head relational graph attention with the query in the scores and a FiLM output.

    For an edge :math:`j \to i` of relation :math:`r` and head :math:`k`:

    .. math::
        e_{ij}^{k} = \mathrm{LeakyReLU}\Big(\mathbf{a}_k^\top\big[\mathbf{W}_r^k \mathbf{h}_i ;
        \mathbf{W}_r^k \mathbf{h}_j ; \mathbf{e}_r ; \mathbf{q}\big]
        + (\mathbf{P}_k \mathbf{q})^\top \mathbf{e}_r\Big), \qquad
        \alpha_{ij}^{k} = \operatorname{softmax}_{j \in \mathcal{N}(i)} e_{ij}^{k}

        \mathbf{h}_i' = \big\Vert_{k=1}^{K} \sum_{j \in \mathcal{N}(i)} \alpha_{ij}^{k}
        \mathbf{W}_{r}^{k} \mathbf{h}_j \;\Big(\text{or } \tfrac{1}{K}\textstyle\sum_k\Big)
        + \mathbf{W}_{\mathrm{res}} \mathbf{h}_i + \mathbf{b}

        \mathbf{h}_i'' = \boldsymbol\gamma(\mathbf{q}) \odot \mathbf{h}_i'
        + \boldsymbol\beta(\mathbf{q})

    The softmax runs over all incoming edges of :math:`i` (of every relation);
    :math:`\mathbf{e}_r` is a learned relation embedding; :math:`\mathbf{q}` is the query of
    :math:`i`'s graph. The bilinear query–relation term :math:`(\mathbf{P}_k\mathbf{q})^\top
    \mathbf{e}_r` is an addition to the plain concatenation: :math:`\mathbf{a}^\top\mathbf{q}`
    is the same for all of a node's incoming edges and all but cancels in the softmax, so
    without it the query could not pick which relations to attend to. FiLM is as in
    :class:`~kgmm.reasoning.gnn.FiLM` (γ = 1, β = 0 gives the unconditioned layer).
    ``W_r`` may use a basis decomposition. Messages flow ``edge_index[0] → edge_index[1]``;
    pass reversed edges (:func:`~kgmm.reasoning.gnn.add_reverse_edges`) to walk both ways.

    Args:
        in_channels: ``C_in``.
        out_channels: ``C`` per head.
        num_relations: ``R``.
        query_dim: ``Dq``.
        heads: ``K``.
        concat: concatenate the heads (output ``K·C``) or average them (output ``C``).
        num_bases: basis decomposition of ``W_r`` (``None`` = full matrices).
        relation_dim: size of ``e_r`` (default ``C``).
        negative_slope: LeakyReLU slope.
        dropout: dropout on ``α`` during training (the returned ``α`` is before dropout).
        residual: add ``W_res h_i``.
        film: apply FiLM.

    Shapes:
        input ``x [N, C_in]``, ``edge_index [2, E]``, ``edge_type [E]``, ``query [B, Dq]``,
        ``batch [N]`` (optional for one graph); output ``(h [N, K·C] or [N, C], alpha [E, K])``.
    """

    def __init__(self, in_channels: int, out_channels: int, num_relations: int, query_dim: int,
                 heads: int = 1, concat: bool = True, num_bases: int | None = None,
                 relation_dim: int | None = None, negative_slope: float = 0.2,
                 dropout: float = 0.0, residual: bool = True, bias: bool = True,
                 film: bool = True) -> None:
        super().__init__(aggr="add", node_dim=0)
        self.in_channels, self.out_channels, self.heads = in_channels, out_channels, heads
        self.num_relations, self.query_dim, self.num_bases = num_relations, query_dim, num_bases
        self.concat, self.negative_slope, self.dropout = concat, negative_slope, dropout
        hc = heads * out_channels
        self.relation_dim = relation_dim or out_channels
        if num_bases is not None:
            self.basis = nn.Parameter(torch.empty(num_bases, in_channels, hc))
            self.comp = nn.Parameter(torch.empty(num_relations, num_bases))
            self.register_parameter("weight", None)
        else:
            self.weight = nn.Parameter(torch.empty(num_relations, in_channels, hc))
            self.register_parameter("basis", None)
            self.register_parameter("comp", None)
        self.rel_emb = nn.Parameter(torch.empty(num_relations, self.relation_dim))
        self.att_dst = nn.Parameter(torch.empty(heads, out_channels))
        self.att_src = nn.Parameter(torch.empty(heads, out_channels))
        self.att_rel = nn.Parameter(torch.empty(heads, self.relation_dim))
        self.att_query = nn.Linear(query_dim, heads)
        self.query_rel = nn.Linear(query_dim, heads * self.relation_dim, bias=False)
        out_dim = hc if concat else out_channels
        self.out_dim = out_dim
        self.res = nn.Linear(in_channels, out_dim, bias=False) if residual else None
        self.bias = nn.Parameter(torch.empty(out_dim)) if bias else None
        self.film = FiLM(query_dim, out_dim) if film else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.in_channels)
        for p in (self.weight, self.basis):
            if p is not None:
                nn.init.uniform_(p, -bound, bound)
        if self.comp is not None:
            nn.init.uniform_(self.comp, -1.0, 1.0)
        nn.init.normal_(self.rel_emb, std=1.0 / math.sqrt(self.relation_dim))
        for att in (self.att_dst, self.att_src, self.att_rel):
            nn.init.xavier_uniform_(att)
        self.att_query.reset_parameters()
        self.query_rel.reset_parameters()
        if self.res is not None:
            self.res.reset_parameters()
        if self.bias is not None:
            nn.init.zeros_(self.bias)
        if self.film is not None:
            self.film.reset_parameters()

    def forward(self, x: Tensor, edge_index: Tensor, edge_type: Tensor, query: Tensor,
                batch: Tensor | None = None) -> tuple[Tensor, Tensor]:
        n, k, c = x.size(0), self.heads, self.out_channels
        src, dst = edge_index
        q_nodes = broadcast_query(query, batch, n)
        wh_j = relation_transform(x, src, edge_type, self.weight, self.basis, self.comp)
        wh_i = relation_transform(x, dst, edge_type, self.weight, self.basis, self.comp)
        wh_j, wh_i = wh_j.view(-1, k, c), wh_i.view(-1, k, c)
        e_r = self.rel_emb[edge_type]  # [E, De]
        q_e = q_nodes[dst]  # [E, Dq]
        q_rel = self.query_rel(q_e).view(-1, k, self.relation_dim)
        logit = ((wh_i * self.att_dst).sum(-1) + (wh_j * self.att_src).sum(-1)
                 + e_r @ self.att_rel.t() + self.att_query(q_e)
                 + (q_rel * e_r.unsqueeze(1)).sum(-1))
        logit = F.leaky_relu(logit, self.negative_slope)
        alpha = softmax(logit, dst, num_nodes=n)  # [E, K]
        alpha_used = F.dropout(alpha, p=self.dropout, training=self.training)
        out = self.propagate(edge_index, msg=alpha_used.unsqueeze(-1) * wh_j, size=(n, n))
        out = out.reshape(n, k * c) if self.concat else out.mean(dim=1)
        if self.res is not None:
            out = out + self.res(x)
        if self.bias is not None:
            out = out + self.bias
        if self.film is not None:
            out = self.film(out, q_nodes)
        return out, alpha

    def message(self, msg: Tensor) -> Tensor:
        return msg

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.in_channels}, {self.out_channels}, "
                f"num_relations={self.num_relations}, heads={self.heads})")
