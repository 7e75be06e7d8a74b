r"""KG features between a query's concepts and each candidate's concepts.

The two sides play different roles: the *general* side :math:`G` (the text: a query in
text→image, a caption in image→text) names things, the *specific* side :math:`S` (the image's
detected objects, or given concepts) shows instances. For a general group :math:`g` (a
mention, senses :math:`t`) and a specific group :math:`s` (an object with weight
:math:`w_s` and candidate entities :math:`e` with probabilities :math:`p_e`), over the
taxonomy relations (``hypernym``, ``instance_hypernym``, ``IsA``, ``subClassOf`` … whichever
the KG has) with :math:`t \succeq e` meaning *t is e or one of its ancestors*:

* **is-a** :math:`a_{gs} = \max_t \sum_e p_e\,\mathbb{1}[t \succeq e]` — the probability that
  object :math:`s` is a :math:`t`; **coverage** of :math:`g` by the candidate (noisy-OR over its
  objects) :math:`\mathrm{cov}_g = 1 - \prod_s (1 - w_s a_{gs})`; features ``cover_mean`` and
  ``cover_min`` over the query's groups, and ``explain`` :math:`= \sum_s w_s \max_g a_{gs} /
  \sum_s w_s` (how much of the candidate the text accounts for);
* **hypernym depth match** ``depth_match``: :math:`\max_s w_s \max_t \sum_e p_e
  \mathbb{1}[t \succeq e]\,(\delta(t)+1)/(\delta(e)+1)`, :math:`\delta` = depth below the root
  (1 for an exact match, smaller the more general the query is than the object);
* **Wu–Palmer** ``wup``: :math:`\max_s w_s \max_t \sum_e p_e
  \frac{2(\delta(l)+1)}{d(t,l) + d(e,l) + 2(\delta(l)+1)}`, :math:`l` the deepest common
  ancestor;
* **shortest typed path** ``path``: :math:`\max_s w_s \max_{t,e} p_e / (1 + L(t,e))`, with
  :math:`L` the shortest of: the taxonomy path through a common ancestor, one non-taxonomic
  edge (``part_holonym`` …), two such edges, or one such edge then hypernyms (a wheel is part
  of a car, which is a vehicle);
* **personalised PageRank** ``ppr``: :math:`\mathbf{r} = \alpha\,\mathbf{u} + (1-\alpha)
  \mathbf{r} P` on the local graph (the query senses, every candidate entity with its
  ancestors, their non-taxonomic neighbours; edges both ways, row-normalised :math:`P`),
  :math:`\mathbf{u}` on the query senses; feature :math:`\sum_s w_s \sum_e p_e r_e`, divided by
  its largest value in the list;
* **GNN embedding similarity** ``gnn``: :math:`\max_s w_s \max_t \sum_e p_e \cos(h_t, h_e)`
  with :math:`h_v = \sum_{a \succeq v} \gamma^{d(v,a)} x_a` — a parameter-free graph
  convolution (SGC-style) of the node text embeddings :math:`x` up the taxonomy.

Features are computed for a whole candidate list at once (numpy, over the distinct
(sense, entity) pairs, cached); the best-scoring pair of every query group is kept as evidence
with its KG path.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from kgmm.graph.compiled import CompiledKG

from .linking import ConceptGroup

TAXONOMY_RELATIONS = ("hypernym", "instance_hypernym", "IsA", "subClassOf", "subclass_of",
                      "is_a", "instance_of")
FEATURES = ("cover_mean", "cover_min", "explain", "depth_match", "wup", "path", "ppr", "gnn")


@dataclass(frozen=True)
class PairInfo:
    """How a general entity ``t`` relates to a specific entity ``e``."""

    is_a: bool
    hyp_dist: int  # taxonomy steps from e up to t (-1 if t is not an ancestor)
    wup: float
    path_len: int  # shortest typed path length (-1 if none within reach)
    route: tuple[Any, ...]  # how the shortest path goes (for evidence)


@dataclass
class Match:
    """Evidence: the best link of one text mention (``span``) to what the image shows.

    ``named_entity`` is the mention's sense, ``shown_entity`` the object's entity;
    ``relation`` is ``"same"``, ``"is_a"`` (a taxonomy path up to the named entity),
    ``"related"`` (a path through a non-taxonomic edge such as ``part_holonym``) or
    ``"similar"`` (only a common ancestor); ``path``/``relations`` go from the shown entity to
    the named one; ``score`` is the object's weight × probability."""

    span: str
    named_entity: str
    shown_entity: str
    relation: str
    path: list[str]
    relations: list[str]
    score: float

    def to_dict(self) -> dict[str, Any]:
        return {"span": self.span, "named_entity": self.named_entity,
                "shown_entity": self.shown_entity, "relation": self.relation,
                "path": self.path, "relations": self.relations, "score": round(self.score, 4)}


class ConceptGraph:
    """Cached taxonomy/neighbourhood look-ups on a :class:`CompiledKG` and the features of the
    module docstring."""

    def __init__(self, kg: CompiledKG,
                 node_embeddings: Callable[[Sequence[int]], torch.Tensor] | None = None, *,
                 taxonomy: Sequence[str] = TAXONOMY_RELATIONS, max_depth: int = 24,
                 gamma: float = 0.5, ppr_alpha: float = 0.25, ppr_iters: int = 15,
                 max_related: int = 48, cache_size: int = 200_000) -> None:
        self.kg = kg
        self.node_embeddings = node_embeddings
        self.tax = {kg.relation_index(r) for r in taxonomy if r in kg.relation_ids}
        inverse = {kg.relation_inverse[r] for r in self.tax if kg.relation_inverse[r] >= 0}
        self.skip = self.tax | inverse  # taxonomy edges are not "related" edges
        self.max_depth, self.gamma = max_depth, gamma
        self.ppr_alpha, self.ppr_iters = ppr_alpha, ppr_iters
        self.max_related, self.cache_size = max_related, cache_size
        self._anc: dict[int, dict[int, tuple[int, int, int]]] = {}
        self._nbr: dict[int, dict[int, int]] = {}
        self._gnn: dict[int, np.ndarray] = {}
        self._depth: dict[int, int] = {}
        self._edge_cache: dict[int, np.ndarray] = {}
        self._paths: dict[tuple[int, int], tuple[list[str], list[str]]] = {}
        self._pairs: OrderedDict[tuple[int, int], PairInfo] = OrderedDict()
        self._names = list(kg.relation_ids)

    # -- look-ups ------------------------------------------------------------------------
    def ancestors(self, node: int) -> dict[int, tuple[int, int, int]]:
        """``{ancestor: (distance, child it was reached from, relation)}``, ``node`` itself at
        distance 0 (breadth-first up the taxonomy, shortest distances)."""
        found = self._anc.get(node)
        if found is not None:
            return found
        found = {node: (0, -1, -1)}
        frontier = [node]
        for depth in range(1, self.max_depth + 1):
            nxt = []
            for u in frontier:
                targets, rels = self.kg.out_edges(u)
                for v, r in zip(targets.tolist(), rels.tolist(), strict=True):
                    if r in self.tax and v not in found:
                        found[v] = (depth, u, r)
                        nxt.append(v)
            if not nxt:
                break
            frontier = nxt
        if len(self._anc) > self.cache_size:
            self._anc.clear()
        self._anc[node] = found
        return found

    def depth(self, node: int) -> int:
        """Depth below the root: the distance to the farthest ancestor on shortest paths."""
        found = self._depth.get(node)
        if found is None:
            found = self._depth[node] = max(d for d, _, _ in self.ancestors(node).values())
        return found

    def related(self, node: int) -> dict[int, int]:
        """Non-taxonomic neighbours ``{neighbour: relation}`` (out-edges, then in-edges with
        the relation's inverse, or ``-1 - r`` when it has none); at most ``max_related``."""
        found = self._nbr.get(node)
        if found is not None:
            return found
        found = {}
        targets, rels = self.kg.out_edges(node)
        for v, r in zip(targets.tolist(), rels.tolist(), strict=True):
            if r not in self.skip and v != node and v not in found:
                found[v] = r
        sources, rels = self.kg.in_edges(node)
        for v, r in zip(sources.tolist(), rels.tolist(), strict=True):
            if r not in self.skip and v != node and v not in found:
                inv = self.kg.relation_inverse[r]
                found[v] = inv if inv >= 0 else -1 - r
        if len(found) > self.max_related:
            found = dict(list(found.items())[:self.max_related])
        if len(self._nbr) > self.cache_size:
            self._nbr.clear()
        self._nbr[node] = found
        return found

    def relation_name(self, r: int) -> str:
        return self._names[r] if r >= 0 else self._names[-1 - r] + "⁻¹"

    def pair(self, t: int, e: int) -> PairInfo:
        """:class:`PairInfo` of (general ``t``, specific ``e``), cached."""
        key = (t, e)
        info = self._pairs.get(key)
        if info is not None:
            return info
        anc_e, anc_t = self.ancestors(e), self.ancestors(t)
        hyp = anc_e[t][0] if t in anc_e else -1
        best_len, lcs, lcs_depth, lcs_sum = -1, -1, -1, 0
        for a, (de, _, _) in anc_e.items():
            at = anc_t.get(a)
            if at is None:
                continue
            total = de + at[0]
            if best_len < 0 or total < best_len:
                best_len = total
            da = self.depth(a)
            if da > lcs_depth or (da == lcs_depth and total < lcs_sum):
                lcs, lcs_depth, lcs_sum = a, da, total
        wup = 2.0 * (lcs_depth + 1) / (lcs_sum + 2.0 * (lcs_depth + 1)) if lcs >= 0 else 0.0
        meet = self._lowest_meet(anc_e, anc_t) if best_len >= 0 else -1
        route: tuple[Any, ...] = ("lcs", meet) if best_len >= 0 else ()
        # a path that only meets at a root says little: typed edges win ties against it
        weak = meet >= 0 and self.depth(meet) == 0

        def better(length: int) -> bool:
            return best_len < 0 or length < best_len or (weak and length == best_len)

        rel_e = self.related(e)
        if t in rel_e and better(1):
            best_len, route, weak = 1, ("edge", rel_e[t]), False
        if better(2):
            for n, r in rel_e.items():
                anc_n = self.ancestors(n)
                if t in anc_n and better(1 + anc_n[t][0]):
                    best_len, route, weak = 1 + anc_n[t][0], ("edge+up", n, r), False
            if better(2):
                rel_t = self.related(t)
                for n, r in rel_e.items():
                    if n in rel_t:
                        best_len, route, weak = 2, ("two", n, r, rel_t[n]), False
                        break
        info = PairInfo(hyp >= 0, hyp, wup, best_len, route)
        self._pairs[key] = info
        if len(self._pairs) > self.cache_size:
            self._pairs.popitem(last=False)
        return info

    @staticmethod
    def _lowest_meet(anc_e: dict[int, tuple[int, int, int]],
                     anc_t: dict[int, tuple[int, int, int]]) -> int:
        best, best_len = -1, -1
        for a, (de, _, _) in anc_e.items():
            at = anc_t.get(a)
            if at is not None and (best_len < 0 or de + at[0] < best_len):
                best, best_len = a, de + at[0]
        return best

    def _chain(self, start: int, top: int) -> tuple[list[int], list[int]]:
        """Nodes and relations from ``start`` up to its ancestor ``top``."""
        anc = self.ancestors(start)
        nodes, rels = [top], []
        node = top
        while node != start:
            _, child, rel = anc[node]
            nodes.append(child)
            rels.append(rel)
            node = child
        return nodes[::-1], rels[::-1]

    def path(self, t: int, e: int) -> tuple[list[str], list[str]]:
        """The shortest typed path from ``e`` to ``t`` as (entity ids, relation names)."""
        cached = self._paths.get((t, e))
        if cached is None:
            cached = self._paths[(t, e)] = self._path(t, e)
            if len(self._paths) > self.cache_size:
                self._paths.clear()
        return cached

    def _path(self, t: int, e: int) -> tuple[list[str], list[str]]:
        info = self.pair(t, e)
        kg = self.kg
        if not info.route:
            return [], []
        kind = info.route[0]
        if kind == "lcs":
            meet = info.route[1]
            up_nodes, up_rels = self._chain(e, meet)
            down_nodes, down_rels = self._chain(t, meet)
            nodes = up_nodes + down_nodes[::-1][1:]
            names = [self.relation_name(r) for r in up_rels]
            names += [self._inverse_name(r) for r in down_rels[::-1]]
        elif kind == "edge":
            nodes, names = [e, t], [self.relation_name(info.route[1])]
        elif kind == "edge+up":
            n, r = info.route[1], info.route[2]
            up_nodes, up_rels = self._chain(n, t)
            nodes = [e, *up_nodes]
            names = [self.relation_name(r), *(self.relation_name(x) for x in up_rels)]
        else:
            n, r1, r2 = info.route[1], info.route[2], info.route[3]
            nodes, names = [e, n, t], [self.relation_name(r1), self._inverse_name(r2)]
        return kg.ids_of(nodes), names

    def _inverse_name(self, r: int) -> str:
        if r < 0:
            return self._names[-1 - r]
        inv = self.kg.relation_inverse[r]
        return self._names[inv] if inv >= 0 else self._names[r] + "⁻¹"

    def gnn_embeddings(self, nodes: Sequence[int]) -> np.ndarray | None:
        """:math:`h_v` (unit norm) for ``nodes``, ``[n, D]``; None without node embeddings."""
        if self.node_embeddings is None:
            return None
        missing = [v for v in dict.fromkeys(nodes) if v not in self._gnn]
        if missing:
            ancs = [self.ancestors(v) for v in missing]
            allnodes = sorted({a for anc in ancs for a in anc})
            x = self.node_embeddings(allnodes).float().numpy()
            pos = {a: i for i, a in enumerate(allnodes)}
            for v, anc in zip(missing, ancs, strict=True):
                weights = np.array([self.gamma ** d for d, _, _ in anc.values()],
                                   dtype=np.float32)
                h = weights @ x[[pos[a] for a in anc]]
                self._gnn[v] = h / max(float(np.linalg.norm(h)), 1e-9)
        return np.stack([self._gnn[v] for v in nodes]) if nodes else None

    def _edges(self, node: int, related: bool) -> np.ndarray:
        """``[2, m]`` (global) edges around ``node``: its taxonomy tree up to the root and,
        with ``related``, its non-taxonomic neighbours (cached)."""
        key = node if related else -1 - node
        found = self._edge_cache.get(key)
        if found is None:
            pairs = [(child, a) for a, (_, child, _) in self.ancestors(node).items() if child >= 0]
            if related:
                pairs += [(node, n) for n in self.related(node)]
            found = np.asarray(pairs, dtype=np.int64).reshape(-1, 2).T
            if len(self._edge_cache) > self.cache_size:
                self._edge_cache.clear()
            self._edge_cache[key] = found
        return found

    def ppr(self, seeds: dict[int, float], nodes: Sequence[int]) -> dict[int, float]:
        """Personalised PageRank from ``seeds`` on the local graph of ``nodes`` (module doc)."""
        everything = list(dict.fromkeys([*seeds, *nodes]))
        matrix = self.ppr_matrix(list(seeds), everything)
        weights = np.array(list(seeds.values()), dtype=np.float64)
        r = matrix @ (weights / (weights.sum() or 1.0))
        pos = {v: i for i, v in enumerate(everything)}
        return {v: float(r[pos[v]]) for v in nodes}

    def ppr_matrix(self, seeds: Sequence[int], nodes: Sequence[int]) -> np.ndarray:
        """``[len(nodes), len(seeds)]``: column ``j`` is the PageRank personalised on seed
        ``j`` alone (PPR is linear in the restart distribution, so any weighted seed set is a
        mix of these columns), on the local graph: the taxonomy of every seed and node up to
        the root, plus the seeds' non-taxonomic neighbours."""
        everything = [*seeds, *nodes]
        edges = np.concatenate([self._edges(v, True) for v in seeds]
                               + [self._edges(v, False) for v in nodes], axis=1)
        ids, local = np.unique(np.concatenate([np.asarray(everything, dtype=np.int64),
                                               edges.ravel()]), return_inverse=True)
        n = len(ids)
        pos = local[:len(everything)]
        e = local[len(everything):].reshape(2, -1)
        e = np.unique(np.sort(e, axis=0)[:, e[0] != e[1]], axis=1)  # undirected, once each
        u = np.zeros((n, len(seeds)))
        u[pos[:len(seeds)], np.arange(len(seeds))] = 1.0
        if e.shape[1] == 0:
            return u[pos[len(seeds):]]
        src = np.concatenate([e[0], e[1]])
        dst = np.concatenate([e[1], e[0]])
        order = np.argsort(dst, kind="stable")
        src, dst = src[order], dst[order]
        w = (1.0 / np.bincount(src, minlength=n)[src])[:, None]
        targets, starts = np.unique(dst, return_index=True)
        r = u.copy()
        for _ in range(self.ppr_iters):
            step = np.zeros_like(r)
            step[targets] = np.add.reduceat(r[src] * w, starts, axis=0)
            r = self.ppr_alpha * u + (1 - self.ppr_alpha) * step
        return r[pos[len(seeds):]]

    # -- features ------------------------------------------------------------------------
    def features(self, general: Sequence[ConceptGroup] | Sequence[Sequence[ConceptGroup]],
                 specifics: Sequence[Sequence[ConceptGroup]], *,
                 min_sense: float = 0.05) -> KGFeatures:
        """:class:`KGFeatures` of every candidate (``[C, len(FEATURES)]``, module docstring).

        ``general``: the query's groups, shared by every candidate (text→image), or one list
        of groups per candidate (image→text: each caption against the one image, passed as
        ``specifics = [image_groups] * C``). :meth:`KGFeatures.evidence` gives a candidate's
        best match for each of its general groups."""
        n_cand = len(specifics)
        shared = not general or isinstance(general[0], ConceptGroup)
        generals: list[Sequence[ConceptGroup]] = [general] * n_cand if shared \
            else list(general)  # type: ignore[list-item]
        if len(generals) != n_cand:
            raise ValueError(f"{len(generals)} general lists for {n_cand} candidates")
        feats = np.zeros((n_cand, len(FEATURES)), dtype=np.float32)
        # general side: one group id per (candidate, group); senses per group
        g_cand: list[int] = []
        sense_rows: list[tuple[int, int, float]] = []  # (group id, entity, prob)
        group_offset = np.zeros(n_cand + 1, dtype=np.int64)
        first_gid: dict[int, int] = {}
        for c, groups in enumerate(generals):
            if shared and c > 0:
                group_offset[c + 1] = group_offset[c] + len(groups)
                continue
            for group in groups:
                gid = len(g_cand)
                g_cand.append(c)
                top = max((p for _, p in group.candidates), default=0.0)
                for t, p in group.candidates:
                    if p >= min_sense * top:
                        sense_rows.append((gid, t, p))
            group_offset[c + 1] = len(g_cand)
            first_gid[c] = int(group_offset[c])
        obj_rows: list[tuple[int, int, int, float, float]] = []  # (cand, obj id, e, p, w)
        n_obj = 0
        obj_cand_list: list[int] = []
        obj_w_list: list[float] = []
        for c, groups in enumerate(specifics):
            for grp in groups:
                for e, p in grp.candidates:
                    obj_rows.append((c, n_obj, e, p, grp.weight))
                obj_cand_list.append(c)
                obj_w_list.append(grp.weight)
                n_obj += 1
        empty = KGFeatures(self, generals, specifics, feats, [], np.zeros(0, np.int64), {},
                           np.zeros((0, 0)), np.zeros((0, 0)), np.zeros((0, 0)), {})
        if not sense_rows or not obj_rows:
            return empty
        senses = list(dict.fromkeys(t for _, t, _ in sense_rows))
        t_pos = {t: i for i, t in enumerate(senses)}
        uniq_e = list(dict.fromkeys(r[2] for r in obj_rows))
        e_pos = {e: i for i, e in enumerate(uniq_e)}
        n_t, n_e = len(senses), len(uniq_e)
        isa = np.zeros((n_t, n_e))
        dmatch = np.zeros((n_t, n_e))
        wup = np.zeros((n_t, n_e))
        inv_path = np.zeros((n_t, n_e))
        depth_e = [self.depth(e) for e in uniq_e]
        for i, t in enumerate(senses):
            depth_t = self.depth(t)
            for j, e in enumerate(uniq_e):
                info = self.pair(t, e)
                if info.is_a:
                    isa[i, j] = 1.0
                    dmatch[i, j] = (depth_t + 1.0) / (depth_e[j] + 1.0)
                wup[i, j] = info.wup
                if info.path_len >= 0:
                    inv_path[i, j] = 1.0 / (1.0 + info.path_len)
        h_t, h_e = self.gnn_embeddings(senses), self.gnn_embeddings(uniq_e)
        gnn = (h_t @ h_e.T).astype(np.float64) if h_t is not None and h_e is not None \
            else np.zeros((n_t, n_e))

        # every (sense row, entity row) pair of the same candidate
        s_gid = np.array([r[0] for r in sense_rows])
        s_t = np.array([t_pos[r[1]] for r in sense_rows])
        s_p = np.array([r[2] for r in sense_rows])
        o_cand = np.array([r[0] for r in obj_rows])
        o_obj = np.array([r[1] for r in obj_rows])
        o_e = np.array([e_pos[r[2]] for r in obj_rows])
        o_p = np.array([r[3] for r in obj_rows], dtype=np.float64)
        obj_cand = np.array(obj_cand_list)
        obj_w = np.array(obj_w_list, dtype=np.float64)
        ent_start = np.searchsorted(o_cand, np.arange(n_cand + 1))
        n_rows = len(obj_rows)
        if shared:  # every entity row meets every sense row
            i_idx = np.tile(np.arange(len(sense_rows)), n_rows)
            j_idx = np.repeat(np.arange(n_rows), len(sense_rows))
        else:  # a sense row meets the entity rows of its own candidate
            row_cand = np.array(g_cand)[s_gid]
            counts = ent_start[row_cand + 1] - ent_start[row_cand]
            i_idx = np.repeat(np.arange(len(sense_rows)), counts)
            starts = np.repeat(ent_start[row_cand] - (np.cumsum(counts) - counts), counts)
            j_idx = starts + np.arange(int(counts.sum()))
        if i_idx.size == 0:
            return empty
        p_cand = o_cand[j_idx]
        # the group as seen by this candidate (shared groups are re-numbered per candidate)
        base_g = s_gid[i_idx]
        n_gen = np.array([len(g) for g in generals])
        gen_offset = np.concatenate([[0], np.cumsum(n_gen)])
        cg = gen_offset[p_cand] + base_g if shared else base_g
        n_cg = int(gen_offset[-1])
        cg_cand = np.repeat(np.arange(n_cand), n_gen)
        sense_i = s_t[i_idx]
        ent_j = o_e[j_idx]
        obj_j = o_obj[j_idx]
        prob_j = o_p[j_idx]
        # (sense row, object) cells, and the (group, object) cell each one feeds
        uk, inv = np.unique(i_idx * n_obj + obj_j, return_inverse=True)
        first = np.zeros(len(uk), dtype=np.int64)
        first[inv] = np.arange(len(inv))
        ug, ginv = np.unique(cg[first] * n_obj + obj_j[first], return_inverse=True)
        go_group, go_obj = ug // n_obj, ug % n_obj

        def per_group_object(matrix: np.ndarray, reduce: str = "sum") -> np.ndarray:
            """Σ_e p_e v(t, e) per (sense row, object) (or max_e), then the max over the
            group's senses: one value per (group, object) cell."""
            vals = matrix[sense_i, ent_j] * prob_j
            if reduce == "sum":
                per = np.bincount(inv, weights=vals, minlength=len(uk))
            else:
                per = np.zeros(len(uk))
                np.maximum.at(per, inv, vals)
            out = np.zeros(len(ug))
            np.maximum.at(out, ginv, per)
            return out

        def group_mean(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
            """max over objects per group of w_s·v, then mean over each candidate's groups."""
            best = np.zeros(n_cg)
            np.maximum.at(best, groups, values)
            total = np.bincount(cg_cand, weights=best, minlength=n_cand)
            return total / np.maximum(n_gen, 1)

        a = np.clip(per_group_object(isa), 0.0, 1.0)
        ga, oa = go_group, go_obj
        wa = np.clip(a * obj_w[oa], 0.0, 1.0 - 1e-6)
        cover = 1.0 - np.exp(np.bincount(ga, weights=np.log1p(-wa), minlength=n_cg))
        feats[:, 0] = np.bincount(cg_cand, weights=cover, minlength=n_cand) / \
            np.maximum(n_gen, 1)
        cmin = np.ones(n_cand)
        np.minimum.at(cmin, cg_cand, cover)
        feats[:, 1] = np.where(n_gen > 0, cmin, 0.0)
        best_obj = np.zeros(n_obj)
        np.maximum.at(best_obj, oa, a)
        num = np.bincount(obj_cand, weights=obj_w * best_obj, minlength=n_cand)
        den = np.bincount(obj_cand, weights=obj_w, minlength=n_cand)
        feats[:, 2] = np.where(den > 0, num / np.maximum(den, 1e-9), 0.0)
        for col, matrix, reduce in ((3, dmatch, "sum"), (4, wup, "sum"),
                                    (5, inv_path, "max"), (7, gnn, "sum")):
            v = per_group_object(matrix, reduce)
            feats[:, col] = group_mean(v * obj_w[go_obj], go_group)
        # personalised PageRank: one column per sense, mixed by each candidate's seeds
        r = self.ppr_matrix(senses, uniq_e)  # [n_e, n_t]
        seed_w = s_p[i_idx] / np.maximum(n_gen[p_cand], 1)
        mass = r[ent_j, sense_i] * seed_w * prob_j * obj_w[obj_j]
        ppr = np.bincount(p_cand, weights=mass, minlength=n_cand)
        feats[:, 6] = ppr / ppr.max() if ppr.max() > 0 else 0.0
        feats[den == 0] = 0.0
        groups_of = {c: (first_gid[0], len(generals[0])) if shared
                     else (int(group_offset[c]), len(generals[c])) for c in range(n_cand)}
        return KGFeatures(self, generals, specifics, feats, senses, s_gid, e_pos, isa, wup,
                          inv_path, groups_of, s_t)


@dataclass
class KGFeatures:
    """Features of one candidate list, and what :meth:`evidence` needs."""

    graph: ConceptGraph
    generals: Sequence[Sequence[ConceptGroup]]
    specifics: Sequence[Sequence[ConceptGroup]]
    values: np.ndarray  # [C, len(FEATURES)]
    senses: list[int]
    sense_group: np.ndarray  # group id of every sense row
    e_pos: dict[int, int]
    isa: np.ndarray
    wup: np.ndarray
    inv_path: np.ndarray
    groups_of: dict[int, tuple[int, int]]  # candidate -> (first group id, count)
    sense_index: np.ndarray | None = None  # sense row -> column of the pair matrices

    def evidence(self, c: int) -> list[Match]:
        """Candidate ``c``'s best link for each of its general groups, with its KG path."""
        kg = self.graph.kg
        found: list[Match] = []
        if c not in self.groups_of or self.sense_index is None:
            return found
        first, _ = self.groups_of[c]
        for k, group in enumerate(self.generals[c]):
            best: tuple[float, int, int, float] | None = None
            for row in np.flatnonzero(self.sense_group == first + k).tolist():
                i = int(self.sense_index[row])
                for grp in self.specifics[c]:
                    for e, p in grp.candidates:
                        j = self.e_pos[e]
                        score = grp.weight * p * (self.isa[i, j] + 0.5 * self.wup[i, j]
                                                  + 0.25 * self.inv_path[i, j])
                        if best is None or score > best[0]:
                            best = (score, i, e, grp.weight * p)
            if best is None or best[0] <= 0:
                continue
            _, i, e, conf = best
            t = self.senses[i]
            nodes, rels = self.graph.path(t, e)
            route = self.graph.pair(t, e).route
            kind = "same" if t == e else "is_a" if self.isa[i, self.e_pos[e]] else \
                "related" if route and route[0] != "lcs" else "similar"
            found.append(Match(group.span, kg.id_of(t), kg.id_of(e), kind, nodes, rels,
                               float(conf)))
        return found
