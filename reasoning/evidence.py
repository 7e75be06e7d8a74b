r"""Evidence for an answer: the top nodes and the seed → answer paths that carried the most
attention.

Each edge's score becomes a length :math:`-\log s` (scores are clamped to ``[1e-12, 1]``),
so the shortest path is the one with the largest product of edge scores, and the path score
reported is that product. How per-layer scores combine is ``mode``:

* ``"aligned"`` (default) — step :math:`t` of a path is scored by layer :math:`t`:
  :math:`\mathrm{score}(e_1 \ldots e_L) = \prod_{t=1}^{L} s^{(t)}_{e_t}`, ``L ≤ min(max_len,
  layers)``. This is how activation moves in :class:`~kgmm.reasoning.gnn.RelationAttentionConv`
  (hop ``t`` follows the relations picked at step ``t``), so a question "hypernym of the
  hypernym" gets the hypernym–hypernym path and not a path whose relations only match some
  layer. The search runs on the layered graph of ``(node, step)`` states.
* ``"max"`` — one score per edge, :math:`s_e = \max_t s^{(t)}_e`; paths up to ``max_len``
  edges, whatever the number of layers.

Edge scores may have ``E`` entries (edges walkable in their stored direction only, as
messages flowed) or ``2E`` (entry ``E + e`` is edge ``e`` walked backwards, as
:func:`~kgmm.reasoning.gnn.add_reverse_edges` lays them out). Between the same two nodes only
the best-scoring edge is kept. Paths start at a seed (``seed_mask``, else ``seed_score > 0``)
and never visit a node twice. ``"aligned"`` finds the ``k`` best by a best-first search with
an exact heuristic on the layered graph, pruned to the arcs on some seed → answer walk
(:func:`_layered_best_paths`; ``prune=False`` runs the reference instead: networkx's
``shortest_simple_paths``, Yen's algorithm, on the whole layered graph); ``"max"`` uses Yen's
algorithm. Everything is deterministic: ties follow edge order.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

if TYPE_CHECKING:
    from .kg_reasoner import ReasonerOutput

__all__ = ["Evidence", "EvidencePath", "extract_evidence", "graph_evidence", "graph_slice"]

MIN_SCORE = 1e-12
MODES = ("aligned", "max")


@dataclass(frozen=True)
class EvidencePath:
    """A path from a seed (``nodes[0]``) to the answer (``nodes[-1]``).

    ``edges[i]`` indexes ``data.edge_index`` (the stored edge between ``nodes[i]`` and
    ``nodes[i+1]``), ``relations[i]`` is its stored relation id and ``reversed[i]`` says the
    path walks it against its stored direction. ``score`` is the product of the edge scores.
    """

    nodes: list[int]
    edges: list[int]
    relations: list[int]
    reversed: list[bool]
    score: float


@dataclass(frozen=True)
class Evidence:
    """``top_nodes``: ``(node, score)`` best first; ``paths``: best first."""

    answer_node: int
    top_nodes: list[tuple[int, float]]
    paths: list[EvidencePath]


def _seeds(data: Any) -> list[int]:
    mask = getattr(data, "seed_mask", None)
    if mask is None:
        score = getattr(data, "seed_score", None)
        if score is None:
            raise ValueError("the graph has neither seed_mask nor seed_score")
        mask = score > 0
    return [int(i) for i in torch.nonzero(mask.reshape(-1)).reshape(-1)]


def _arcs(data: Any, scores: Tensor, keep: np.ndarray | None = None,
          arrays: tuple[np.ndarray, ...] | None = None
          ) -> list[tuple[int, int, int, bool, float]]:
    """``(u, v, stored edge, reversed, score)`` for every walkable direction of every edge
    (only those where ``keep`` is True, when given: one flag per direction, ``[E]`` or
    ``[2E]`` like ``scores``)."""
    src, dst, edge, rev = arrays if arrays is not None else _arc_arrays(data, scores)
    values = scores.detach().double().clamp(MIN_SCORE, 1.0).numpy()
    rows = np.flatnonzero(keep) if keep is not None else np.arange(len(src))
    return list(zip(src[rows].tolist(), dst[rows].tolist(), edge[rows].tolist(),
                    rev[rows].tolist(), values[rows].tolist(), strict=True))


def _arc_arrays(data: Any, scores: Tensor) -> tuple[np.ndarray, ...]:
    """``(u, v, stored edge, reversed)`` arrays, one entry per entry of ``scores``."""
    edge_index = data.edge_index
    n_edges = edge_index.size(1)
    if scores.numel() not in (n_edges, 2 * n_edges):
        raise ValueError(f"edge scores have {scores.numel()} entries; the graph has {n_edges} "
                         f"edges (expected {n_edges} or {2 * n_edges})")
    src, dst = edge_index[0].cpu().numpy(), edge_index[1].cpu().numpy()
    edge = np.arange(n_edges)
    if scores.numel() == n_edges:
        return src, dst, edge, np.zeros(n_edges, dtype=bool)
    return (np.concatenate([src, dst]), np.concatenate([dst, src]),
            np.concatenate([edge, edge]),
            np.concatenate([np.zeros(n_edges, dtype=bool), np.ones(n_edges, dtype=bool)]))


def _on_some_path(data: Any, arcs: Sequence[tuple[np.ndarray, ...]], seeds: list[int],
                  answer: int) -> list[np.ndarray]:
    """Per layer ``t``, which arcs ``(u, t−1) → (v, t)`` lie on some walk from a seed at step
    0 to the answer at any step: ``u`` reachable from the seeds in ``t − 1`` steps and the
    answer reachable from ``v`` in the remaining ones. Pruning the others leaves every path
    (and so the result) unchanged and shrinks the arc tables the best-first search builds."""
    n = int(data.num_nodes)
    forward = [np.zeros(n, dtype=bool)]
    forward[0][seeds] = True
    for src, dst, _, _ in arcs:
        reached = np.zeros(n, dtype=bool)
        reached[dst[forward[-1][src]]] = True
        forward.append(reached)
    backward = [np.zeros(n, dtype=bool) for _ in range(len(arcs) + 1)]
    backward[-1][answer] = True
    for t in range(len(arcs) - 1, -1, -1):
        src, dst, _, _ = arcs[t]
        backward[t][answer] = True
        backward[t][src[backward[t + 1][dst]]] = True
    return [forward[t][src] & backward[t + 1][dst] for t, (src, dst, _, _) in enumerate(arcs)]


def _best_arcs(arcs: list[tuple[int, int, int, bool, float]]) -> dict[tuple[Any, Any], Any]:
    """Keep, for each ordered node pair, the best-scoring arc (first one on ties)."""
    best: dict[tuple[Any, Any], Any] = {}
    for arc in arcs:
        key = (arc[0], arc[1])
        if key not in best or arc[4] > best[key][4]:
            best[key] = arc
    return best


def extract_evidence(data: Any, edge_scores: Sequence[Tensor], node_scores: Tensor,
                     answer_node: int, k_paths: int = 3, max_len: int = 4,
                     top_nodes: int = 5, mode: str = "aligned", prune: bool = True
                     ) -> Evidence:
    """Top nodes and the ``k_paths`` best seed → answer paths of one graph (module docstring).

    Args:
        data: one graph (``edge_index``, ``edge_type``, ``seed_mask`` or ``seed_score``).
        edge_scores: one tensor per layer, ``[E]`` or ``[2E]``, values in ``[0, 1]``.
        node_scores: ``[N]`` (e.g. ``ReasonerOutput.node_activation`` of this graph).
        answer_node: local index of the answer.
        k_paths: number of paths.
        max_len: longest path, in edges.
        top_nodes: number of top nodes.
        mode: ``"aligned"`` or ``"max"``.
        prune: ``"aligned"``: the best-first search over the arcs that lie on some seed →
            answer walk (:func:`_layered_best_paths`); ``False`` runs the reference, Yen's
            algorithm over every arc (same paths, about ten times slower).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if not edge_scores:
        raise ValueError("need the edge scores of at least one layer")
    order = torch.sort(node_scores.detach().reshape(-1), descending=True, stable=True)
    best_nodes = [(int(i), float(v)) for v, i in zip(order.values[:top_nodes].tolist(),
                                                      order.indices[:top_nodes].tolist(),
                                                      strict=True)]
    seeds = _seeds(data)
    edge_type = getattr(data, "edge_type", None)
    rel = (edge_type.tolist() if edge_type is not None
           else [0] * data.edge_index.size(1))
    if mode == "aligned" and prune:
        steps = min(max_len, len(edge_scores))
        layers = [s.detach().reshape(-1) for s in edge_scores[:steps]]
        arrays = [_arc_arrays(data, scores) for scores in layers]
        keep = _on_some_path(data, arrays, seeds, answer_node)
        layer_arcs = [list(_best_arcs(_arcs(data, layers[t], keep[t], arrays[t])).values())
                      for t in range(steps)]
        paths = [_evidence_path(hops, rel, nodes) for nodes, hops in
                 _layered_best_paths(layer_arcs, seeds, answer_node, k_paths)]
        return Evidence(answer_node=answer_node, top_nodes=best_nodes, paths=paths)
    import networkx as nx

    graph = nx.DiGraph()
    source, target = ("source",), ("target",)
    if mode == "max":
        combined = torch.stack([s.detach().reshape(-1) for s in edge_scores]).amax(dim=0)
        arcs = _best_arcs(_arcs(data, combined))
        for (u, v), arc in arcs.items():
            graph.add_edge(u, v, weight=-math.log(arc[4]), arc=arc)
        for s in seeds:
            graph.add_edge(source, s, weight=0.0, arc=None)
        graph.add_edge(answer_node, target, weight=0.0, arc=None)
        steps = max_len
    else:
        steps = min(max_len, len(edge_scores))
        layers = [s.detach().reshape(-1) for s in edge_scores[:steps]]
        for t in range(1, steps + 1):
            arcs = _arcs(data, layers[t - 1])
            for (u, v), arc in _best_arcs(arcs).items():
                graph.add_edge((u, t - 1), (v, t), weight=-math.log(arc[4]), arc=arc)
        for s in seeds:
            graph.add_edge(source, (s, 0), weight=0.0, arc=None)
        for t in range(steps + 1):
            graph.add_edge((answer_node, t), target, weight=0.0, arc=None)
    paths: list[EvidencePath] = []
    if (graph.has_node(source) and graph.has_node(target)
            and nx.has_path(graph, source, target)):
        # Yen's algorithm yields paths by increasing length; the layered graph may also give
        # paths that revisit a node, and "max" paths may be too long: skip those (bounded).
        candidates = nx.shortest_simple_paths(graph, source, target, weight="weight")
        for path in itertools.islice(candidates, 50 * k_paths + 50):
            hops = [graph.edges[a, b]["arc"] for a, b in itertools.pairwise(path[1:-1])]
            nodes = [v if mode == "max" else v[0] for v in path[1:-1]]  # (node, step) states
            if len(hops) > max_len or len(set(nodes)) != len(nodes):
                continue
            paths.append(_evidence_path(hops, rel, nodes))
            if len(paths) == k_paths:
                break
    return Evidence(answer_node=answer_node, top_nodes=best_nodes, paths=paths)


def _evidence_path(hops: list[Any], rel: list[int], nodes: list[int]) -> EvidencePath:
    """An :class:`EvidencePath` from its nodes and arcs ``(u, v, edge, reversed, score)``."""
    return EvidencePath(nodes=nodes, edges=[arc[2] for arc in hops],
                        relations=[int(rel[arc[2]]) for arc in hops],
                        reversed=[arc[3] for arc in hops],
                        score=math.prod(arc[4] for arc in hops))


def _layered_best_paths(layer_arcs: list[list[Any]], seeds: list[int], answer: int, k: int,
                        max_pops: int = 20_000) -> list[tuple[list[int], list[Any]]]:
    r"""The ``k`` most probable seed → answer walks of the layered graph (step ``t`` uses
    ``layer_arcs[t]``) that visit no node twice, best first.

    Best-first search with an exact heuristic: :math:`h(v, t)` is the smallest
    :math:`\sum -\log s` from state ``(v, t)`` to the answer at any later step (a backward
    pass over the layers; the layered graph is acyclic), so the partial walk with the smallest
    :math:`g + h` always extends towards the best completion and complete walks leave the
    queue in order of decreasing score. Walks that revisit a node are dropped as they form.
    Same paths as Yen's algorithm on the layered graph followed by that filter (the
    ``prune=False`` reference); ties follow arc order. Returns ``(nodes, arcs)`` per walk; a
    seed that is the answer gives the zero-hop walk ``([seed], [])``.
    """
    import heapq

    steps = len(layer_arcs)
    out_arcs: list[dict[int, list[tuple[float, Any]]]] = []
    for arcs in layer_arcs:
        table: dict[int, list[tuple[float, Any]]] = {}
        for arc in arcs:
            table.setdefault(arc[0], []).append((-math.log(arc[4]), arc))
        out_arcs.append(table)
    # h[t][v]: shortest distance from (v, t) to any (answer, t' ≥ t); absent = unreachable
    h: list[dict[int, float]] = [{} for _ in range(steps + 1)]
    h[steps][answer] = 0.0
    for t in range(steps - 1, -1, -1):
        best = {answer: 0.0}
        for u, arcs in out_arcs[t].items():
            for w, arc in arcs:
                rest = h[t + 1].get(arc[1])
                if rest is not None and w + rest < best.get(u, math.inf):
                    best[u] = w + rest
        h[t] = best
    order = itertools.count()
    queue: list[tuple[float, int, bool, float, int, tuple[Any, ...], frozenset[int]]] = []
    for seed in dict.fromkeys(seeds):
        if seed in h[0]:
            heapq.heappush(queue, (h[0][seed], next(order), False, 0.0, seed, (),
                                   frozenset((seed,))))
    found: list[tuple[list[int], list[Any]]] = []
    pops = 0
    while queue and len(found) < k and pops < max_pops:
        _, _, complete, g, node, hops, visited = heapq.heappop(queue)
        pops += 1
        if complete:
            found.append(([hops[0][0], *(arc[1] for arc in hops)] if hops else [node],
                          list(hops)))
            continue
        t = len(hops)
        if node == answer:
            heapq.heappush(queue, (g, next(order), True, g, node, hops, visited))
        if t == steps:
            continue
        for w, arc in out_arcs[t].get(node, ()):
            nxt = arc[1]
            rest = h[t + 1].get(nxt)
            if rest is None or nxt in visited:
                continue
            heapq.heappush(queue, (g + w + rest, next(order), False, g + w, nxt, (*hops, arc),
                                   visited | {nxt}))
    return found


def graph_slice(output: ReasonerOutput, batch: Any, graph: int) -> tuple[Any, list[Tensor],
                                                                        Tensor]:
    """One graph of a batched :class:`~kgmm.reasoning.kg_reasoner.ReasonerOutput`:
    ``(data, edge_scores ([E_g] or [2E_g] per layer), node_activation [N_g])``."""
    data = batch.get_example(graph)
    b = batch.batch
    n_edges = batch.edge_index.size(1)
    mask = b[batch.edge_index[0]] == graph
    scores = []
    for s in output.edge_scores:
        if s.numel() == 2 * n_edges:
            scores.append(torch.cat([s[:n_edges][mask], s[n_edges:][mask]]))
        else:
            scores.append(s[mask])
    return data, scores, output.node_activation[b == graph]


def graph_evidence(output: ReasonerOutput, batch: Any, graph: int, answer_node: int,
                   **kwargs: Any) -> Evidence:
    """:func:`extract_evidence` for graph ``graph`` of a batch (``answer_node`` is local)."""
    data, scores, node_scores = graph_slice(output, batch, graph)
    return extract_evidence(data, scores, node_scores, answer_node, **kwargs)
