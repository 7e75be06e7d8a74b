"""The store protocol that the embedded (rdflib/Oxigraph) and Neo4j stores both implement."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ..model import GraphData

if TYPE_CHECKING:
    from ..inspection import QuestionRecord

ProgressCallback = Callable[[str, int, int], None]
"""``progress(step, done, total)`` — called by long operations; ``total`` may be 0 if unknown."""


@dataclass(frozen=True, slots=True)
class StoreStats:
    """Counts of what a store holds."""

    entities: int
    relations: int
    triples: int

    def as_dict(self) -> dict[str, int]:
        return {"entities": self.entities, "relations": self.relations, "triples": self.triples}


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What an import changed: new items, and entities whose content was replaced."""

    source: str
    entities_added: int
    entities_updated: int
    relations_added: int
    triples_added: int
    seconds: float


@dataclass(frozen=True, slots=True)
class InspectionResult:
    """Rows of a read-only inspection query, in a backend-independent form.

    Nodes come back as their property dicts, relationships as ``{"type": ..., **properties}``.
    ``truncated`` is true when the row limit cut the result.
    """

    columns: list[str]
    rows: list[dict[str, Any]]
    truncated: bool = False
    backend: str = ""
    notes: list[str] = field(default_factory=list)


@runtime_checkable
class KGStore(Protocol):
    """A persistent knowledge-graph store.

    Imports are idempotent upserts keyed by entity/relation id; a failed import leaves the
    store as it was. Reading gives back exactly what was imported.
    """

    backend: str

    def import_data(self, data: GraphData, *,
                    progress: ProgressCallback | None = None) -> ImportReport: ...

    def stats(self) -> StoreStats: ...

    def export(self) -> GraphData: ...

    def inspect(self, query: str, params: Mapping[str, Any] | None = None, *,
                limit: int = 1000, timeout_s: float = 10.0) -> InspectionResult: ...

    def write_question_records(self, records: Sequence[QuestionRecord]) -> int:
        """Upsert inspection records by question id, all or nothing (see
        :mod:`kgmm.graph.inspection`); returns how many were written."""
        ...

    def delete_question_records(self, run: str | None = None) -> int:
        """Delete the inspection records of ``run`` (all when None); returns how many."""
        ...

    def close(self) -> None: ...
