"""The embedded default store: rdflib's API over an on-disk Oxigraph database.

Layout under ``<KGMM_HOME>/stores/<name>/``::

    CURRENT        the name of the live generation directory (replaced atomically)
    gen-<uuid>/    an Oxigraph (RocksDB) database
    .lock          held while an import runs

An import never touches the live generation: it copies it aside (Oxigraph's ``backup``,
hard links where possible), loads the new data into the copy, and only then swaps
``CURRENT``. A failed or interrupted import leaves the store exactly as it was.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import InputError, StoreError
from ..home import kgmm_home
from ..model import Entity, GraphData, Relation, Triple
from . import rdf_terms as T
from .base import ImportReport, InspectionResult, ProgressCallback, StoreStats
from .records import entity_from_record, entity_to_json, relation_from_record, relation_to_record

DEFAULT_STORE_NAME = "default"


class EmbeddedStore:
    """A persistent RDF store (rdflib API, Oxigraph engine) holding one knowledge graph."""

    backend = "rdflib"

    def __init__(self, path: str | os.PathLike[str] | None = None, *,
                 data_dir: str | os.PathLike[str] | None = None,
                 name: str = DEFAULT_STORE_NAME) -> None:
        self.root = Path(path) if path is not None else kgmm_home(data_dir) / "stores" / name
        self._ox: Any = None
        self._generation: str | None = None
        self._export_cache: tuple[str, GraphData] | None = None

    # -- generations -------------------------------------------------------------------
    def _read_current(self) -> str | None:
        try:
            name = (self.root / "CURRENT").read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        return name or None

    def _write_current(self, generation: str) -> None:
        tmp = self.root / f".CURRENT.{uuid.uuid4().hex}"
        tmp.write_text(generation + "\n", encoding="utf-8")
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, self.root / "CURRENT")
        dir_fd = os.open(self.root, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    @property
    def generation(self) -> str | None:
        """Name of the live generation, or None for an empty, never-imported store."""
        return self._read_current()

    def _oxigraph(self) -> Any:
        """The live generation as a read-only pyoxigraph store (None when empty)."""
        import pyoxigraph as ox

        generation = self._read_current()
        if generation is None:
            return None
        if self._ox is None or self._generation != generation:
            self._ox = ox.Store.read_only(str(self.root / generation))
            self._generation = generation
        return self._ox

    @contextmanager
    def _import_lock(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise StoreError(f"another import into {self.root} is running") from exc
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _remove_stale_generations(self, keep: str | None) -> None:
        for child in self.root.glob("gen-*"):
            if child.name != keep:
                shutil.rmtree(child, ignore_errors=True)

    # -- import ------------------------------------------------------------------------
    def import_data(self, data: GraphData, *,
                    progress: ProgressCallback | None = None) -> ImportReport:
        """Upsert entities, relations and triples; all or nothing.

        An entity or relation already present with different content is replaced; triples
        are a set, so importing the same data twice changes nothing.
        """
        started = time.perf_counter()
        data.validate()
        data = data.deduplicated()
        with self._import_lock():
            self._remove_stale_generations(keep=self._read_current())
            before = self.stats()
            new_generation = f"gen-{uuid.uuid4().hex}"
            target = self.root / new_generation
            try:
                updated = self._load_aside(data, target, progress)
                self.close()
                self._write_current(new_generation)
            except BaseException as exc:
                self.close()
                shutil.rmtree(target, ignore_errors=True)
                if isinstance(exc, StoreError | InputError | KeyboardInterrupt):
                    raise
                raise StoreError(f"import into {self.root} failed, store unchanged: {exc}") from exc
            self._remove_stale_generations(keep=new_generation)
            after = self.stats()
        return ImportReport(
            source=data.source,
            entities_added=after.entities - before.entities,
            entities_updated=updated,
            relations_added=after.relations - before.relations,
            triples_added=after.triples - before.triples,
            seconds=time.perf_counter() - started,
        )

    def _load_aside(self, data: GraphData, target: Path, progress: ProgressCallback | None) -> int:
        """Copy the live generation to ``target`` and load ``data`` into it; return #updates."""
        import pyoxigraph as ox

        live = self._read_current()
        if live is not None:
            self.close()
            source = ox.Store(str(self.root / live))
            source.backup(str(target))
            del source
        store = ox.Store(str(target))
        try:
            updated = _drop_changed_records(store, data) if live is not None else 0
            if progress:
                progress("serialise", 0, 1)
            payload = _to_ntriples(data)
            if progress:
                progress("serialise", 1, 1)
                progress("load", 0, 1)
            store.bulk_load(payload, format=ox.RdfFormat.N_TRIPLES)
            store.flush()
            if progress:
                progress("load", 1, 1)
        finally:
            del store
        return updated

    # -- reading -----------------------------------------------------------------------
    def stats(self) -> StoreStats:
        """Counts of entities, relations and relation triples."""
        store = self._oxigraph()
        if store is None:
            return StoreStats(0, 0, 0)

        def count(where: str) -> int:
            rows = list(store.query(f"SELECT (COUNT(*) AS ?n) WHERE {{ {where} }}"))
            return int(rows[0]["n"].value)

        return StoreStats(
            entities=count(f"?e <{T.KGMM_ENTITY_RECORD}> ?r"),
            relations=count(f"?e <{T.KGMM_RELATION_RECORD}> ?r"),
            triples=count(f"?s ?p ?o FILTER(STRSTARTS(STR(?p), \"{T.RELATION_NS}\"))"),
        )

    def export(self) -> GraphData:
        """Everything the store holds, read back as a :class:`GraphData`."""
        store = self._oxigraph()
        generation = self._read_current()
        if store is None:
            return GraphData([], [], [], source=str(self.root))
        if self._export_cache and self._export_cache[0] == generation:
            return self._export_cache[1]
        entities: list[Entity] = []
        iri_to_id: dict[str, str] = {}
        for row in store.query(f"SELECT ?s ?r WHERE {{ ?s <{T.KGMM_ENTITY_RECORD}> ?r }}"):
            entity = entity_from_record(json.loads(row[1].value))
            entities.append(entity)
            iri_to_id[row[0].value] = entity.id
        relations = [
            relation_from_record(json.loads(row[0].value))
            for row in store.query(f"SELECT ?r WHERE {{ ?s <{T.KGMM_RELATION_RECORD}> ?r }}")
        ]
        triples: list[Triple] = []
        for relation in relations:
            rel_id = relation.id
            query = f"SELECT ?s ?o WHERE {{ ?s <{T.relation_iri(rel_id)}> ?o }}"
            triples.extend(Triple(iri_to_id[row[0].value], rel_id, iri_to_id[row[1].value])
                           for row in store.query(query))
        data = GraphData(entities, relations, triples, source=str(self.root))
        self._export_cache = (generation or "", data)
        return data

    def rdflib_graph(self) -> Any:
        """The live generation as a read-only ``rdflib.Graph`` (SPARQL through rdflib)."""
        from oxrdflib import OxigraphStore
        from rdflib import Graph
        from rdflib.graph import DATASET_DEFAULT_GRAPH_ID

        store = self._oxigraph()
        if store is None:
            raise StoreError(f"the store {self.root} is empty; import something first")
        return Graph(store=OxigraphStore(store=store), identifier=DATASET_DEFAULT_GRAPH_ID)

    def inspect(self, query: str, params: Mapping[str, Any] | None = None, *,
                limit: int = 1000, timeout_s: float = 10.0) -> InspectionResult:
        """Run a read-only Cypher query over a networkx view of the store (grand-cypher)."""
        from ..cypher import run_embedded_cypher

        return run_embedded_cypher(self.networkx_view(), query, params or {}, limit=limit,
                                   timeout_s=timeout_s)

    def networkx_view(self) -> Any:
        """A networkx copy of the graph; changing it cannot change the store."""
        from ..cypher import networkx_view

        generation = self._read_current() or ""
        cached = getattr(self, "_nx_cache", None)
        if cached is not None and cached[0] == generation:
            return cached[1]
        view = networkx_view(self.export())
        self._nx_cache = (generation, view)
        return view

    def close(self) -> None:
        """Release the open database handle (the store stays on disk)."""
        self._ox = None
        self._generation = None

    def __enter__(self) -> EmbeddedStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _drop_changed_records(store: Any, data: GraphData) -> int:
    """Remove the descriptive statements of entities/relations whose content changes."""
    import pyoxigraph as ox

    record_pred = ox.NamedNode(T.KGMM_ENTITY_RECORD)
    changed: list[str] = []
    for entity in data.entities:
        iri = T.entity_iri(entity.id)
        old = next(iter(store.quads_for_pattern(ox.NamedNode(iri), record_pred, None)), None)
        if old is not None and old.object.value != entity_to_json(entity):
            changed.append(iri)
    relation_pred = ox.NamedNode(T.KGMM_RELATION_RECORD)
    for relation in data.relations:
        iri = T.relation_iri(relation.id)
        old = next(iter(store.quads_for_pattern(ox.NamedNode(iri), relation_pred, None)), None)
        if old is not None and old.object.value != _relation_json(relation):
            changed.append(iri)
    for iri in changed:
        for quad in list(store.quads_for_pattern(ox.NamedNode(iri), None, None)):
            if not quad.predicate.value.startswith(T.RELATION_NS):
                store.remove(quad)
    return len(changed)


def _relation_json(relation: Relation) -> str:
    return json.dumps(relation_to_record(relation), ensure_ascii=False, sort_keys=True,
                      separators=(",", ":"))


def _to_ntriples(data: GraphData) -> bytes:
    """Serialise a validated bundle as N-Triples in kgmm's vocabulary (see :mod:`.rdf_terms`)."""
    lit = T.nt_literal
    rdf_type = T.nt_iri(T.RDF_TYPE)
    label = T.nt_iri(T.RDFS_LABEL)
    alt = T.nt_iri(T.SKOS_ALT_LABEL)
    kinv = T.nt_iri(T.KGMM_INVERSE)
    erec = T.nt_iri(T.KGMM_ENTITY_RECORD)
    rrec = T.nt_iri(T.KGMM_RELATION_RECORD)
    entity_class = T.nt_iri(T.KGMM_ENTITY)
    relation_class = T.nt_iri(T.KGMM_RELATION)
    lines: list[str] = []
    add = lines.append
    entity_terms: dict[str, str] = {}
    for entity in data.entities:
        s = entity_terms[entity.id] = T.nt_iri(T.entity_iri(entity.id))
        add(f"{s} {rdf_type} {entity_class} .\n{s} {label} {lit(entity.label)} .")
        for alias in entity.aliases:
            add(f"{s} {alt} {lit(alias)} .")
        add(f"{s} {erec} {lit(entity_to_json(entity))} .")
    for relation in data.relations:
        s = T.nt_iri(T.relation_iri(relation.id))
        add(f"{s} {rdf_type} {relation_class} .\n{s} {label} {lit(relation.label)} .")
        if relation.inverse:
            add(f"{s} {kinv} {T.nt_iri(T.relation_iri(relation.inverse))} .")
        add(f"{s} {rrec} {lit(_relation_json(relation))} .")
    relation_terms = {r.id: T.nt_iri(T.relation_iri(r.id)) for r in data.relations}
    for triple in data.triples:
        add(f"{entity_terms[triple.subject]} {relation_terms[triple.relation]} "
            f"{entity_terms[triple.object]} .")
    lines.append("")
    return "\n".join(lines).encode("utf-8")
