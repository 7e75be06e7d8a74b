"""Read-only Cypher inspection, the same on both backends.

The supported subset (documented in README "Inspection"): ``MATCH`` patterns with labels and
property maps, ``WHERE`` (comparisons, ``AND``/``OR``/``NOT``, ``IN``, ``STARTS WITH``,
``CONTAINS``), ``RETURN [DISTINCT]`` of variables, properties, ``type(r)`` and aggregates
(``COUNT``, ``COLLECT`` …), ``ORDER BY``, ``SKIP``, ``LIMIT``, and variable-length
relationships with a bound (``-[:hypernym*1..3]->``). User values enter only as ``$name``
parameters.

On Neo4j the query runs natively (after ``EXPLAIN`` proves it read-only). On the embedded store
it runs with grand-cypher over a networkx copy of the graph: grand-cypher's grammar has no
write clauses at all, and the copy could not change the store even if it had. grand-cypher
has no parameters, so :func:`bind_parameters` binds them: it tokenises the query (strings,
comments, backtick names) and puts each value in as one escaped literal token, never as text
the parser could read as syntax.
"""

from __future__ import annotations

import json
import math
import re
import signal
import threading
from collections.abc import Mapping
from typing import Any

from .errors import QueryError, ReadOnlyViolationError
from .model import GraphData
from .stores.base import InspectionResult
from .stores.records import INTERNAL_PREFIX, entity_to_record, relation_to_record

#: Clauses that change data or reach outside the graph; refused before any engine sees them.
WRITE_KEYWORDS = frozenset({
    "CREATE", "MERGE", "SET", "DELETE", "DETACH", "REMOVE", "DROP", "LOAD", "FOREACH",
    "CALL", "ALTER", "GRANT", "DENY", "REVOKE", "RENAME", "START", "STOP", "TERMINATE",
    "ENABLE", "USE",
})

_TOKEN = re.compile(
    r"""(?P<comment>//[^\n]*|/\*.*?\*/)
      |(?P<dstring>"(?:[^"\\]|\\.)*")
      |(?P<sstring>'(?:[^'\\]|\\.)*')
      |(?P<backtick>`[^`]*`)
      |(?P<param>\$[A-Za-z_][A-Za-z0-9_]*)
      |(?P<word>[A-Za-z_][A-Za-z0-9_]*)
      |(?P<other>\s+|.)""",
    re.VERBOSE | re.DOTALL,
)


def _tokens(query: str) -> list[tuple[str, str]]:
    return [(m.lastgroup or "other", m.group()) for m in _TOKEN.finditer(query)]


def write_keywords(query: str) -> list[str]:
    """Write clauses found in ``query`` outside strings, comments and backtick names."""
    found = []
    for kind, text in _tokens(query):
        if kind == "word" and text.upper() in WRITE_KEYWORDS:
            found.append(text.upper())
    return found


def literal(value: Any, name: str) -> str:
    """A parameter value as one Cypher literal token (strings JSON-escaped)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise QueryError(f"parameter ${name}: non-finite number {value!r}")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=True)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(literal(v, name) for v in value) + "]"
    raise QueryError(f"parameter ${name}: unsupported type {type(value).__name__}")


def bind_parameters(query: str, params: Mapping[str, Any]) -> str:
    """Return ``query`` with ``$name`` parameters bound and strings in double quotes.

    Raises :class:`QueryError` for a parameter that is used but not given.
    """
    out: list[str] = []
    for kind, text in _tokens(query):
        if kind == "param":
            name = text[1:]
            if name not in params:
                raise QueryError(f"query uses parameter ${name} but no value was given "
                                 f"(pass --param {name}=VALUE)")
            out.append(literal(params[name], name))
        elif kind == "sstring" or kind == "dstring":
            out.append(json.dumps(_unescape(text[1:-1]), ensure_ascii=True))
        elif kind == "comment":
            out.append(" ")
        else:
            out.append(text)
    return "".join(out)


def _unescape(body: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t", "r": "\r"}.get(m.group(1),
                                                                        m.group(1)), body)


def refuse_writes(query: str) -> None:
    """Raise :class:`ReadOnlyViolationError` if the query contains a write clause."""
    found = write_keywords(query)
    if found:
        raise ReadOnlyViolationError(
            f"inspection is read-only; the query contains {', '.join(dict.fromkeys(found))}")


# -- the embedded engine ---------------------------------------------------------------
def networkx_view(data: GraphData) -> Any:
    """A ``networkx.MultiDiGraph`` copy: ``:Entity`` and ``:Relation`` nodes, typed edges."""
    import networkx as nx

    graph = nx.MultiDiGraph()
    for entity in data.entities:
        graph.add_node(entity.id, __labels__={"Entity"}, **entity_to_record(entity))
    for relation in data.relations:
        graph.add_node(f"relation:{relation.id}", __labels__={"Relation"},
                       **relation_to_record(relation))
    graph.add_edges_from((t.subject, t.object, {"__labels__": {t.relation}})
                         for t in data.triples)
    return graph


def networkx_view_of_snapshot(kg: Any) -> Any:
    """The same view as :func:`networkx_view`, built straight from a CompiledKG's arrays.

    Node records are decoded from the snapshot's blobs in bulk and the adjacency dicts are
    filled directly (the layout ``MultiDiGraph.add_edge`` builds: ``succ[u][v][key] = data``,
    with ``pred[v][u]`` sharing the key dict) — several times faster than ``add_edges_from``
    on a WordNet-sized graph. Edges of one relation share one read-only data dict.
    """
    import networkx as nx

    from ._gc import gc_paused

    with gc_paused():
        return _fill_view(nx.MultiDiGraph(), kg)


def _fill_view(graph: Any, kg: Any) -> Any:
    ids = kg.ids_of(range(kg.num_nodes))
    graph.add_nodes_from(zip(ids, kg.node_records(cypher_labels=True), strict=True))
    for relation in kg.relations():
        graph.add_node(f"relation:{relation.id}", __labels__={"Relation"},
                       **relation_to_record(relation))
    succ, pred = graph._succ, graph._pred
    edge_data = [{"__labels__": {r}} for r in kg.relation_ids]
    src, dst, rel = kg.edge_arrays()
    for s, d, r in zip(src.tolist(), dst.tolist(), rel.tolist(), strict=True):
        u, v = ids[s], ids[d]
        keydict = succ[u].get(v)
        if keydict is None:
            keydict = succ[u][v] = pred[v][u] = {}
        keydict[len(keydict)] = edge_data[r]
    return graph


class _Timeout(Exception):
    pass


#: Top-level modules whose code a timeout may interrupt (see :func:`_run_with_timeout`).
_ENGINE_MODULES = frozenset({"grandcypher", "networkx", "lark"})


def _run_with_timeout(fn: Any, timeout_s: float) -> Any:
    """Run ``fn()``; stop it after ``timeout_s`` (SIGALRM in the main thread, else a waiter).

    The alarm re-fires every 50 ms after the deadline, and the handler raises only when it
    interrupts the query engine's own code (grand-cypher, networkx, lark): raised inside a gc
    callback, a finaliser or an exception hook, the exception would be swallowed there (or
    break the hook) instead of stopping the query; the next tick lands in the engine.
    """
    if threading.current_thread() is threading.main_thread():
        def on_alarm(signum: int, frame: Any) -> None:
            module = frame.f_globals.get("__name__", "") if frame is not None else ""
            if module.partition(".")[0] in _ENGINE_MODULES:
                raise _Timeout

        previous = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, timeout_s, 0.05)
        try:
            return fn()
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = fn()
        except BaseException as exc:
            result["error"] = exc

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        raise _Timeout
    if "error" in result:
        raise result["error"]
    return result["value"]


def run_embedded_cypher(view: Any, query: str, params: Mapping[str, Any], *, limit: int,
                        timeout_s: float) -> InspectionResult:
    """Run a read-only query over a networkx view with grand-cypher."""
    from grandcypher import GrandCypher
    from lark.exceptions import LarkError

    refuse_writes(query)
    bound = bind_parameters(query, params)
    try:
        raw = _run_with_timeout(lambda: GrandCypher(view, limit=limit + 1).run(bound), timeout_s)
    except _Timeout:
        raise QueryError(f"query timed out after {timeout_s:g} s") from None
    except LarkError as exc:
        raise QueryError(f"not in the supported Cypher subset: {_first_line(exc)}") from None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise QueryError(f"query failed: {exc}") from None
    columns = _ordered_columns([str(k) for k in raw], bound)
    keyed = {str(k): v for k, v in raw.items()}
    count = max((len(v) for v in keyed.values()), default=0)
    rows = [{c: normalize_value(keyed[c][i]) for c in columns} for i in range(count)]
    return InspectionResult(columns=columns, rows=rows[:limit], truncated=count > limit,
                            backend="rdflib")


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _ordered_columns(keys: list[str], query: str) -> list[str]:
    """Order result columns as the RETURN clause lists them."""
    match = list(re.finditer(r"\bRETURN\b", query, re.IGNORECASE))
    tail = query[match[-1].end():] if match else query
    return sorted(keys, key=lambda k: (tail.find(k) if k in tail else len(tail), k))


def normalize_value(value: Any) -> Any:
    """Make a result value backend-independent: nodes → property dicts, edges → typed dicts."""
    if isinstance(value, dict):
        labels = value.get("__labels__")
        if labels is not None and "id" not in value and "label" not in value:
            return {"type": sorted(labels)[0] if labels else None,
                    **{k: normalize_value(v) for k, v in sorted(value.items())
                       if k != "__labels__" and not k.startswith(INTERNAL_PREFIX)}}
        if all(isinstance(k, int) for k in value) and value:
            return normalize_value(next(iter(value.values())))
        return {k: normalize_value(v) for k, v in sorted(value.items())
                if k != "__labels__" and not k.startswith(INTERNAL_PREFIX)}
    if isinstance(value, list | tuple):
        return [normalize_value(v) for v in value]
    if isinstance(value, set):
        return sorted(normalize_value(v) for v in value)
    return value
