"""One question's reasoning graph: the KG around the linked entities, plus the scene's objects.

Nodes:
* **KG nodes** — the entities linked from the question (mentions) and from the image (each
  detected object's candidate entities), their 2-hop neighbourhood over the structural
  relations (``relations``), and every ancestor of a linked entity along ``hypernym`` /
  ``instance_hypernym`` up to ``max_depth`` levels;
* **object nodes** — one per detected object, carrying its visual embedding (which lives in the
  same space as node text embeddings, see :mod:`.scene_parser`) and its position.

Edges (relation ids after the KG's ``R`` relations):
* the KG's own triples among KG nodes;
* ``ancestor`` (``R``): linked entity → each of its ancestors (the transitive closure of the
  taxonomy, so "is a dog an animal" is one step instead of seven);
* ``depicts`` (``R+1``): object node → its candidate entities with link probability ≥
  ``min_link``;
* ``left_of`` (``R+2``), ``above`` (``R+3``), ``next_to`` (``R+4``) between object nodes; the
  reasoner adds reversed edges, which read as right-of and below. With
  ``GraphConfig.spatial = "boxes"`` they come from the objects' boxes: ``a`` left of ``b`` when
  ``a`` ends before ``b`` begins (``x1_a ≤ x0_b + tol``), above likewise on ``y``, next to when
  the gap between the boxes, ``max(x0_b − x1_a, x0_a − x1_b, y0_b − y1_a, y0_a − y1_b, 0)``,
  is at most ``near``; an object without a box is a point at its centre. With ``"centres"``
  (models saved before boxes) ``a`` is left of ``b`` when ``x_a + margin < x_b`` and next to it
  when ``|x_a − x_b| + |y_a − y_b| < 0.45``.

Per-node extra features (``node_extra``): is-object, mention score, image-link score,
taxonomy distance from the nearest linked entity (scaled), how many linked entities it is an
ancestor of (scaled), log degree, for objects: x, y, rank of x and of y among objects,
objectness; and two properties of the node in the whole taxonomy: log of its number of direct
hyponyms and its depth below the root — what lets a model tell a basic-level category
("rodent") from an abstract one ("placental") even for names it never saw as answers.

With ``GraphConfig.grounding`` five more columns ground every KG node in the picture: whether
any object depicts it or one of its descendants, and the largest and smallest x-rank and
y-rank of those objects. "The rightmost object is a kind of what?" then reads directly off the
candidate categories (max x-rank 1) instead of needing a message to travel object → entity →
ancestor first.

With ``GraphConfig.mention_order`` one more column gives each question mention's place among
the question's mentions, ``(i + 1) / M`` for the ``i``-th of ``M`` (0 for nodes no mention links
to): "is the X left of the Y" and "is the Y left of the X" link the same entities, and only
the order of the mentions tells the roles apart.

With ``GraphConfig.answer_space_features`` two more columns place each KG node in the
**answer space** ``S`` (``GraphConfig.answer_space``: the entity ids answers may name — the
training answers, extended at deployment by labels never seen in training): whether it is an
answer-space ancestor of a linked entity, ``[∃ e linked: v ∈ A(e)]``, and its specificity
among them,

    spec(v) = max_{e linked, v ∈ A(e)} 1 / (1 + |{b ∈ A(e) : v is an ancestor of b}|),
    A(e) = S ∩ ancestors(e),

which is 1 for the most specific answer-space ancestor of an entity (a hamster's *rodent* once
``rodent`` is in ``S``, its *mammal* before), ½ one level of the answer space above, and 0 for
nodes that are no answer-space ancestor. "What kind of thing is …?" then reads off the
answer space's structure instead of the names of training answers, so a label added after
training is answered as its seen siblings were. Membership alone is not a column: answers
reached other ways (an object's own name, its parts) stay free of the answer space, which a
model would otherwise learn to require of every answer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor

from kgmm.graph.compiled import CompiledKG

from .question_linking import Mention

EXTRA_RELATIONS = ("ancestor", "depicts", "left_of", "above", "next_to")
NODE_EXTRA_DIM = 13
#: what each of the first ``NODE_EXTRA_DIM`` columns of ``node_extra`` holds
NODE_EXTRA_NAMES = (
    "is a detected object", "question mention score", "image link score",
    "taxonomy distance from a linked entity", "ancestor of linked entities", "log degree",
    "object x", "object y", "object x-rank", "object y-rank", "objectness",
    "log number of hyponyms", "depth in the taxonomy",
)
#: extra per-node columns with ``GraphConfig.grounding``: is grounded, max/min x-rank and
#: max/min y-rank of the objects that depict the node or one of its descendants
GROUNDING_DIM = 5
GROUNDING_NAMES = ("depicted in the image", "largest x-rank of its objects",
                   "smallest x-rank of its objects", "largest y-rank of its objects",
                   "smallest y-rank of its objects")
#: extra per-node column with ``GraphConfig.mention_order``
MENTION_ORDER_DIM = 1
#: extra per-node columns with ``GraphConfig.answer_space_features``
ANSWER_SPACE_DIM = 2
ANSWER_SPACE_NAMES = ("answer-space ancestor of a linked entity", "answer-space specificity")
SPATIAL_MODES = ("centres", "boxes")
TAXONOMY = ("hypernym", "instance_hypernym")
STRUCTURAL = ("hypernym", "instance_hypernym", "part_meronym", "part_holonym",
              "member_meronym", "member_holonym", "substance_meronym", "substance_holonym")


@dataclass
class ObjectObservation:
    """A detected object: centre in [0, 1]², objectness, candidate entities, embedding, and
    optionally its box ``(x0, y0, x1, y1)`` in [0, 1]²."""

    x: float
    y: float
    objectness: float
    candidates: list[tuple[int, float]]
    embedding: Tensor
    box: tuple[float, float, float, float] | None = None

    def extent(self) -> tuple[float, float, float, float]:
        """The box, or the centre as a point box when there is none."""
        return self.box if self.box is not None else (self.x, self.y, self.x, self.y)


def observations_from_detections(detections: Sequence[Any]) -> list[ObjectObservation]:
    """Scene-parser detections as observations: candidate scores become probabilities
    (softmax over the listed candidates, ids are KG indices as strings) and each object keeps
    its cell's embedding (``Detection.embedding``)."""
    out = []
    for det in detections:
        scores = torch.tensor([s for _, s in det.entities])
        probs = torch.softmax(scores, dim=0).tolist() if len(scores) else []
        out.append(ObjectObservation(
            x=det.center[0], y=det.center[1], objectness=det.objectness,
            candidates=[(int(e), p) for (e, _), p in zip(det.entities, probs, strict=True)],
            embedding=det.embedding.float(),
            box=tuple(float(v) for v in det.box)))
    return out


@dataclass
class GraphConfig:
    """How much KG each question gets (JSON round-trip via ``vars``)."""

    hops: int = 2
    fanout: int = 12
    max_depth: int = 12
    max_nodes: int = 400
    min_link: float = 0.15
    max_candidates: int = 3
    spatial_margin: float = 0.08
    relations: tuple[str, ...] = STRUCTURAL
    grounding: bool = False
    spatial: str = "centres"
    #: boxes: tolerance of "ends before it begins", and the largest gap of "next to"
    box_tolerance: float = 0.01
    near: float = 0.1
    mention_order: bool = False
    #: the answer-space columns (module docstring) and the entity ids of the answer space
    answer_space_features: bool = False
    answer_space: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.spatial not in SPATIAL_MODES:
            raise ValueError(f"unknown spatial mode {self.spatial!r}; valid: "
                             f"{', '.join(SPATIAL_MODES)}")
        self.answer_space = tuple(sorted(set(self.answer_space)))

    @property
    def node_extra_dim(self) -> int:
        """Width of ``node_extra`` for graphs built with this configuration."""
        return (NODE_EXTRA_DIM + (GROUNDING_DIM if self.grounding else 0)
                + (MENTION_ORDER_DIM if self.mention_order else 0)
                + (ANSWER_SPACE_DIM if self.answer_space_features else 0))

    @property
    def node_extra_names(self) -> tuple[str, ...]:
        """What each column of ``node_extra`` holds, in order (``node_extra_dim`` names)."""
        return (NODE_EXTRA_NAMES + (GROUNDING_NAMES if self.grounding else ())
                + (("place among the question's mentions",) if self.mention_order else ())
                + (ANSWER_SPACE_NAMES if self.answer_space_features else ()))

    @property
    def mention_order_column(self) -> int:
        """Column of the mention order in ``node_extra`` (with ``mention_order``)."""
        return NODE_EXTRA_DIM + (GROUNDING_DIM if self.grounding else 0)

    @property
    def answer_space_column(self) -> int:
        """First of the two answer-space columns (with ``answer_space_features``)."""
        return self.mention_order_column + (MENTION_ORDER_DIM if self.mention_order else 0)

    def with_answer_space(self, entity_ids: Iterable[str]) -> GraphConfig:
        """A copy whose answer space is ``entity_ids`` (the features must be switched on)."""
        if not self.answer_space_features:
            raise ValueError("this graph configuration has no answer-space features; "
                             "a model must be trained with them to take an answer space")
        return replace(self, answer_space=tuple(entity_ids))

    def to_dict(self) -> dict:
        return {**vars(self), "relations": list(self.relations),
                "answer_space": list(self.answer_space)}

    @classmethod
    def from_dict(cls, data: dict) -> GraphConfig:
        """The inverse of :meth:`to_dict`.

        Raises:
            ValueError: a field this version does not know (a model saved by a newer kgmm).
        """
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown graph configuration fields {unknown} (saved by a newer "
                             "kgmm?)")
        return cls(**{**data, "relations": tuple(data.get("relations", STRUCTURAL)),
                      "answer_space": tuple(data.get("answer_space", ()))})


@dataclass
class ReasoningGraph:
    """The tensors the reasoner consumes, plus what decoding and evidence need."""

    x: Tensor
    node_extra: Tensor
    edge_index: Tensor
    edge_type: Tensor
    seed_score: Tensor
    kg_index: Tensor  # KG node index, or -1 for object nodes
    object_slot: Tensor  # index into the observations, or -1 for KG nodes
    extra: dict = field(default_factory=dict)

    @property
    def num_nodes(self) -> int:
        return int(self.x.shape[0])


def ancestors(kg: CompiledKG, start: int, taxonomy: Sequence[int],
              max_depth: int) -> dict[int, int]:
    """Ancestors of ``start`` along taxonomy relations with their distance (BFS, ≤ max_depth)."""
    found: dict[int, int] = {}
    frontier = [start]
    wanted = set(taxonomy)
    for depth in range(1, max_depth + 1):
        nxt = []
        for node in frontier:
            targets, rels = kg.out_edges(node)
            for target, rel in zip(targets.tolist(), rels.tolist(), strict=True):
                if rel in wanted and target not in found and target != start:
                    found[target] = depth
                    nxt.append(target)
        if not nxt:
            break
        frontier = nxt
    return found


_ANCESTOR_CACHE: dict[tuple[str, int, tuple[int, ...], int], dict[int, int]] = {}
_ANCESTOR_CACHE_SIZE = 200_000


def cached_ancestors(kg: CompiledKG, start: int, taxonomy: Sequence[int],
                     max_depth: int) -> dict[int, int]:
    """:func:`ancestors`, memoised per snapshot (a KG is immutable; the cache is cleared
    when it grows past a bound). Callers must not modify the returned dict."""
    key = (kg.content_hash, start, tuple(taxonomy), max_depth)
    found = _ANCESTOR_CACHE.get(key)
    if found is None:
        if len(_ANCESTOR_CACHE) >= _ANCESTOR_CACHE_SIZE:
            _ANCESTOR_CACHE.clear()
        found = _ANCESTOR_CACHE[key] = ancestors(kg, start, taxonomy, max_depth)
    return found


def build_graph(kg: CompiledKG, mentions: Sequence[Mention],
                observations: Sequence[ObjectObservation],
                node_embeddings: Callable[[np.ndarray], Tensor],
                config: GraphConfig | None = None) -> ReasoningGraph:
    """Assemble the reasoning graph of one question (see the module docstring)."""
    config = config or GraphConfig()
    R = kg.num_relations
    taxonomy = [kg.relation_index(r) for r in TAXONOMY if r in kg.relation_ids]
    relations = [r for r in config.relations if r in kg.relation_ids]

    mention_score: dict[int, float] = {}
    mention_place: dict[int, float] = {}
    for place, mention in enumerate(mentions, start=1):
        for index, score in zip(mention.candidates, mention.scores, strict=True):
            mention_score[index] = max(mention_score.get(index, 0.0), score)
            mention_place.setdefault(index, place / len(mentions))
    link_score: dict[int, float] = {}
    depicts: list[tuple[int, int]] = []  # (object slot, kg index)
    for slot, obs in enumerate(observations):
        for index, prob in obs.candidates[:config.max_candidates]:
            if prob >= config.min_link:
                link_score[index] = max(link_score.get(index, 0.0), prob)
                depicts.append((slot, index))
    linked = sorted(set(mention_score) | set(link_score))

    kg_nodes: set[int] = set(linked)
    src: list[int] = []
    dst: list[int] = []
    rel: list[int] = []
    if linked:
        sub = kg.subgraph(linked, hops=config.hops, fanout=config.fanout, relations=relations,
                          max_nodes=config.max_nodes)
        n_id = sub.n_id.numpy()
        kg_nodes.update(n_id.tolist())
        sub_edges = (n_id[sub.edge_index[0].numpy()], n_id[sub.edge_index[1].numpy()],
                     sub.edge_type.numpy())
    else:
        sub_edges = (np.zeros(0, np.int64),) * 3
    distance: dict[int, int] = {i: 0 for i in linked}
    ancestor_of: dict[int, int] = {}
    grounded: dict[int, set[int]] = {}  # KG node → object slots depicting it or a descendant
    for slot, index in depicts:
        grounded.setdefault(index, set()).add(slot)
    for entity in linked:
        for anc, depth in cached_ancestors(kg, entity, taxonomy, config.max_depth).items():
            if entity in grounded:
                grounded.setdefault(anc, set()).update(grounded[entity])
            kg_nodes.add(anc)
            src.append(entity)
            dst.append(anc)
            rel.append(R)
            distance[anc] = min(distance.get(anc, depth), depth)
            ancestor_of[anc] = ancestor_of.get(anc, 0) + 1

    nodes = np.asarray(sorted(kg_nodes), dtype=np.int64)
    kg_list = nodes.tolist()
    n_kg, n_obj = len(kg_list), len(observations)
    src_a, dst_a, rel_a = (np.concatenate([np.asarray(v, dtype=np.int64), e.astype(np.int64)])
                           for v, e in zip((src, dst, rel), sub_edges, strict=True))
    parts = [(np.searchsorted(nodes, src_a), np.searchsorted(nodes, dst_a), rel_a)]
    if depicts:
        slots, targets = (np.asarray(v, dtype=np.int64) for v in zip(*depicts, strict=True))
        parts.append((n_kg + slots, np.searchsorted(nodes, targets),
                      np.full(len(depicts), R + 1)))
    spatial = spatial_edges(observations, config, offset=n_kg, first_relation=R + 2)
    if spatial:
        parts.append(tuple(np.asarray(v, dtype=np.int64) for v in zip(*spatial, strict=True)))
    edge_src, edge_dst, edge_rel = (np.concatenate(v) for v in zip(*parts, strict=True))
    # unique (src, dst, rel) triples in sorted order, through one int64 key per edge
    n_total, n_rel = n_kg + n_obj + 1, R + len(EXTRA_RELATIONS)
    keys = np.unique((edge_src * n_total + edge_dst) * n_rel + edge_rel)
    edge_index = torch.from_numpy(np.stack([keys // n_rel // n_total,
                                            keys // n_rel % n_total])).long()
    edge_type = torch.from_numpy(keys % n_rel).long()

    kg_x = node_embeddings(nodes) if n_kg else torch.zeros(0, _dim(observations,
                                                                  node_embeddings))
    obj_x = (torch.stack([o.embedding.float() for o in observations]) if observations
             else torch.zeros(0, kg_x.shape[1]))
    x = torch.cat([kg_x, obj_x])

    log_degree, log_hyponyms, scaled_depth = node_statistics(kg)
    extra = np.zeros((n_kg + n_obj, config.node_extra_dim), dtype=np.float32)
    if n_kg:
        cap = config.max_depth + 1
        extra[:n_kg, 1] = [mention_score.get(g, 0.0) for g in kg_list]
        extra[:n_kg, 2] = [link_score.get(g, 0.0) for g in kg_list]
        extra[:n_kg, 3] = np.minimum([distance.get(g, cap) for g in kg_list], cap) / cap
        extra[:n_kg, 4] = np.asarray([ancestor_of.get(g, 0) for g in kg_list]) / max(
            len(linked), 1)
        extra[:n_kg, 5] = log_degree[nodes]
        extra[:n_kg, 11] = log_hyponyms[nodes]
        extra[:n_kg, 12] = scaled_depth[nodes]
    if n_obj:
        xs = np.array([o.x for o in observations])
        ys = np.array([o.y for o in observations])
        if n_obj > 1:
            ranks = np.stack([xs.argsort().argsort(), ys.argsort().argsort()], 1) / (n_obj - 1)
        else:
            ranks = np.full((1, 2), 0.5)
        rows = slice(n_kg, n_kg + n_obj)
        extra[rows, 0] = 1.0
        extra[rows, 6], extra[rows, 7] = xs, ys
        extra[rows, 8], extra[rows, 9] = ranks[:, 0], ranks[:, 1]
        extra[rows, 10] = [o.objectness for o in observations]
        if config.grounding:
            grounding_columns = slice(NODE_EXTRA_DIM, NODE_EXTRA_DIM + GROUNDING_DIM)
            for g, grounding_slots in grounded.items():
                r = ranks[sorted(grounding_slots)]
                extra[int(np.searchsorted(nodes, g)), grounding_columns] = (
                    1.0, r[:, 0].max(), r[:, 0].min(), r[:, 1].max(), r[:, 1].min())
            extra[rows, NODE_EXTRA_DIM] = 1.0
            extra[rows, NODE_EXTRA_DIM + 1] = extra[rows, NODE_EXTRA_DIM + 2] = ranks[:, 0]
            extra[rows, NODE_EXTRA_DIM + 3] = extra[rows, NODE_EXTRA_DIM + 4] = ranks[:, 1]
    if config.mention_order and n_kg:
        extra[:n_kg, config.mention_order_column] = [mention_place.get(g, 0.0)
                                                     for g in kg_list]
    if config.answer_space_features and n_kg:
        in_space = answer_space_mask(kg, config.answer_space)
        specificity = answer_space_specificity(kg, linked, in_space, taxonomy, config.max_depth)
        column = config.answer_space_column
        extra[:n_kg, column + 1] = [specificity.get(g, 0.0) for g in kg_list]
        extra[:n_kg, column] = extra[:n_kg, column + 1] > 0
    extra = torch.from_numpy(extra)

    seed = torch.cat([extra[:n_kg, 1], 0.5 * extra[n_kg:, 10]])
    return ReasoningGraph(
        x=x, node_extra=extra, edge_index=edge_index, edge_type=edge_type, seed_score=seed,
        kg_index=torch.tensor(kg_list + [-1] * n_obj, dtype=torch.long),
        object_slot=torch.tensor([-1] * n_kg + list(range(n_obj)), dtype=torch.long),
    )


_ANSWER_SPACE_CACHE: dict[tuple[str, tuple[str, ...]], np.ndarray] = {}


def answer_space_mask(kg: CompiledKG, entity_ids: tuple[str, ...]) -> np.ndarray:
    """Boolean mask over the KG's nodes of the answer space (ids not in the KG are skipped);
    memoised per snapshot and answer space."""
    key = (kg.content_hash, entity_ids)
    mask = _ANSWER_SPACE_CACHE.get(key)
    if mask is None:
        if len(_ANSWER_SPACE_CACHE) >= 16:
            _ANSWER_SPACE_CACHE.clear()
        mask = np.zeros(kg.num_nodes, dtype=np.float32)
        for entity_id in entity_ids:
            index = kg.find_index(entity_id)
            if index is not None:
                mask[index] = 1.0
        _ANSWER_SPACE_CACHE[key] = mask
    return mask


def answer_space_specificity(kg: CompiledKG, linked: Sequence[int], in_space: np.ndarray,
                             taxonomy: Sequence[int], max_depth: int) -> dict[int, float]:
    """``spec(v)`` of the module docstring for every answer-space ancestor of a linked
    entity."""
    out: dict[int, float] = {}
    for entity in linked:
        space = [a for a in cached_ancestors(kg, entity, taxonomy, max_depth) if in_space[a]]
        for a in space:
            below = sum(1 for b in space
                        if b != a and a in cached_ancestors(kg, b, taxonomy, max_depth))
            out[a] = max(out.get(a, 0.0), 1.0 / (1 + below))
    return out


def spatial_edges(observations: Sequence[ObjectObservation], config: GraphConfig, *,
                  offset: int, first_relation: int) -> list[tuple[int, int, int]]:
    """``(src, dst, relation)`` spatial edges between object nodes ``offset + slot``;
    relations ``first_relation + 0/1/2`` = left_of, above, next_to (module docstring)."""
    left, above, near = first_relation, first_relation + 1, first_relation + 2
    out: list[tuple[int, int, int]] = []
    boxes = [o.extent() for o in observations]
    for a, oa in enumerate(observations):
        for b, ob in enumerate(observations):
            if a == b:
                continue
            if config.spatial == "boxes":
                ba, bb = boxes[a], boxes[b]
                tol = config.box_tolerance
                if ba[2] <= bb[0] + tol:
                    out.append((offset + a, offset + b, left))
                if ba[3] <= bb[1] + tol:
                    out.append((offset + a, offset + b, above))
                gap = max(bb[0] - ba[2], ba[0] - bb[2], bb[1] - ba[3], ba[1] - bb[3], 0.0)
                if a < b and gap <= config.near:
                    out.append((offset + a, offset + b, near))
                continue
            if oa.x + config.spatial_margin < ob.x:
                out.append((offset + a, offset + b, left))
            if oa.y + config.spatial_margin < ob.y:
                out.append((offset + a, offset + b, above))
            if a < b and abs(oa.x - ob.x) + abs(oa.y - ob.y) < 0.45:
                out.append((offset + a, offset + b, near))
    return out


_TAXONOMY_CACHE: dict[str, tuple[np.ndarray, np.ndarray]] = {}
_STATISTICS_CACHE: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}


def node_statistics(kg: CompiledKG) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per node, scaled for ``node_extra``: ``log(1 + degree) / 10``,
    ``log(1 + direct hyponyms) / 10`` and ``min(depth, 20) / 20`` (once per snapshot)."""
    cached = _STATISTICS_CACHE.get(kg.content_hash)
    if cached is None:
        hyponyms, depth = taxonomy_features(kg)
        cached = (np.log1p(kg.degree()).astype(np.float32) / 10.0,
                  np.log1p(hyponyms).astype(np.float32) / 10.0,
                  np.minimum(depth, 20).astype(np.float32) / 20.0)
        _STATISTICS_CACHE[kg.content_hash] = cached
    return cached


def taxonomy_features(kg: CompiledKG) -> tuple[np.ndarray, np.ndarray]:
    """Per node: number of direct hyponyms, and depth (shortest hypernym path to a root).

    Computed once per snapshot (by content hash) with a breadth-first pass from the roots.
    """
    cached = _TAXONOMY_CACHE.get(kg.content_hash)
    if cached is not None:
        return cached
    rels = [kg.relation_index(r) for r in TAXONOMY if r in kg.relation_ids]
    src, dst, rel = kg.edge_arrays()
    is_tax = np.isin(rel, rels)
    child, parent = src[is_tax], dst[is_tax]
    hyponyms = np.bincount(parent, minlength=kg.num_nodes)
    has_parent = np.zeros(kg.num_nodes, dtype=bool)
    has_parent[child] = True
    depth = np.full(kg.num_nodes, -1, dtype=np.int64)
    order = np.argsort(parent, kind="stable")
    child_sorted, parent_sorted = child[order], parent[order]
    starts = np.searchsorted(parent_sorted, np.arange(kg.num_nodes))
    ends = np.searchsorted(parent_sorted, np.arange(kg.num_nodes), side="right")
    frontier = np.flatnonzero(~has_parent & (hyponyms > 0))
    depth[frontier] = 0
    level = 0
    while frontier.size:
        level += 1
        kids = np.concatenate([child_sorted[starts[p]:ends[p]] for p in frontier]) \
            if frontier.size else np.zeros(0, np.int64)
        kids = np.unique(kids)
        kids = kids[depth[kids] < 0]
        depth[kids] = level
        frontier = kids
    depth[depth < 0] = 0
    _TAXONOMY_CACHE[kg.content_hash] = (hyponyms, depth)
    return hyponyms, depth


def _dim(observations: Sequence[ObjectObservation], node_embeddings: Callable) -> int:
    if observations:
        return int(observations[0].embedding.shape[-1])
    return int(node_embeddings(np.zeros(1, dtype=np.int64)).shape[-1])


def relation_names(kg: CompiledKG) -> list[str]:
    """Names of every relation id a reasoning graph uses (KG relations, then the extras)."""
    return [*kg.relation_ids, *EXTRA_RELATIONS]


def relation_inverse(kg: CompiledKG) -> list[int]:
    """Inverse relation ids for the reasoner's reversed edges (-1 = reverse gets its own id)."""
    return [*kg.relation_inverse, *([-1] * len(EXTRA_RELATIONS))]
