"""JSON views of answers and entities: what the routes return and the page draws."""

from __future__ import annotations

import math
from typing import Any


def finite(value: Any) -> float:
    """``value`` as a float JSON can carry (NaN and infinities become 0)."""
    number = float(value)
    return number if math.isfinite(number) else 0.0


def _label(kg: Any, node_id: str) -> str:
    if node_id.startswith("object#"):
        return f"object {node_id.removeprefix('object#')}"
    index = kg.find_index(node_id) if kg is not None else None
    return kg.label(index) if index is not None else node_id


class _GraphBuilder:
    def __init__(self, kg: Any) -> None:
        self.kg = kg
        self.nodes: dict[str, dict[str, Any]] = {}
        self.edges: dict[str, dict[str, Any]] = {}

    def node(self, node_id: str, kind: str, role: str | None = None,
             score: float | None = None, label: str | None = None) -> None:
        node = self.nodes.get(node_id)
        if node is None:
            node = self.nodes[node_id] = {"id": node_id, "label": label or _label(self.kg, node_id),
                                          "kind": kind, "roles": [], "score": None}
        if role and role not in node["roles"]:
            node["roles"].append(role)
        if score is not None and (node["score"] is None or score > node["score"]):
            node["score"] = finite(score)

    def edge(self, source: str, target: str, label: str, kind: str) -> None:
        edge_id = f"{source}|{label}|{target}"
        self.edges.setdefault(edge_id, {"id": edge_id, "source": source, "target": target,
                                        "label": label, "kind": kind})


def answer_graph(answer: Any, kg: Any) -> dict[str, Any]:
    """The question, the image, linked entities, objects and evidence paths as a graph."""
    g = _GraphBuilder(kg)
    g.node("question", "question", label=answer.question or "question")
    g.node("image", "image", label="image")
    evidence = answer.evidence
    if evidence is not None:
        for linked in evidence.linked_entities:
            g.node(linked.entity_id, "entity", "linked", linked.score, label=linked.label)
            if linked.source == "question":
                g.edge("question", linked.entity_id, f"mentions “{linked.span or linked.label}”",
                       "mention")
            else:
                g.edge("image", linked.entity_id, "sees" + (f" at {linked.span}"
                                                            if linked.span else ""), "sees")
        for path in evidence.paths:
            for node_id in path.nodes:
                if node_id.startswith("object#"):
                    g.node(node_id, "object", "path")
                    g.edge("image", node_id, "contains", "sees")
                else:
                    g.node(node_id, "entity", "path")
            for source, relation, target in zip(path.nodes, path.relations, path.nodes[1:],
                                                strict=False):
                g.edge(source, target, relation, "relation")
        for node_id, score in evidence.top_nodes:
            if node_id in g.nodes:
                g.node(node_id, g.nodes[node_id]["kind"], "top", score)
    for alternative in answer.alternatives:
        if alternative.entity_id:
            g.node(alternative.entity_id, "entity", "alternative", alternative.score)
    answer_id = answer.entity_id or f"answer:{answer.text}"
    if answer.entity_id:
        g.node(answer.entity_id, "entity", "answer", answer.score)
    else:  # a count, yes/no or vocabulary answer: no entity behind it
        g.node(answer_id, "answer", "answer", answer.score, label=answer.text or "(none)")
    g.edge("question", answer_id, "answer", "answer")
    _connect_drawn_entities(g, kg)
    _disambiguate_labels(g)
    return {"nodes": list(g.nodes.values()), "edges": list(g.edges.values())}


def _disambiguate_labels(g: _GraphBuilder) -> None:
    """Entities that share a label (senses of one word) get their id's tail appended."""
    seen: dict[str, int] = {}
    for node in g.nodes.values():
        if node["kind"] == "entity":
            seen[node["label"]] = seen.get(node["label"], 0) + 1
    for node_id, node in g.nodes.items():
        if node["kind"] == "entity" and seen[node["label"]] > 1:
            node["label"] = f"{node['label']} ({node_id.split(':', 1)[-1]})"


def _connect_drawn_entities(g: _GraphBuilder, kg: Any, max_nodes: int = 80) -> None:
    """Add the KG's edges between entities already drawn (one per pair, either direction)."""
    if kg is None:
        return
    drawn = {}
    for node_id, node in g.nodes.items():
        if node["kind"] == "entity" and (index := kg.find_index(node_id)) is not None:
            drawn[index] = node_id
    if len(drawn) > max_nodes:
        return
    linked = {frozenset((e["source"], e["target"])) for e in g.edges.values()}
    relation_ids = [r.id for r in kg.relations()]
    for index, node_id in drawn.items():
        neighbours, relations = kg.out_edges(index)
        for other, rel in zip(neighbours.tolist(), relations.tolist(), strict=True):
            target = drawn.get(other)
            if target is None or target == node_id or frozenset((node_id, target)) in linked:
                continue
            linked.add(frozenset((node_id, target)))
            g.edge(node_id, target, relation_ids[rel] if rel < len(relation_ids) else str(rel),
                   "kg")


def answer_view(answer: Any, kg: Any, elapsed_ms: float) -> dict[str, Any]:
    """``Answer`` as the ``/answer`` response body."""
    evidence = answer.evidence
    return {
        "text": answer.text, "entity_id": answer.entity_id, "score": finite(answer.score),
        "alternatives": [{"text": a.text, "score": finite(a.score), "entity_id": a.entity_id}
                         for a in answer.alternatives],
        "question": answer.question,
        "evidence": None if evidence is None else {
            "linked_entities": [{"entity_id": e.entity_id, "label": e.label,
                                 "score": finite(e.score), "source": e.source, "span": e.span}
                                for e in evidence.linked_entities],
            "subgraph_nodes": int(evidence.subgraph_nodes),
            "subgraph_edges": int(evidence.subgraph_edges),
            "top_nodes": [{"id": n, "score": finite(s)} for n, s in evidence.top_nodes],
            "paths": [{"nodes": list(p.nodes), "relations": list(p.relations),
                       "score": finite(p.score)} for p in evidence.paths],
            "score_terms": [{"name": n, "value": finite(v)} for n, v in evidence.score_terms],
        },
        "graph": answer_graph(answer, kg),
        "elapsed_ms": round(elapsed_ms, 3),
    }


def entity_view(kg: Any, index: int, limit: int) -> dict[str, Any]:
    """One entity of the compiled KG with up to ``limit`` neighbours (out-edges first)."""
    entity = kg.entity(index)
    relations = {r.id: r.label for r in kg.relations()}
    relation_ids = [r.id for r in kg.relations()]
    out_nodes, out_rels = kg.out_edges(index)
    in_nodes, in_rels = kg.in_edges(index)
    neighbours: list[dict[str, Any]] = []
    for direction, nodes, rels in (("out", out_nodes, out_rels), ("in", in_nodes, in_rels)):
        for node, rel in zip(nodes.tolist(), rels.tolist(), strict=True):
            if len(neighbours) >= limit:
                break
            relation = relation_ids[rel] if 0 <= rel < len(relation_ids) else str(rel)
            neighbours.append({"id": kg.id_of(node), "label": kg.label(node),
                               "relation": relation,
                               "relation_label": relations.get(relation, relation),
                               "direction": direction})
    return {
        "id": entity.id, "label": entity.label, "aliases": list(entity.aliases),
        "description": entity.description, "types": list(entity.types),
        "properties": plain(dict(entity.properties)),
        "out_degree": len(out_nodes), "in_degree": len(in_nodes),
        "neighbours": neighbours, "truncated": len(out_nodes) + len(in_nodes) > len(neighbours),
    }


def plain(value: Any) -> Any:
    """Properties as JSON values (tuples become lists, non-finite floats become null)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if hasattr(value, "tolist") and type(value).__module__ in ("numpy", "torch"):
        return plain(value.tolist())  # numpy/torch scalars and arrays
    return str(value)
