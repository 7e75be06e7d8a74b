"""Conversions between model objects and the flat records that stores persist.

Both stores keep an entity as the same flat record (``id``, ``label``, ``aliases``,
``description``, ``types`` and its extra properties), so that they compile to equal snapshots.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..model import RESERVED_KEYS, Entity, PropertyValue, Relation

#: Property-name prefix that kgmm keeps for its own bookkeeping in stores.
INTERNAL_PREFIX = "_kgmm"


def entity_to_record(entity: Entity) -> dict[str, Any]:
    """Flatten an entity: model fields plus its properties (tuples become lists)."""
    record: dict[str, Any] = {
        "id": entity.id,
        "label": entity.label,
        "aliases": list(entity.aliases),
        "description": entity.description,
        "types": list(entity.types),
    }
    for key in sorted(entity.properties):
        value = entity.properties[key]
        record[key] = list(value) if isinstance(value, tuple) else value
    return record


def entity_from_record(record: Mapping[str, Any]) -> Entity:
    """Rebuild an entity from :func:`entity_to_record`'s output (internal keys dropped)."""
    properties: dict[str, PropertyValue] = {}
    for key in sorted(record):
        if key in RESERVED_KEYS or key.startswith(INTERNAL_PREFIX):
            continue
        value = record[key]
        properties[key] = tuple(str(v) for v in value) if isinstance(value, list | tuple) else value
    return Entity(
        id=str(record["id"]),
        label=str(record["label"]),
        aliases=tuple(record.get("aliases") or ()),
        description=str(record.get("description") or ""),
        types=tuple(record.get("types") or ()),
        properties=properties,
    )


#: Canonical JSON: sorted keys, no whitespace, UTF-8 kept (one encoder, built once).
CANONICAL_JSON = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def entity_to_json(entity: Entity) -> str:
    """Canonical JSON of an entity record."""
    return CANONICAL_JSON.encode(entity_to_record(entity))


def relation_to_record(relation: Relation) -> dict[str, Any]:
    """Flatten a relation; a missing inverse is stored as an empty string."""
    return {"id": relation.id, "label": relation.label, "inverse": relation.inverse or ""}


def relation_from_record(record: Mapping[str, Any]) -> Relation:
    """Rebuild a relation from :func:`relation_to_record`'s output."""
    return Relation(id=str(record["id"]), label=str(record["label"]),
                    inverse=str(record["inverse"]) if record.get("inverse") else None)
