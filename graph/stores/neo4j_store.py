"""The Neo4j store: the official ``neo4j`` driver, batched ``UNWIND … MERGE`` imports.

Graph shape: ``(:Entity {id, label, aliases, description, types, …properties})`` with a
uniqueness constraint on ``id`` and an index on ``label``; ``(:Relation {id, label, inverse})``
describes each relation; a triple is a relationship whose type is the relation id
(``(:Entity)-[:hypernym]->(:Entity)``).

Import protocol (clean-up on failure): the input is validated completely before the first
write. Entities, relations and triples are then written in transactional batches of
``batch_size`` rows, each idempotent (a node is created only if its id is not there yet; an edge
is ``MERGE``d, or ``CREATE``d when the same run created both ends, so it cannot exist yet) and
retried on transient errors by the
driver's managed transactions. Everything a run creates carries ``_kgmm_import = <run id>``
(kept as provenance). Entities that already existed with other content are updated last, in
one transaction. If any step fails, the run deletes what it created, so the store is as it
was; if even that clean-up cannot reach the server, the error says so and re-running the same
import completes it (it is idempotent).

Inspection records (:mod:`kgmm.graph.inspection`) are ``(:Question {id, …})`` nodes with
``MENTIONS``/``SHOWS``/``LINKED``/``ANSWERED``/``EVIDENCE`` relationships to ``:Entity`` nodes;
a write is one transaction (old nodes of the same question ids deleted, new ones created), so
it is all or nothing. Export, stats and compiled snapshots read only ``:Entity``/``:Relation``.
"""

from __future__ import annotations

import os
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from ..errors import (
    InputError,
    QueryError,
    ReadOnlyViolationError,
    StoreAuthError,
    StoreError,
    StoreUnavailableError,
)
from ..inspection import (
    RECORD_EDGE_TYPES,
    QuestionRecord,
    check_entities_known,
    check_no_reserved_relations,
    question_properties,
    record_edges,
    validate_records,
)
from ..model import RELATION_ID_PATTERN, GraphData, Triple
from .base import ImportReport, InspectionResult, ProgressCallback, StoreStats
from .records import (
    INTERNAL_PREFIX,
    entity_from_record,
    entity_to_record,
    relation_from_record,
    relation_to_record,
)

DEFAULT_URI = "bolt://localhost:7687"
DEFAULT_USER = "neo4j"
RUN_KEY = "_kgmm_import"
#: Extra words refused by inspection on Neo4j: they run or describe other queries.
_META_KEYWORDS = ("EXPLAIN", "PROFILE")

_SCHEMA = (
    "CREATE CONSTRAINT kgmm_entity_id IF NOT EXISTS FOR (e:Entity) REQUIRE e.id IS UNIQUE",
    "CREATE CONSTRAINT kgmm_relation_id IF NOT EXISTS FOR (r:Relation) REQUIRE r.id IS UNIQUE",
    "CREATE INDEX kgmm_entity_label IF NOT EXISTS FOR (e:Entity) ON (e.label)",
)
_EXISTING_NODES = """
UNWIND $ids AS id
MATCH (e:{label} {{id: id}})
RETURN id, properties(e) AS props
"""
# Only ids that did not exist a moment ago; the uniqueness constraint still guards a race.
_CREATE_NODES = """
UNWIND $rows AS row
CREATE (e:{label})
SET e = row, e.{run} = $run
"""
_MERGE_EDGES = """
UNWIND $rows AS row
MATCH (s:Entity {{id: row[0]}})
MATCH (o:Entity {{id: row[1]}})
MERGE (s)-[r:`{rel}`]->(o)
ON CREATE SET r.{run} = $run
"""
# Both ends were created by this run, so the edge cannot exist yet: CREATE skips MERGE's check.
_CREATE_EDGES = """
UNWIND $rows AS row
MATCH (s:Entity {{id: row[0]}})
MATCH (o:Entity {{id: row[1]}})
CREATE (s)-[:`{rel}` {{{run}: $run}}]->(o)
"""


_RECORD_SCHEMA = (
    "CREATE CONSTRAINT kgmm_question_id IF NOT EXISTS FOR (q:Question) REQUIRE q.id IS UNIQUE",
    "CREATE INDEX kgmm_question_run IF NOT EXISTS FOR (q:Question) ON (q.run)",
)
_DELETE_QUESTIONS = "UNWIND $ids AS id MATCH (q:Question {id: id}) DETACH DELETE q"
_CREATE_QUESTIONS = "UNWIND $rows AS row CREATE (q:Question) SET q = row"
# {type} is one of RECORD_EDGE_TYPES (constants), never user text.
_CREATE_RECORD_EDGES = """
UNWIND $rows AS row
MATCH (q:Question {{id: row.q}})
MATCH (e:Entity {{id: row.e}})
CREATE (q)-[r:{type}]->(e)
SET r = row.p
"""


def _connection_settings(uri: str | None, user: str | None,
                         password: str | None) -> tuple[str, str, str]:
    return (
        uri or os.environ.get("KGMM_NEO4J_URI") or DEFAULT_URI,
        user or os.environ.get("KGMM_NEO4J_USER") or DEFAULT_USER,
        password if password is not None else os.environ.get("KGMM_NEO4J_PASSWORD", ""),
    )


class Neo4jStore:
    """A knowledge graph in a Neo4j 5 database (see module docstring)."""

    backend = "neo4j"

    def __init__(self, uri: str | None = None, user: str | None = None,
                 password: str | None = None, *, database: str = "neo4j",
                 batch_size: int = 10_000, connection_timeout_s: float = 5.0,
                 max_retry_time_s: float = 15.0) -> None:
        import neo4j

        self.uri, self.user, password = _connection_settings(uri, user, password)
        self.database = database
        self.batch_size = batch_size
        with self._errors():
            self._driver = neo4j.GraphDatabase.driver(
                self.uri, auth=(self.user, password), connection_timeout=connection_timeout_s,
                max_transaction_retry_time=max_retry_time_s)
            self._driver.verify_connectivity()

    # -- errors ------------------------------------------------------------------------
    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Translate driver errors into kgmm's typed store errors."""
        from neo4j import exceptions as ex

        try:
            yield
        except ex.AuthError as exc:
            raise StoreAuthError(f"Neo4j at {self.uri} refused user {self.user!r} "
                                 f"(wrong password?): {exc.message}") from None
        except (ex.ServiceUnavailable, ex.SessionExpired, OSError) as exc:
            raise StoreUnavailableError(f"cannot reach Neo4j at {self.uri}: {exc}") from None
        except ex.ConfigurationError as exc:
            raise StoreError(f"bad Neo4j settings for {self.uri}: {exc}") from None

    def _session(self, read: bool = False) -> Any:
        import neo4j

        mode = neo4j.READ_ACCESS if read else neo4j.WRITE_ACCESS
        return self._driver.session(database=self.database, default_access_mode=mode)

    # -- import ------------------------------------------------------------------------
    def ensure_schema(self) -> None:
        """Create the uniqueness constraints and the label index if missing."""
        with self._errors(), self._session() as session:
            for statement in _SCHEMA:
                session.run(statement).consume()

    def import_data(self, data: GraphData, *,
                    progress: ProgressCallback | None = None) -> ImportReport:
        """Upsert a validated bundle (see the module docstring for the failure protocol)."""
        started = time.perf_counter()
        data = data.validate().deduplicated()
        run = uuid.uuid4().hex
        self.ensure_schema()
        try:
            with self._errors():
                entity_rows = [entity_to_record(e) for e in data.entities]
                relation_rows = [relation_to_record(r) for r in data.relations]
                updates_e, existed = self._merge_nodes("Entity", entity_rows, run, progress,
                                                       "entities")
                updates_r, _ = self._merge_nodes("Relation", relation_rows, run, progress,
                                                 "relations")
                triples_added = self._merge_edges(data.triples, run, progress, existed)
                self._apply_updates(updates_e, updates_r)
        except BaseException as exc:
            self._clean_up(run, exc)
            raise
        created_e, created_r = self._count_created(run)
        return ImportReport(source=data.source, entities_added=created_e,
                            entities_updated=len(updates_e), relations_added=created_r,
                            triples_added=triples_added, seconds=time.perf_counter() - started)

    def _batches(self, rows: list[Any]) -> Iterator[list[Any]]:
        for start in range(0, len(rows), self.batch_size):
            yield rows[start:start + self.batch_size]

    def _merge_nodes(self, label: str, rows: list[dict[str, Any]], run: str,
                     progress: ProgressCallback | None,
                     step: str) -> tuple[list[dict[str, Any]], set[str]]:
        """Create the nodes that do not exist yet; return the rows of pre-existing nodes whose
        content differs (updated later), and the ids of all nodes that existed before."""
        find = _EXISTING_NODES.format(label=label)
        create = _CREATE_NODES.format(label=label, run=RUN_KEY)
        changed: list[dict[str, Any]] = []
        existed: set[str] = set()
        done = 0
        with self._session() as session:
            for batch in self._batches(rows):
                by_id = {row["id"]: row for row in batch}
                found = session.execute_read(
                    lambda tx, ids=list(by_id): [(r["id"], r["props"])
                                                 for r in tx.run(find, ids=ids)])
                for node_id, props in found:
                    existed.add(node_id)
                    current = {k: v for k, v in props.items() if not k.startswith(INTERNAL_PREFIX)}
                    if current != by_id[node_id]:
                        changed.append(by_id[node_id])
                fresh = [row for node_id, row in by_id.items() if node_id not in existed]
                if fresh:
                    session.execute_write(
                        lambda tx, b=fresh: tx.run(create, rows=b, run=run).consume())
                done += len(batch)
                if progress:
                    progress(step, done, len(rows))
        return changed, existed

    def _merge_edges(self, triples: list[Triple], run: str, progress: ProgressCallback | None,
                     existed: set[str]) -> int:
        """Write triples: CREATE between two nodes this run made, MERGE otherwise."""
        groups: dict[tuple[str, bool], list[list[str]]] = defaultdict(list)
        for triple in triples:
            fresh = triple.subject not in existed and triple.object not in existed
            groups[(triple.relation, fresh)].append([triple.subject, triple.object])
        created = 0
        done = 0
        with self._session() as session:
            for (relation, fresh), rows in sorted(groups.items()):
                if not RELATION_ID_PATTERN.match(relation):  # validated already; belt and braces
                    raise InputError(f"invalid relation id {relation!r}", field="relation")
                template = _CREATE_EDGES if fresh else _MERGE_EDGES
                query = template.format(rel=relation, run=RUN_KEY)
                for batch in self._batches(rows):
                    counters = session.execute_write(
                        lambda tx, b=batch, q=query: tx.run(q, rows=b, run=run).consume().counters)
                    created += counters.relationships_created
                    done += len(batch)
                    if progress:
                        progress("triples", done, len(triples))
        return created

    def _apply_updates(self, entities: list[dict[str, Any]],
                       relations: list[dict[str, Any]]) -> None:
        """Replace the content of changed pre-existing nodes, all in one transaction."""
        if not entities and not relations:
            return

        def work(tx: Any) -> None:
            for label, rows in (("Entity", entities), ("Relation", relations)):
                if rows:
                    tx.run(f"UNWIND $rows AS row MATCH (e:{label} {{id: row.id}}) "
                           f"SET e = row", rows=rows).consume()

        with self._session() as session:
            session.execute_write(work)

    def _clean_up(self, run: str, cause: BaseException) -> None:
        """Delete everything run ``run`` created; report if even that fails."""
        try:
            with self._session() as session:
                for statement in (
                    f"MATCH ()-[r]->() WHERE r.{RUN_KEY} = $run "
                    "CALL (r) { DELETE r } IN TRANSACTIONS OF 10000 ROWS",
                    f"MATCH (n) WHERE n.{RUN_KEY} = $run "
                    "CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 10000 ROWS",
                ):
                    session.run(statement, run=run).consume()
        except Exception as exc:
            raise StoreError(
                f"import into {self.uri} failed ({cause}) and the clean-up failed too ({exc}); "
                f"run the same import again to complete it (imports are idempotent)") from cause

    def _count_created(self, run: str) -> tuple[int, int]:
        with self._errors(), self._session(read=True) as session:
            record = session.run(
                f"CALL () {{ MATCH (e:Entity) WHERE e.{RUN_KEY} = $run RETURN count(e) AS ne }} "
                f"CALL () {{ MATCH (r:Relation) WHERE r.{RUN_KEY} = $run RETURN count(r) AS nr }} "
                "RETURN ne, nr", run=run).single()
        return int(record["ne"]), int(record["nr"])

    # -- reading -----------------------------------------------------------------------
    def _relation_ids(self, session: Any) -> list[str]:
        return [r["id"] for r in session.run("MATCH (r:Relation) RETURN r.id AS id ORDER BY id")]

    def stats(self) -> StoreStats:
        """Counts of entities, relations and relation triples (from Neo4j's count store)."""
        with self._errors(), self._session(read=True) as session:
            entities = session.run("MATCH (e:Entity) RETURN count(e) AS n").single()["n"]
            relations = self._relation_ids(session)
            triples = 0
            for relation in relations:
                if RELATION_ID_PATTERN.match(relation):
                    triples += session.run(
                        f"MATCH ()-[r:`{relation}`]->() RETURN count(r) AS n").single()["n"]
        return StoreStats(int(entities), len(relations), int(triples))

    def export(self) -> GraphData:
        """Everything the store holds as a :class:`GraphData`."""
        with self._errors(), self._session(read=True) as session:
            entities = [entity_from_record(r["p"]) for r in
                        session.run("MATCH (e:Entity) RETURN properties(e) AS p")]
            relations = [relation_from_record(r["p"]) for r in
                         session.run("MATCH (r:Relation) RETURN properties(r) AS p")]
            result = session.run(
                "MATCH (s:Entity)-[r]->(o:Entity) WHERE type(r) IN $rels "
                "RETURN s.id AS s, type(r) AS t, o.id AS o",
                rels=[r.id for r in relations])
            triples = [Triple(s, t, o) for s, t, o in result.values()]
        return GraphData(entities, relations, triples, source=self.uri)

    def inspect(self, query: str, params: Mapping[str, Any] | None = None, *,
                limit: int = 1000, timeout_s: float = 10.0) -> InspectionResult:
        """Run a read-only Cypher query: refused unless ``EXPLAIN`` says it only reads."""
        import neo4j
        from neo4j import exceptions as ex

        from ..cypher import normalize_value, refuse_writes

        refuse_writes(query)
        meta = [w for w in _tokens_upper(query) if w in _META_KEYWORDS]
        if meta:
            raise ReadOnlyViolationError(f"inspection does not take {meta[0]} (it is added "
                                         "by kgmm where needed)")
        params = dict(params or {})
        with self._errors(), self._session(read=True) as session:
            try:
                summary = session.run("EXPLAIN " + query, params).consume()
            except ex.CypherSyntaxError as exc:
                raise QueryError(f"Cypher syntax error: {exc.message}") from None
            except ex.ClientError as exc:
                raise QueryError(f"query refused by Neo4j: {exc.message}") from None
            if summary.query_type != "r":
                raise ReadOnlyViolationError(
                    f"inspection is read-only; Neo4j classifies this query as "
                    f"{summary.query_type!r}, not read-only ('r')")

            @neo4j.unit_of_work(timeout=timeout_s)
            def work(tx: Any) -> tuple[list[str], list[Any]]:
                result = tx.run(query, params)
                keys = list(result.keys())
                return keys, result.fetch(limit + 1)

            try:
                keys, records = session.execute_read(work)
            except ex.ClientError as exc:
                if "Timeout" in (exc.code or "") or "timed out" in (exc.message or ""):
                    raise QueryError(f"query timed out after {timeout_s:g} s") from None
                raise QueryError(f"query failed: {exc.message}") from None
        rows = [{k: normalize_value(_plain(record[k])) for k in keys} for record in records]
        return InspectionResult(columns=keys, rows=rows[:limit], truncated=len(rows) > limit,
                                backend="neo4j")

    # -- inspection records ------------------------------------------------------------
    def write_question_records(self, records: Sequence[QuestionRecord]) -> int:
        """Upsert inspection records by question id in one transaction (all or nothing).

        Every record is validated and every entity it names must be in the KG
        (:class:`InputError` naming the record otherwise); a question written again has its
        node and relationships replaced. Returns the number of records written.
        """
        checked = validate_records(records)
        if not checked:
            return 0
        with self._errors():
            with self._session() as session:
                for statement in _RECORD_SCHEMA:
                    session.run(statement).consume()
            edges: dict[str, list[dict[str, Any]]] = {t: [] for t in RECORD_EDGE_TYPES}
            for record in checked:
                for edge in record_edges(record):
                    edges[edge.type].append({"q": record.question_id, "e": edge.entity_id,
                                             "p": edge.properties})
            nodes = [question_properties(r) for r in checked]
            with self._session() as session:
                session.execute_write(self._write_records_tx, checked, nodes, edges)
        return len(checked)

    def _write_records_tx(self, tx: Any, records: list[QuestionRecord],
                          nodes: list[dict[str, Any]],
                          edges: dict[str, list[dict[str, Any]]]) -> None:
        """One transaction: check the entities, delete the old questions, write the new."""
        relations = [r["id"] for r in tx.run(
            "MATCH (r:Relation) WHERE r.id IN $ids RETURN r.id AS id",
            ids=list(RECORD_EDGE_TYPES))]
        check_no_reserved_relations(relations, self.uri)

        def known(ids: Any) -> set[str]:
            found: set[str] = set()
            for batch in self._batches(list(ids)):
                found.update(r["id"] for r in tx.run(
                    "UNWIND $ids AS id MATCH (e:Entity {id: id}) RETURN e.id AS id", ids=batch))
            return found

        check_entities_known(records, known)
        for batch in self._batches([r.question_id for r in records]):
            tx.run(_DELETE_QUESTIONS, ids=batch).consume()
        for batch in self._batches(nodes):
            tx.run(_CREATE_QUESTIONS, rows=batch).consume()
        for edge_type in RECORD_EDGE_TYPES:
            self._create_record_edges(tx, edge_type, edges[edge_type])

    def _create_record_edges(self, tx: Any, edge_type: str, rows: list[dict[str, Any]]) -> None:
        query = _CREATE_RECORD_EDGES.format(type=edge_type)
        created = 0
        for batch in self._batches(rows):
            created += tx.run(query, rows=batch).consume().counters.relationships_created
        if created != len(rows):  # an entity vanished since it was checked: roll back
            raise StoreError(f"writing {edge_type} records into {self.uri} found "
                             f"{len(rows) - created} entities missing; nothing was written")

    def delete_question_records(self, run: str | None = None) -> int:
        """Delete the records of ``run`` (all records when None); returns how many."""
        where = "WHERE q.run = $run " if run is not None else ""
        with self._errors(), self._session() as session:
            count = session.run(f"MATCH (q:Question) {where}RETURN count(q) AS n",
                                run=run).single()["n"]
            if count:
                session.run(f"MATCH (q:Question) {where}"
                            "CALL (q) { DETACH DELETE q } IN TRANSACTIONS OF 10000 ROWS",
                            run=run).consume()
        return int(count)

    def clear(self) -> None:
        """Delete every kgmm entity, relation node, triple and question record (for tests
        and re-imports)."""
        with self._errors(), self._session() as session:
            session.run("MATCH (n) WHERE n:Entity OR n:Relation OR n:Question "
                        "CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 10000 ROWS").consume()

    def close(self) -> None:
        self._driver.close()

    def __enter__(self) -> Neo4jStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _tokens_upper(query: str) -> list[str]:
    from ..cypher import _tokens

    return [text.upper() for kind, text in _tokens(query) if kind == "word"]


def _plain(value: Any) -> Any:
    """Driver graph objects as plain Python: nodes → properties, relationships → typed dicts."""
    from neo4j.graph import Node, Path, Relationship

    if isinstance(value, Node):
        return dict(value.items())
    if isinstance(value, Relationship):
        return {"__labels__": {value.type}, **dict(value.items())}
    if isinstance(value, Path):
        return [_plain(n) for n in value.nodes]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
