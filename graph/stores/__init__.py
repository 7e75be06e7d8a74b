"""Knowledge-graph stores: the embedded default (rdflib over Oxigraph) and Neo4j."""

from __future__ import annotations

import os
from typing import Any

from .base import ImportReport, InspectionResult, KGStore, StoreStats

BACKENDS = ("rdflib", "neo4j")


def open_store(backend: str = "rdflib", *, data_dir: str | os.PathLike[str] | None = None,
               name: str = "default", **neo4j_settings: Any) -> KGStore:
    """Open a store by backend name: ``rdflib`` (embedded, under KGMM_HOME) or ``neo4j``.

    ``neo4j_settings`` (``uri``, ``user``, ``password``, ``database``) default to the
    ``KGMM_NEO4J_URI/USER/PASSWORD`` environment variables.
    """
    if backend == "rdflib":
        from .embedded import EmbeddedStore

        return EmbeddedStore(data_dir=data_dir, name=name)
    if backend == "neo4j":
        from .neo4j_store import Neo4jStore

        return Neo4jStore(**{k: v for k, v in neo4j_settings.items() if v is not None})
    raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "ImportReport", "InspectionResult", "KGStore", "StoreStats", "open_store"]
