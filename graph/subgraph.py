"""k-hop subgraph extraction on the compiled CSR, returned as a PyG ``Data``.

Expansion treats edges as undirected for reachability (a question about "dog" needs both
its hypernyms and its hyponyms) but keeps every edge in its stored direction. At each hop,
every frontier node contributes its neighbour list: its out-row followed by its in-row, both
sorted by (relation, neighbour). With a fan-out cap ``f`` a node of degree ``d > f`` keeps the
``f`` entries at positions ``⌊j·(d−1)/(f−1)⌋, j = 0…f−1`` — evenly spread over the sorted row,
so every relation keeps its share, and the result is deterministic without a random state.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .compiled import CompiledKG


def _row_positions(starts: np.ndarray, degrees: np.ndarray,
                   cap: int | None) -> tuple[np.ndarray, np.ndarray]:
    """For rows ``[starts, starts+degrees)``: (row number, position in row) of kept entries."""
    keep = degrees if cap is None else np.minimum(degrees, cap)
    total = int(keep.sum())
    row = np.repeat(np.arange(len(degrees)), keep)
    first = np.cumsum(keep) - keep
    j = np.arange(total) - np.repeat(first, keep)
    if cap is not None and cap > 1:
        deg = degrees[row]
        spread = deg > cap
        j = np.where(spread, (j * (deg - 1)) // (cap - 1), j)
    return row, j


def expand(kg: CompiledKG, seeds: np.ndarray, hops: int, fanout: Sequence[int | None],
           relation_mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                      np.ndarray, np.ndarray]:
    """Breadth-first expansion; returns (nodes, hop of each node, src, dst, rel) in global ids."""
    out_indptr, out_dst, out_rel = kg.array("out_indptr"), kg.array("out_dst"), kg.array("out_rel")
    in_indptr, in_src, in_rel = kg.array("in_indptr"), kg.array("in_src"), kg.array("in_rel")
    frontier = np.unique(np.asarray(seeds, dtype=np.int64))
    visited = np.zeros(kg.num_nodes, dtype=bool)
    visited[frontier] = True
    node_parts, hop_parts = [frontier], [np.zeros(len(frontier), np.int64)]
    src_parts: list[np.ndarray] = []
    dst_parts: list[np.ndarray] = []
    rel_parts: list[np.ndarray] = []
    for hop in range(hops):
        if frontier.size == 0:
            break
        o_start, o_deg = out_indptr[frontier], out_indptr[frontier + 1] - out_indptr[frontier]
        i_start, i_deg = in_indptr[frontier], in_indptr[frontier + 1] - in_indptr[frontier]
        row, j = _row_positions(o_start, o_deg + i_deg, fanout[hop])
        is_out = j < o_deg[row]
        out_pos = (o_start[row] + j)[is_out]
        in_pos = (i_start[row] + j - o_deg[row])[~is_out]
        center_out = frontier[row[is_out]]
        center_in = frontier[row[~is_out]]
        src = np.concatenate([center_out, in_src[in_pos].astype(np.int64)])
        dst = np.concatenate([out_dst[out_pos].astype(np.int64), center_in])
        rel = np.concatenate([out_rel[out_pos], in_rel[in_pos]]).astype(np.int64)
        neighbour = np.concatenate([dst[: len(center_out)], src[len(center_out):]])
        if relation_mask is not None:
            ok = relation_mask[rel]
            src, dst, rel, neighbour = src[ok], dst[ok], rel[ok], neighbour[ok]
        src_parts.append(src)
        dst_parts.append(dst)
        rel_parts.append(rel)
        frontier = _sorted_unique(neighbour[~visited[neighbour]])
        visited[frontier] = True
        node_parts.append(frontier)
        hop_parts.append(np.full(len(frontier), hop + 1, np.int64))
    nodes = np.concatenate(node_parts)
    node_hop = np.concatenate(hop_parts)
    empty = np.zeros(0, np.int64)
    return (nodes, node_hop,
            np.concatenate(src_parts) if src_parts else empty,
            np.concatenate(dst_parts) if dst_parts else empty,
            np.concatenate(rel_parts) if rel_parts else empty)


def k_hop_subgraph_data(kg: CompiledKG, seeds: Any, *, hops: int = 2,
                        fanout: int | Sequence[int | None] | None = None,
                        relations: Sequence[str] | None = None,
                        max_nodes: int | None = None) -> Any:
    """The ``hops``-hop neighbourhood of ``seeds`` as ``torch_geometric.data.Data``.

    Args:
        seeds: entity indices or entity ids.
        hops: number of expansion steps.
        fanout: neighbour cap per expanded node — one int for every hop, a sequence with one
            entry per hop (``None`` = no cap), or ``None`` for no cap.
        relations: only follow edges of these relation ids.
        max_nodes: keep at most this many nodes (seeds first, then by hop, then by index);
            edges to dropped nodes are dropped.

    Returns:
        ``Data`` with ``num_nodes``, ``n_id`` (global indices, sorted ascending),
        ``edge_index`` (local, stored direction, deduplicated), ``edge_type``,
        ``seed_mask`` and ``hop`` (distance from the nearest seed).
    """
    import torch
    from torch_geometric.data import Data

    seed_idx = _seed_indices(kg, seeds)
    caps = _fanout_per_hop(fanout, hops)
    mask = None
    if relations is not None:
        mask = np.zeros(kg.num_relations, dtype=bool)
        mask[[kg.relation_index(r) for r in relations]] = True
    nodes, node_hop, src, dst, rel = expand(kg, seed_idx, hops, caps, mask)
    local = np.empty(kg.num_nodes, dtype=np.int64)  # uninitialised: only read where written
    if max_nodes is not None and len(nodes) > max_nodes:
        order = np.lexsort((nodes, node_hop))[:max_nodes]
        kept = np.zeros(kg.num_nodes, dtype=bool)
        kept[nodes[order]] = True
        inside = kept[src] & kept[dst]
        src, dst, rel = src[inside], dst[inside], rel[inside]
        nodes, node_hop = nodes[order], node_hop[order]
    order = np.argsort(nodes)
    nodes, node_hop = nodes[order], node_hop[order]
    n_local = len(nodes)
    local[nodes] = np.arange(n_local)
    num_rel = max(kg.num_relations, 1)
    key = _sorted_unique((local[src] * n_local + local[dst]) * num_rel + rel)
    pair = key // num_rel
    edge_index = np.stack([pair // max(n_local, 1), pair % max(n_local, 1)])
    return Data(
        num_nodes=n_local,
        n_id=torch.from_numpy(nodes),
        edge_index=torch.from_numpy(edge_index),
        edge_type=torch.from_numpy(key % num_rel),
        seed_mask=torch.from_numpy(node_hop == 0),
        hop=torch.from_numpy(node_hop),
    )


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values (sort + neighbour compare; faster than np.unique here)."""
    if values.size < 2:
        return values.copy()
    ordered = np.sort(values)
    keep = np.empty(len(ordered), dtype=bool)
    keep[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return ordered[keep]


def _seed_indices(kg: CompiledKG, seeds: Any) -> np.ndarray:
    if isinstance(seeds, str):
        seeds = [seeds]
    seeds = list(seeds) if not isinstance(seeds, np.ndarray) else seeds
    if len(seeds) and isinstance(seeds[0], str):
        indices = kg.indices_of(seeds)
    else:
        indices = np.asarray(seeds, dtype=np.int64)
        if indices.size and (indices.min() < 0 or indices.max() >= kg.num_nodes):
            raise IndexError(f"seed index out of range [0, {kg.num_nodes})")
    return np.unique(indices)


def _fanout_per_hop(fanout: int | Sequence[int | None] | None, hops: int) -> list[int | None]:
    if fanout is None or isinstance(fanout, int):
        caps: list[int | None] = [fanout] * hops
    else:
        caps = list(fanout)
        if len(caps) != hops:
            raise ValueError(f"fanout has {len(caps)} entries for {hops} hops")
    for cap in caps:
        if cap is not None and cap < 1:
            raise ValueError(f"fanout caps must be ≥ 1, got {cap}")
    return caps
