r"""``KGReasoner``: a relation-aware GNN over a question's KG subgraph, conditioned on the query.

One forward pass over a PyG ``Batch`` of subgraphs (see :func:`make_reasoner_batch`):

1. node input ``u_v = [m_v x_v ; node_extra_v ; seed_v]`` → ``h_v^0 = ReLU(W_in u_v)``, where
   ``m_v ~ Bernoulli(1 − node_text_dropout)`` while training (1 at inference): with the
   node's text hidden, the answer must be found from structure and grounding alone, which is
   what carries over to entities never seen as answers;
   query ``q̃ = MLP(q)`` (``hidden``-sized, shared by every layer);
2. ``layers`` query-conditioned convs over the edges and, with ``add_reverse``, their
   reverses (relation ``r + R`` or ``relation_inverse[r]``) —
   :class:`~kgmm.reasoning.gnn.RelationAttentionConv` (also propagates the activation
   ``p_t`` from ``p_0 = seed``), :class:`~kgmm.reasoning.gnn.FiLMRGATConv` or
   :class:`~kgmm.reasoning.gnn.FiLMRGCNConv`;
3. node scores ``ℓ_v = MLP([h_v ; q̃ ; p_v]) + λ·log(p_v + 10⁻³)`` with
   ``p_v = Σ_t c_t p_t(v)``, ``c = softmax(W_c q̃)`` over the steps (relation_attention;
   TransferNet's hop attention, so the chain may be shorter than ``layers``; ``λ`` is learned,
   starting at 1, and ties the score to the transparent activation — without it the MLP
   memorised training graphs through ``h`` and generalised worse), or ``ℓ_v = MLP([h_v ; q̃ ;
   seed_v])`` (rgat, rgcn); with ``feature_score`` a query-chosen linear read of the node's
   own input features is added, ``ℓ_v += (W_f q̃)ᵀ [node_extra_v ; seed_v]`` — "the leftmost
   object" weighs the x-rank column directly instead of learning it through an MLP;
4. pooled graph state ``g = [mean_v h_v ; Σ_v π_v h_v]`` with ``π = softmax_graph(ℓ)``;
   vocabulary logits ``MLP([q̃ ; g])`` and the gate ``σ(MLP([q̃ ; g]))`` = P(answer is a node).
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import Batch, Data
from torch_geometric.utils import softmax as segment_softmax

from .gnn import FiLMRGATConv, FiLMRGCNConv, RelationAttentionConv, add_reverse_edges

__all__ = [
    "CONVS",
    "Candidate",
    "KGReasoner",
    "KGReasonerConfig",
    "ReasonerOutput",
    "make_reasoner_batch",
    "predict",
    "reasoner_loss",
    "segment_logsumexp",
]

#: Conv names accepted by :class:`KGReasonerConfig`.
CONVS = ("relation_attention", "rgat", "rgcn")
CONFIG_NAME = "kgmm_reasoner.json"
WEIGHTS_NAME = "model.safetensors"
ACTIVATION_EPS = 1e-3


@dataclass
class KGReasonerConfig:
    """Settings of a :class:`KGReasoner`; ``to_dict()`` / ``from_dict()`` round-trip via JSON.

    Attributes:
        conv: ``"relation_attention"``, ``"rgat"`` or ``"rgcn"``.
        node_dim: node feature size (e.g. 384 for MiniLM node-text embeddings).
        extra_node_dim: size of ``node_extra`` (hop one-hot, log-degree, visual similarity …).
        query_dim: size of the fused question/image vector.
        hidden: node state size.
        layers: message-passing steps (hops).
        heads: attention heads (rgat; must divide ``hidden``).
        num_relations: ``R`` of the KG.
        dropout: dropout on node states (and rgat attention).
        vocab_size: answers outside the KG (0 = node answers only).
        use_gate: learned gate; otherwise nodes and vocabulary share one softmax and the gate
            is the node share of it.
        add_reverse: also walk every edge backwards (relation ``r + R``).
        relation_inverse: optional inverse relation ids (``CompiledKG.relation_inverse``),
            used for reversed edges where ``≥ 0``.
        num_bases: basis decomposition for rgcn/rgat relation matrices.
        relation_norm: relation_attention: ``"softmax"`` over relations (default: one
            relation per hop, learned reliably on the synthetic multi-hop task) or
            ``"sigmoid"`` (independent weights; it tends to leave extra relations open).
        activation_norm: relation_attention: ``"clamp"``, ``"max"`` or ``"none"``.
        edge_gate: relation_attention: content gate on each edge.
    """

    conv: str = "relation_attention"
    node_dim: int = 384
    extra_node_dim: int = 0
    query_dim: int = 256
    hidden: int = 128
    layers: int = 2
    heads: int = 4
    num_relations: int = 1
    dropout: float = 0.1
    vocab_size: int = 0
    use_gate: bool = True
    add_reverse: bool = True
    relation_inverse: list[int] | None = None
    num_bases: int | None = None
    relation_norm: str = "softmax"
    activation_norm: str = "clamp"
    edge_gate: bool = False
    feature_score: bool = False
    node_text_dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.conv not in CONVS:
            raise ValueError(f"unknown conv {self.conv!r}; valid: {', '.join(CONVS)}")
        if self.conv == "rgat" and self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be divisible by heads ({self.heads})")
        if self.layers < 1 or self.num_relations < 1:
            raise ValueError("layers and num_relations must be >= 1")
        if self.relation_inverse is not None:
            self.relation_inverse = [int(r) for r in self.relation_inverse]
            if len(self.relation_inverse) != self.num_relations:
                raise ValueError("relation_inverse needs one entry per relation")

    @property
    def edge_types(self) -> int:
        """Relation types the convs see (``2R`` with ``add_reverse``)."""
        return 2 * self.num_relations if self.add_reverse else self.num_relations

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KGReasonerConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown KGReasonerConfig keys: {sorted(unknown)}")
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> KGReasonerConfig:
        return cls.from_dict(json.loads(text))


@dataclass
class ReasonerOutput:
    """What :class:`KGReasoner` returns for a batch of ``B`` graphs with ``N`` nodes.

    Attributes:
        node_logits: ``[N]`` score of each node being the answer.
        vocab_logits: ``[B, V]``.
        gate: ``[B]`` probability that the answer is a KG node.
        gate_logit: ``[B]`` its logit (``+inf`` when ``V = 0``).
        edge_scores: one ``[E']`` tensor per layer: relation_attention ``s_e``, rgat ``α``
            averaged over heads, rgcn its fixed ``1/|N_r(i)|`` (no learned edge weight).
            With ``add_reverse`` ``E' = 2E``: the batch's edges, then the same edges reversed.
        node_activation: ``[N]`` final ``p`` (relation_attention) or the within-graph softmax
            of ``node_logits``.
        edge_index: ``[2, E']`` the edges the convs used.
        edge_type: ``[E']`` their relation ids.
        step_activations: relation_attention: ``p_t`` after each layer (``[N]`` each).
        feature_terms: with ``feature_score``, ``[N, F]`` its per-feature terms
            ``(W_f q̃)_j · u_j`` over ``u = [node_extra ; seed]`` (they sum to the term added
            to ``node_logits``); else None.
    """

    node_logits: Tensor
    vocab_logits: Tensor
    gate: Tensor
    gate_logit: Tensor
    edge_scores: list[Tensor]
    node_activation: Tensor
    edge_index: Tensor
    edge_type: Tensor
    step_activations: list[Tensor] = field(default_factory=list)
    feature_terms: Tensor | None = None


def make_reasoner_batch(graphs: Sequence[Data], queries: Tensor) -> Batch:
    """Batch subgraphs with one query row each; the inputs are not modified.

    Each graph needs ``x`` and ``edge_index``; ``edge_type`` defaults to zeros and
    ``seed_score`` to ``seed_mask`` (as float) or zeros. ``queries [B, Dq]`` is stored per
    graph as ``query [1, Dq]`` so PyG concatenates it to ``batch.query [B, Dq]``.
    """
    if queries.dim() != 2 or queries.size(0) != len(graphs):
        raise ValueError(f"queries must be [B={len(graphs)}, Dq], got {tuple(queries.shape)}")
    items = []
    for graph, query in zip(graphs, queries, strict=True):
        g = copy.copy(graph)
        if getattr(g, "x", None) is None:
            raise ValueError("every graph needs node features x")
        n = g.num_nodes
        if getattr(g, "edge_type", None) is None:
            g.edge_type = torch.zeros(g.edge_index.size(1), dtype=torch.long)
        if getattr(g, "seed_score", None) is None:
            mask = getattr(g, "seed_mask", None)
            g.seed_score = (mask.to(torch.float) if mask is not None else torch.zeros(n))
        g.query = query.unsqueeze(0)
        items.append(g)
    return Batch.from_data_list(items)


def segment_logsumexp(x: Tensor, index: Tensor, num_segments: int) -> Tensor:
    """``log Σ exp x`` per segment: ``[num_segments]`` (``−inf`` for empty segments)."""
    peak = x.new_full((num_segments,), float("-inf")).scatter_reduce(
        0, index, x, "amax", include_self=True)
    safe = torch.where(torch.isfinite(peak), peak, torch.zeros_like(peak)).detach()
    total = x.new_zeros(num_segments).index_add_(0, index, torch.exp(x - safe[index]))
    # log(0) would be −inf with an infinite gradient, and 0·∞ = NaN even where the caller masks
    # the segment out: take the log of a safe value and put −inf back without a gradient.
    nonempty = total > 0
    logged = torch.log(torch.where(nonempty, total, torch.ones_like(total))) + safe
    return torch.where(nonempty, logged, torch.full_like(logged, float("-inf")))


def _mlp(d_in: int, hidden: int, d_out: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Dropout(dropout),
                         nn.Linear(hidden, d_out))


class KGReasoner(nn.Module):
    """Answer scoring over a KG subgraph (see the module docstring for the computation).

    Input: a ``Batch`` from :func:`make_reasoner_batch` with ``x [N, node_dim]``,
    ``node_extra [N, extra_node_dim]`` (when ``extra_node_dim > 0``), ``edge_index``,
    ``edge_type``, ``seed_score [N]``, ``batch [N]`` and ``query [B, query_dim]``.
    Output: :class:`ReasonerOutput`.
    """

    def __init__(self, config: KGReasonerConfig) -> None:
        super().__init__()
        self.config = c = config
        h = c.hidden
        self.input = nn.Linear(c.node_dim + c.extra_node_dim + 1, h)
        self.query = nn.Sequential(nn.Linear(c.query_dim, h), nn.ReLU(), nn.Linear(h, h))
        self.convs = nn.ModuleList()
        for _ in range(c.layers):
            if c.conv == "relation_attention":
                conv: nn.Module = RelationAttentionConv(
                    h, h, c.edge_types, h, relation_norm=c.relation_norm,
                    activation_norm=c.activation_norm, edge_gate=c.edge_gate)
            elif c.conv == "rgat":
                conv = FiLMRGATConv(h, h // c.heads, c.edge_types, h, heads=c.heads,
                                    num_bases=c.num_bases, dropout=c.dropout)
            else:
                conv = FiLMRGCNConv(h, h, c.edge_types, h, num_bases=c.num_bases)
            self.convs.append(conv)
        self.hop = nn.Linear(h, c.layers) if c.conv == "relation_attention" else None
        self.p_scale = nn.Parameter(torch.ones(())) if self.hop is not None else None
        self.scorer = _mlp(2 * h + 1, h, 1, c.dropout)
        self.feature_score = nn.Linear(h, c.extra_node_dim + 1) if c.feature_score else None
        self.vocab_head = _mlp(3 * h, h, c.vocab_size, c.dropout) if c.vocab_size else None
        self.gate_head = _mlp(3 * h, h, 1, c.dropout) if c.use_gate and c.vocab_size else None
        self.dropout = nn.Dropout(c.dropout)

    def reset_parameters(self) -> None:
        for module in self.modules():
            if module is not self and hasattr(module, "reset_parameters"):
                module.reset_parameters()
        if self.p_scale is not None:
            nn.init.ones_(self.p_scale)

    def forward(self, batch: Batch | Data) -> ReasonerOutput:
        c = self.config
        x = batch.x
        n = x.size(0)
        b = getattr(batch, "batch", None)
        if b is None:
            b = torch.zeros(n, dtype=torch.long, device=x.device)
        query = batch.query if batch.query.dim() == 2 else batch.query.unsqueeze(0)
        n_graphs = query.size(0)
        seed = batch.seed_score.to(x.dtype)
        if self.training and c.node_text_dropout > 0:
            keep = torch.rand(n, 1, device=x.device) >= c.node_text_dropout
            x = x * keep.to(x.dtype)
        parts = [x]
        if c.extra_node_dim:
            extra = getattr(batch, "node_extra", None)
            if extra is None:
                raise ValueError(f"config.extra_node_dim={c.extra_node_dim} but the batch "
                                 "has no node_extra")
            parts.append(extra.to(x.dtype))
        parts.append(seed.unsqueeze(-1))
        h = self.dropout(F.relu(self.input(torch.cat(parts, dim=-1))))
        q = self.query(query)
        edge_index, edge_type = batch.edge_index, batch.edge_type
        if c.add_reverse:
            edge_index, edge_type = add_reverse_edges(edge_index, edge_type, c.num_relations,
                                                      c.relation_inverse)
        p = seed.clamp(0.0, 1.0)
        steps: list[Tensor] = []
        edge_scores: list[Tensor] = []
        for conv in self.convs:
            if isinstance(conv, RelationAttentionConv):
                h_new, p, score = conv(h, p, edge_index, edge_type, q, b)
                steps.append(p)
            elif isinstance(conv, FiLMRGATConv):
                h_new, alpha = conv(h, edge_index, edge_type, q, b)
                score = alpha.mean(dim=-1)
            else:
                h_new = conv(h, edge_index, edge_type, q, b)
                score = FiLMRGCNConv.edge_norm(edge_index, edge_type, n, c.edge_types)
            edge_scores.append(score)
            h = self.dropout(F.relu(h_new))
        if self.hop is not None:
            hop_weights = self.hop(q).softmax(dim=-1)[b]  # [N, T]
            p_final = (torch.stack(steps, dim=-1) * hop_weights).sum(-1)
        else:
            p_final = seed
        node_logits = self.scorer(torch.cat([h, q[b], p_final.unsqueeze(-1)], -1)).squeeze(-1)
        if self.p_scale is not None:
            node_logits = node_logits + self.p_scale * torch.log(p_final + ACTIVATION_EPS)
        feature_terms = None
        if self.feature_score is not None:
            own_features = torch.cat(parts[1:], dim=-1)  # [node_extra ; seed]
            feature_terms = self.feature_score(q)[b] * own_features
            node_logits = node_logits + feature_terms.sum(-1)
        pi = segment_softmax(node_logits, b, num_nodes=n_graphs)
        counts = torch.bincount(b, minlength=n_graphs).clamp(min=1).to(h.dtype)
        mean_pool = h.new_zeros(n_graphs, h.size(1)).index_add_(0, b, h) / counts[:, None]
        att_pool = h.new_zeros(n_graphs, h.size(1)).index_add_(0, b, pi.unsqueeze(-1) * h)
        state = torch.cat([q, mean_pool, att_pool], dim=-1)
        if self.vocab_head is not None:
            vocab_logits = self.vocab_head(state)
            if self.gate_head is not None:
                gate_logit = self.gate_head(state).squeeze(-1)
            else:  # one softmax over nodes and words: the gate is the node share
                gate_logit = (segment_logsumexp(node_logits, b, n_graphs)
                              - torch.logsumexp(vocab_logits, dim=-1))
        else:
            vocab_logits = h.new_zeros(n_graphs, 0)
            gate_logit = h.new_full((n_graphs,), float("inf"))
        activation = p_final if self.hop is not None else pi
        return ReasonerOutput(node_logits=node_logits, vocab_logits=vocab_logits,
                              gate=torch.sigmoid(gate_logit), gate_logit=gate_logit,
                              edge_scores=edge_scores, node_activation=activation,
                              edge_index=edge_index, edge_type=edge_type,
                              step_activations=steps, feature_terms=feature_terms)

    # -- checkpoints -------------------------------------------------------------------
    def save_pretrained(self, save_directory: str | os.PathLike[str]) -> Path:
        """Write ``kgmm_reasoner.json`` and ``model.safetensors`` into ``save_directory``."""
        from safetensors.torch import save_file

        path = Path(save_directory)
        path.mkdir(parents=True, exist_ok=True)
        (path / CONFIG_NAME).write_text(self.config.to_json(), encoding="utf-8")
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(state, str(path / WEIGHTS_NAME))
        return path

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike[str]) -> KGReasoner:
        """Load a model written by :meth:`save_pretrained`."""
        from safetensors.torch import load_file

        path = Path(directory)
        config = KGReasonerConfig.from_json((path / CONFIG_NAME).read_text(encoding="utf-8"))
        model = cls(config)
        model.load_state_dict(load_file(str(path / WEIGHTS_NAME)))
        return model


def _graph_index(batch: Batch | Data, n: int, device: torch.device) -> Tensor:
    b = getattr(batch, "batch", None)
    return b if b is not None else torch.zeros(n, dtype=torch.long, device=device)


def reasoner_loss(output: ReasonerOutput, batch: Batch | Data, node_targets: Tensor,
                  vocab_targets: Tensor | None = None, gate_targets: Tensor | None = None,
                  weights: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> Tensor:
    r"""Node-answer + vocabulary + gate loss, each averaged over the graphs it applies to.

    .. math::
        \mathcal{L}_{\mathrm{node}}(g) = \log \sum_{v \in g} e^{\ell_v}
            - \log \sum_{v \in g,\, t_v > 0} t_v\, e^{\ell_v}
            = -\log \sum_{v \in g} t_v\, \mathrm{softmax}_g(\ell)_v

        \mathcal{L} = w_1 \overline{\mathcal{L}_{\mathrm{node}}}
            + w_2\, \overline{\mathrm{CE}(\mathbf{z}_g, y_g)}
            + w_3\, \overline{\mathrm{BCE}(\mathrm{gate}_g, \gamma_g)}

    ``node_targets [N]``: multi-hot (any valid answer counts: the loss is the probability
    mass on the set) or soft weights in ``[0, 1]`` (e.g. VQA's ``min(#annotators/3, 1)``);
    graphs with no positive target are left out of the node term. ``vocab_targets [B]``: a
    vocabulary id, or ``−1`` when the answer is a node (left out of the CE term).
    ``gate_targets [B]``: 1 when the answer is a node; default ``vocab_targets == −1`` (or
    all ones without vocabulary targets). Without a vocabulary (``V = 0``) only the node term
    remains.
    """
    logits = output.node_logits
    n = logits.size(0)
    b = _graph_index(batch, n, logits.device)
    n_graphs = output.gate.size(0)
    t = node_targets.to(logits.dtype)
    all_lse = segment_logsumexp(logits, b, n_graphs)
    log_t = torch.where(t > 0, torch.log(t.clamp(min=1e-30)), torch.full_like(t, float("-inf")))
    pos_lse = segment_logsumexp(logits + log_t, b, n_graphs)
    has_node = torch.isfinite(pos_lse)
    zero = logits.new_zeros(())
    node_loss = (all_lse - pos_lse)[has_node].mean() if has_node.any() else zero
    total = weights[0] * node_loss
    if output.vocab_logits.size(-1) == 0:
        return total
    if vocab_targets is not None:
        has_vocab = vocab_targets >= 0
        if has_vocab.any():
            total = total + weights[1] * F.cross_entropy(output.vocab_logits[has_vocab],
                                                         vocab_targets[has_vocab])
    if gate_targets is None:
        gate_targets = (vocab_targets < 0) if vocab_targets is not None else torch.ones(
            n_graphs, dtype=torch.bool, device=logits.device)
    gate_loss = F.binary_cross_entropy_with_logits(output.gate_logit,
                                                   gate_targets.to(logits.dtype))
    return total + weights[2] * gate_loss


@dataclass(frozen=True)
class Candidate:
    """One ranked answer: ``kind`` ``"node"`` (``index`` = node position within its graph,
    ``entity_index`` = its ``n_id`` when the graph has one) or ``"vocab"`` (``index`` =
    vocabulary id)."""

    kind: str
    index: int
    score: float
    entity_index: int | None = None


@torch.no_grad()
def predict(output: ReasonerOutput, batch: Batch | Data, k: int = 5,
            exclude_vocab: Sequence[int] = ()) -> list[list[Candidate]]:
    r"""Top-``k`` answers per graph, nodes and words ranked together.

    .. math::
        P(\text{node } v) = \mathrm{gate}_g\,\mathrm{softmax}_g(\ell)_v, \qquad
        P(\text{word } w) = (1 - \mathrm{gate}_g)\,\mathrm{softmax}(\mathbf{z}_g)_w

    ``exclude_vocab`` (e.g. the ``unk`` id) never appears. Ties keep nodes first, then by index.
    """
    logits = output.node_logits
    n = logits.size(0)
    b = _graph_index(batch, n, logits.device)
    n_graphs = output.gate.size(0)
    node_p = segment_softmax(logits, b, num_nodes=n_graphs) * output.gate[b]
    vocab_p = output.vocab_logits.softmax(dim=-1) * (1 - output.gate).unsqueeze(-1)
    if exclude_vocab and vocab_p.size(-1):
        vocab_p[:, list(exclude_vocab)] = -1.0
    n_id = getattr(batch, "n_id", None)
    starts = torch.cumsum(torch.bincount(b, minlength=n_graphs), 0) - torch.bincount(
        b, minlength=n_graphs)
    results: list[list[Candidate]] = []
    for g in range(n_graphs):
        nodes = torch.nonzero(b == g).squeeze(-1)
        scores = torch.cat([node_p[nodes], vocab_p[g]])
        values, order = torch.sort(scores, descending=True, stable=True)
        ranked: list[Candidate] = []
        for value, pos in zip(values.tolist(), order.tolist(), strict=True):
            if value < 0 or len(ranked) == k:
                break
            if pos < nodes.numel():
                node = int(nodes[pos])
                ent = int(n_id[node]) if n_id is not None else None
                ranked.append(Candidate("node", node - int(starts[g]), value, ent))
            else:
                ranked.append(Candidate("vocab", pos - nodes.numel(), value))
        results.append(ranked)
    return results
