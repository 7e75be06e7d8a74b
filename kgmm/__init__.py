"""kgmm — knowledge-graph-augmented multimodal reasoning.

The public names are re-exported lazily (PEP 562): ``import kgmm`` and ``import kgmm.graph``
load neither torch nor rdflib nor neo4j; each name is imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    # answering
    "answer": "kgmm.pipeline",
    "KGMM": "kgmm.pipeline",
    "Answer": "kgmm.pipeline",
    "Evidence": "kgmm.pipeline",
    "ModelError": "kgmm.pipeline",
    # retrieval
    "rerank": "kgmm.retrieval",
    "retrieve": "kgmm.retrieval",
    "Retriever": "kgmm.retrieval",
    # knowledge graph
    "Entity": "kgmm.graph.model",
    "Relation": "kgmm.graph.model",
    "Triple": "kgmm.graph.model",
    "GraphData": "kgmm.graph.model",
    "CompiledKG": "kgmm.graph.compiled",
    "EmbeddedStore": "kgmm.graph.stores.embedded",
    "Neo4jStore": "kgmm.graph.stores.neo4j_store",
    "open_store": "kgmm.graph.stores",
    "read_source": "kgmm.graph.sources",
    "kgmm_home": "kgmm.graph.home",
    # errors
    "KGMMError": "kgmm.graph.errors",
    "InputError": "kgmm.graph.errors",
    "SourceNotFoundError": "kgmm.graph.errors",
    "StoreError": "kgmm.graph.errors",
    "StoreUnavailableError": "kgmm.graph.errors",
    "StoreAuthError": "kgmm.graph.errors",
    "QueryError": "kgmm.graph.errors",
    "ReadOnlyViolationError": "kgmm.graph.errors",
    "SnapshotError": "kgmm.graph.errors",
    "QuestionRecord": "kgmm.graph.inspection", "record_from_answer": "kgmm.inspection",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'kgmm' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
