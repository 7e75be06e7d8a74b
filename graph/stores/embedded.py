"""The embedded default store: rdflib's API over an on-disk Oxigraph database.

Layout under ``<KGMM_HOME>/stores/<name>/``::

    CURRENT                 the name of the live generation (replaced atomically)
    gen-<uuid>/oxigraph/    the RDF database (rdflib via oxrdflib, SPARQL, export)
    gen-<uuid>/snapshot/    the CompiledKG of exactly that content
    gen-<uuid>/questions.jsonl  inspection records (one QuestionRecord a line), if any
    .lock                   held while an import or a records write runs

An import never touches the live generation: it copies the database aside (Oxigraph's
``backup``, hard links where possible), loads the new statements into the copy, compiles the
merged graph next to it, and only then swaps ``CURRENT``. A failed or interrupted import leaves
the store exactly as it was. Keeping the snapshot in the generation makes ``compile`` and
``stats`` instant; :meth:`EmbeddedStore.export` still reads the RDF database itself, and
:meth:`EmbeddedStore.check` proves the two agree.

Inspection records (:mod:`kgmm.graph.inspection`) live next to the snapshot, not in it, so
they never change the KG's content hash: a write replaces ``questions.jsonl`` atomically
(written aside, then renamed), and an import carries the file into the new generation.
Cypher inspection sees them as ``:Question`` nodes linked to the ``:Entity`` nodes.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._gc import gc_paused
from ..errors import InputError, SnapshotError, StoreError
from ..home import kgmm_home
from ..inspection import (
    QuestionRecord,
    add_records_to_view,
    check_entities_known,
    check_no_reserved_relations,
    validate_records,
)
from ..model import Entity, GraphData, Relation, Triple
from . import rdf_terms as T
from .base import ImportReport, InspectionResult, ProgressCallback, StoreStats
from .records import (
    CANONICAL_JSON,
    entity_from_record,
    entity_to_json,
    relation_from_record,
    relation_to_record,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ..compiled import CompiledKG

DEFAULT_STORE_NAME = "default"
RECORDS_FILE = "questions.jsonl"


class EmbeddedStore:
    """A persistent RDF store (rdflib API, Oxigraph engine) holding one knowledge graph."""

    backend = "rdflib"

    def __init__(self, path: str | os.PathLike[str] | None = None, *,
                 data_dir: str | os.PathLike[str] | None = None,
                 name: str = DEFAULT_STORE_NAME) -> None:
        self.root = Path(path) if path is not None else kgmm_home(data_dir) / "stores" / name
        self._ox: Any = None
        self._ox_generation: str | None = None
        self._cache: dict[str, tuple[str, Any]] = {}

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

    def _cached(self, key: str, build: Any, version: str = "") -> Any:
        """Per-generation memo of derived views (snapshot, export, networkx view);
        ``version`` further keys it (the records file's stamp)."""
        generation = (self._read_current() or "") + version
        hit = self._cache.get(key)
        if hit is not None and hit[0] == generation:
            return hit[1]
        value = build()
        self._cache[key] = (generation, value)
        return value

    def _oxigraph(self) -> Any:
        """The live RDF database, opened read-only (None when the store is empty)."""
        import pyoxigraph as ox

        generation = self._read_current()
        if generation is None:
            return None
        if self._ox is None or self._ox_generation != generation:
            self._ox = ox.Store.read_only(str(self.root / generation / "oxigraph"))
            self._ox_generation = generation
        return self._ox

    def compiled(self) -> CompiledKG | None:
        """The live generation's CompiledKG (memory-mapped), or None when empty."""
        from ..compiled import CompiledKG

        generation = self._read_current()
        if generation is None:
            return None
        return self._cached("snapshot",
                            lambda: CompiledKG.load(self.root / generation / "snapshot"))

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
        data = data.validate().deduplicated()
        with self._import_lock():
            live = self._read_current()
            self._remove_stale_generations(keep=live)
            previous = self.compiled()
            new_generation = f"gen-{uuid.uuid4().hex}"
            target = self.root / new_generation
            try:
                target.mkdir()
                if previous is None:
                    # a fresh store: Oxigraph loads (in Rust, GIL released) while we compile
                    changed: list[str] = []
                    payload = _serialise(data, progress)
                    loader = _Background(lambda: self._load_aside(
                        payload, None, [], target / "oxigraph", progress))
                    try:
                        snapshot = _compile(data, progress)
                    finally:
                        loader.join()
                else:
                    with gc_paused():
                        merged, changed = _merge(previous, data)
                    snapshot = _compile(merged, progress)
                    if snapshot.content_hash == previous.content_hash:
                        shutil.rmtree(target, ignore_errors=True)
                        return ImportReport(data.source, 0, 0, 0, 0,
                                            time.perf_counter() - started)
                    self._load_aside(_serialise(data, progress), live, changed,
                                     target / "oxigraph", progress)
                snapshot.save(target / "snapshot")
                self._carry_records(live, target)
                self.close()
                self._write_current(new_generation)
            except BaseException as exc:
                self.close()
                shutil.rmtree(target, ignore_errors=True)
                if isinstance(exc, StoreError | InputError | KeyboardInterrupt):
                    raise
                raise StoreError(f"import into {self.root} failed, store unchanged: {exc}") from exc
            self._remove_stale_generations(keep=new_generation)
        n_changed_entities = sum(1 for iri in changed if iri.startswith(T.ENTITY_NS))
        return ImportReport(
            source=data.source,
            entities_added=snapshot.num_nodes - (previous.num_nodes if previous else 0),
            entities_updated=n_changed_entities,
            relations_added=snapshot.num_relations - (previous.num_relations if previous else 0),
            triples_added=snapshot.num_edges - (previous.num_edges if previous else 0),
            seconds=time.perf_counter() - started,
        )

    def _load_aside(self, payload: bytes, live: str | None, changed: list[str], target: Path,
                    progress: ProgressCallback | None) -> None:
        """Copy the live database to ``target``, drop ``changed`` records, load ``payload``."""
        import pyoxigraph as ox

        if live is not None:
            self.close()
            source = ox.Store(str(self.root / live / "oxigraph"))
            source.backup(str(target))
            del source
        store = ox.Store(str(target))
        try:
            _drop_statements(store, changed)
            _step(progress, "load", 0)
            store.bulk_load(payload, format=ox.RdfFormat.N_TRIPLES)
            store.flush()
            _step(progress, "load", 1)
        finally:
            del store

    def _carry_records(self, live: str | None, target: Path) -> None:
        """Give the new generation the live one's inspection records (a hard link: the file
        is only ever replaced, never changed in place)."""
        if live is None:
            return
        source = self.root / live / RECORDS_FILE
        if source.exists():
            try:
                os.link(source, target / RECORDS_FILE)
            except OSError:
                shutil.copy2(source, target / RECORDS_FILE)

    # -- inspection records ------------------------------------------------------------
    def _records_path(self, generation: str | None = None) -> Path | None:
        generation = generation or self._read_current()
        return self.root / generation / RECORDS_FILE if generation else None

    def _records_stamp(self) -> str:
        path = self._records_path()
        try:
            st = os.stat(path) if path is not None else None
        except FileNotFoundError:
            st = None
        return f"|{st.st_ino}:{st.st_mtime_ns}:{st.st_size}" if st else ""

    def question_records(self, run: str | None = None) -> list[QuestionRecord]:
        """The inspection records the store holds (those of ``run`` only, if given)."""
        path = self._records_path()
        records = _read_records(path) if path is not None else []
        return [r for r in records if run is None or r.run == run]

    def write_question_records(self, records: Sequence[QuestionRecord]) -> int:
        """Upsert inspection records by question id; all or nothing.

        Every record is validated and every entity it names must be in the KG
        (:class:`InputError` naming the record otherwise) before anything is written. A
        question written again has its node and edges replaced. Returns the number written.
        """
        checked = validate_records(records)
        if not checked:
            return 0
        with self._import_lock():
            kg = self.compiled()
            if kg is None:
                raise StoreError(f"the store {self.root} is empty; import a knowledge graph "
                                 "before writing question records")
            check_no_reserved_relations(kg.relation_ids, str(self.root))
            check_entities_known(checked, lambda ids: {i for i in ids if i in kg})
            path = self._records_path()
            assert path is not None
            merged = {r.question_id: r for r in _read_records(path)}
            merged.update((r.question_id, r) for r in checked)
            try:
                _write_records(path, list(merged.values()))
            except OSError as exc:
                raise StoreError(f"writing question records into {self.root} failed, store "
                                 f"unchanged: {exc}") from exc
        return len(checked)

    def delete_question_records(self, run: str | None = None) -> int:
        """Delete the records of ``run`` (all records when None); returns how many."""
        with self._import_lock():
            path = self._records_path()
            if path is None or not path.exists():
                return 0
            records = _read_records(path)
            keep = [r for r in records if run is not None and r.run != run]
            if len(keep) == len(records):
                return 0
            if keep:
                _write_records(path, keep)
            else:
                path.unlink()
        return len(records) - len(keep)

    # -- reading -----------------------------------------------------------------------
    def stats(self) -> StoreStats:
        """Counts of entities, relations and relation triples."""
        kg = self.compiled()
        if kg is None:
            return StoreStats(0, 0, 0)
        return StoreStats(kg.num_nodes, kg.num_relations, kg.num_edges)

    def rdf_stats(self) -> StoreStats:
        """The same counts, computed by SPARQL over the RDF database."""
        store = self._oxigraph()
        if store is None:
            return StoreStats(0, 0, 0)

        def count(where: str) -> int:
            rows = list(store.query(f"SELECT (COUNT(*) AS ?n) WHERE {{ {where} }}"))
            return int(rows[0]["n"].value)

        relations = [json.loads(row[0].value)["id"] for row in store.query(
            f"SELECT ?r WHERE {{ ?s <{T.KGMM_RELATION_RECORD}> ?r }}")]
        return StoreStats(
            entities=count(f"?e <{T.KGMM_ENTITY_RECORD}> ?r"),
            relations=len(relations),
            triples=sum(count(f"?s <{T.relation_iri(r)}> ?o") for r in relations),
        )

    def check(self) -> None:
        """Raise :class:`SnapshotError` unless the RDF database and the snapshot agree."""
        from ..compiled import CompiledKG

        kg = self.compiled()
        if kg is None:
            return
        rebuilt = CompiledKG.build(self.export())
        if rebuilt.content_hash != kg.content_hash:
            raise SnapshotError(f"{self.root}: the RDF database and its snapshot differ "
                                f"({rebuilt.content_hash[:12]} vs {kg.content_hash[:12]})")

    def export(self) -> GraphData:
        """Everything the RDF database holds, read back as a :class:`GraphData`."""
        def read() -> GraphData:
            with gc_paused():
                return self._read_rdf()

        return self._cached("export", read)

    def _read_rdf(self) -> GraphData:
        store = self._oxigraph()
        if store is None:
            return GraphData([], [], [], source=str(self.root))
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
        return GraphData(entities, relations, triples, source=str(self.root))

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
        """Run a read-only Cypher query over a networkx view of the store (grand-cypher):
        the KG's entities, relations and triples, plus the inspection records."""
        from ..cypher import run_embedded_cypher

        return run_embedded_cypher(self.networkx_view(), query, params or {}, limit=limit,
                                   timeout_s=timeout_s)

    def networkx_view(self) -> Any:
        """A networkx copy of the graph and the inspection records; changing it cannot change
        the store."""
        from ..cypher import networkx_view, networkx_view_of_snapshot

        def build() -> Any:
            kg = self.compiled()
            view = networkx_view_of_snapshot(kg) if kg else networkx_view(GraphData([], [], []))
            return add_records_to_view(view, self.question_records())

        return self._cached("networkx", build, version=self._records_stamp())

    def close(self) -> None:
        """Release the open database handle and cached views (the store stays on disk)."""
        self._ox = None
        self._ox_generation = None
        self._cache.clear()

    def __enter__(self) -> EmbeddedStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Background:
    """Run ``fn`` in a thread; ``join()`` waits and re-raises its exception here."""

    def __init__(self, fn: Any) -> None:
        self._error: BaseException | None = None

        def run() -> None:
            try:
                fn()
            except BaseException as exc:
                self._error = exc

        self._thread = threading.Thread(target=run, name="kgmm-oxigraph-load", daemon=True)
        self._thread.start()

    def join(self) -> None:
        self._thread.join()
        if self._error is not None:
            raise self._error


def _read_records(path: Path) -> list[QuestionRecord]:
    """The records file (JSON lines); a missing file holds no records."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    records = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(QuestionRecord.from_dict(json.loads(line)))
        except (ValueError, TypeError) as exc:
            raise StoreError(f"{path}:{line_no}: corrupt inspection record ({exc}); delete "
                             "the file to drop the records") from None
    return records


def _write_records(path: Path, records: list[QuestionRecord]) -> None:
    """Replace the records file atomically (written aside, fsynced, renamed)."""
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            for record in records:
                fh.write(CANONICAL_JSON.encode(record.to_dict()) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _serialise(data: GraphData, progress: ProgressCallback | None) -> bytes:
    _step(progress, "serialise", 0)
    payload = _to_ntriples(data)
    _step(progress, "serialise", 1)
    return payload


def _compile(data: GraphData, progress: ProgressCallback | None) -> CompiledKG:
    from ..compiled import CompiledKG

    _step(progress, "compile", 0)
    snapshot = CompiledKG.build(data)
    _step(progress, "compile", 1)
    return snapshot


def _step(progress: ProgressCallback | None, step: str, done: int) -> None:
    if progress is not None:
        progress(step, done, 1)


def _merge(previous: CompiledKG | None, data: GraphData) -> tuple[GraphData, list[str]]:
    """Upsert ``data`` into the previous content.

    Returns the merged bundle and the IRIs of entities and relations whose content changes.
    """
    if previous is None:
        return data, []
    old = previous.to_graph_data()
    entities = {e.id: e for e in old.entities}
    relations = {r.id: r for r in old.relations}
    changed = [T.entity_iri(e.id) for e in data.entities
               if e.id in entities and entities[e.id] != e]
    changed += [T.relation_iri(r.id) for r in data.relations
                if r.id in relations and relations[r.id] != r]
    entities.update((e.id, e) for e in data.entities)
    relations.update((r.id, r) for r in data.relations)
    triples = list(dict.fromkeys([*old.triples, *data.triples]))
    return GraphData(list(entities.values()), list(relations.values()), triples,
                     source=data.source), changed


def _drop_statements(store: Any, iris: list[str]) -> None:
    """Remove the descriptive (non-relation) statements about ``iris`` before they are replaced."""
    import pyoxigraph as ox

    for iri in iris:
        for quad in list(store.quads_for_pattern(ox.NamedNode(iri), None, None)):
            if not quad.predicate.value.startswith(T.RELATION_NS):
                store.remove(quad)


def _relation_json(relation: Relation) -> str:
    return CANONICAL_JSON.encode(relation_to_record(relation))


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
