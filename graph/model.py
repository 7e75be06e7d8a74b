"""The knowledge-graph data model: entities, relations, triples, and a validated bundle of them.

Ids are stable, readable strings (``wn:dog.n.01``, ``cn:/c/en/dog``). A relation may name its
inverse (``hypernym`` ↔ ``hyponym``); stores keep the triples exactly as given and never
invent inverse edges.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .errors import InputError

PropertyValue = str | int | float | bool | tuple[str, ...]

#: Entity fields that are part of the model; properties may not reuse these names.
RESERVED_KEYS = frozenset({"id", "label", "aliases", "description", "types"})

#: Relation ids become Neo4j relationship types and RDF predicate names, so they are restricted.
RELATION_ID_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


@dataclass(frozen=True, slots=True)
class Entity:
    """A node of the knowledge graph.

    Attributes:
        id: stable string id, unique in a graph.
        label: the preferred human-readable name.
        aliases: other names (synonyms, alternative labels), without the label.
        description: a gloss or definition.
        types: coarse types (e.g. WordNet lexicographer files such as ``noun.animal``).
        properties: extra scalar or string-list properties (e.g. ``offset``, ``pos``).
    """

    id: str
    label: str
    aliases: tuple[str, ...] = ()
    description: str = ""
    types: tuple[str, ...] = ()
    properties: Mapping[str, PropertyValue] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Relation:
    """A relation (edge type); ``inverse`` names the relation that reads the edge backwards."""

    id: str
    label: str
    inverse: str | None = None


@dataclass(frozen=True, slots=True)
class Triple:
    """A directed edge ``subject --relation--> object`` between two entity ids."""

    subject: str
    relation: str
    object: str


@dataclass(slots=True)
class GraphData:
    """Entities, relations and triples read from one source, validated as a whole.

    ``source`` names where they came from (a file or a dataset) for error messages.
    """

    entities: list[Entity]
    relations: list[Relation]
    triples: list[Triple]
    source: str = "<memory>"

    def validate(self) -> GraphData:
        """Check ids, references and property names; raise :class:`InputError` on the first problem.

        Duplicate entities or triples are not errors (imports are idempotent); an entity
        listed twice with different content is.
        """
        seen: dict[str, Entity] = {}
        for index, entity in enumerate(self.entities):
            if not entity.id or entity.id != entity.id.strip():
                raise InputError("empty or padded entity id", source=self.source, record=index,
                                 field="id")
            if not entity.label:
                raise InputError(f"entity {entity.id!r} has no label", source=self.source,
                                 record=index, field="label")
            bad = RESERVED_KEYS.intersection(entity.properties)
            if bad:
                raise InputError(f"entity {entity.id!r} uses reserved property names {sorted(bad)}",
                                 source=self.source, record=index, field="properties")
            previous = seen.setdefault(entity.id, entity)
            if previous != entity:
                raise InputError(f"entity {entity.id!r} is defined twice with different content",
                                 source=self.source, record=index, field="id")
        relations: dict[str, Relation] = {}
        for index, relation in enumerate(self.relations):
            if not RELATION_ID_PATTERN.match(relation.id):
                raise InputError(
                    f"relation id {relation.id!r} must match {RELATION_ID_PATTERN.pattern}",
                    source=self.source, record=index, field="id")
            previous_rel = relations.setdefault(relation.id, relation)
            if previous_rel != relation:
                raise InputError(
                    f"relation {relation.id!r} is defined twice with different content",
                    source=self.source, record=index, field="id")
        for index, triple in enumerate(self.triples):
            for name in ("subject", "object"):
                if getattr(triple, name) not in seen:
                    raise InputError(f"triple refers to unknown entity {getattr(triple, name)!r}",
                                     source=self.source, record=index, field=name)
            if triple.relation not in relations:
                raise InputError(f"triple uses undeclared relation {triple.relation!r}",
                                 source=self.source, record=index, field="relation")
        return self

    def deduplicated(self) -> GraphData:
        """Return a copy with repeated entities, relations and triples removed (order kept)."""
        return GraphData(
            entities=list({e.id: e for e in self.entities}.values()),
            relations=list({r.id: r for r in self.relations}.values()),
            triples=list(dict.fromkeys(self.triples)),
            source=self.source,
        )

    def stats(self) -> dict[str, int]:
        """Counts of entities, relations and triples."""
        return {"entities": len(self.entities), "relations": len(self.relations),
                "triples": len(self.triples)}


def merge_graph_data(parts: Iterable[GraphData], source: str = "<merged>") -> GraphData:
    """Concatenate several sources into one bundle (not validated)."""
    entities: list[Entity] = []
    relations: list[Relation] = []
    triples: list[Triple] = []
    for part in parts:
        entities.extend(part.entities)
        relations.extend(part.relations)
        triples.extend(part.triples)
    return GraphData(entities, relations, triples, source=source)
