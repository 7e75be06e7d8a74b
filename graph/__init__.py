"""kgmm.graph — the knowledge graph: model, sources, stores, compiled snapshot, inspection.

This package imports nothing from the rest of kgmm and loads neither torch nor rdflib nor
neo4j at import time.
"""

from .errors import (
    InputError,
    KGMMError,
    QueryError,
    ReadOnlyViolationError,
    SnapshotError,
    SourceNotFoundError,
    StoreAuthError,
    StoreError,
    StoreUnavailableError,
)
from .home import kgmm_home
from .model import Entity, GraphData, Relation, Triple

__all__ = [
    "Entity",
    "GraphData",
    "InputError",
    "KGMMError",
    "QueryError",
    "ReadOnlyViolationError",
    "Relation",
    "SnapshotError",
    "SourceNotFoundError",
    "StoreAuthError",
    "StoreError",
    "StoreUnavailableError",
    "Triple",
    "kgmm_home",
]
