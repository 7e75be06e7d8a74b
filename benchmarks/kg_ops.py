"""Knowledge-graph operations on the full WordNet, kgmm beside the obvious alternatives.

Measures, in one run, on the machine it runs on:

* import — kgmm's embedded store (rdflib API over Oxigraph, bulk N-Triples load, write-aside
  + swap), rdflib's in-memory ``Graph``, pyoxigraph's in-memory bulk loader, and kgmm's Neo4j
  store (batched ``UNWIND … MERGE``) when a Neo4j server is available;
* compile — ``CompiledKG.from_store``: the embedded store hands over the snapshot it keeps
  with each generation; "compile from a full store read" reads every entity and triple back
  (SPARQL on Oxigraph, Cypher on Neo4j) and builds the CSR, lexicon and texts;
* open — ``CompiledKG.load`` of a saved snapshot (memory-mapped, id maps included);
* 2-hop subgraph returned as the PyG ``Data`` the reasoner consumes, over seeds that
  questions really mention (hubs such as person, dog, city included), against PyG's
  ``k_hop_subgraph``, networkx ``ego_graph``, pyoxigraph SPARQL and Neo4j Cypher; the node sets
  of every method are checked to be identical.

Usage::

    python benchmarks/kg_ops.py [--json FILE] [--markdown FILE] [--no-neo4j] [--repeat N]

Neo4j: uses ``KGMM_NEO4J_URI``/``USER``/``PASSWORD`` when set, else starts the test server
from ``scripts/neo4j_server.py``. Prints a table; ``--json`` writes
``{operation: {tool: median_seconds}}`` with kgmm's own column named ``kgmm``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
SEED_NAMES = ["person", "dog", "cat", "city", "car", "apple", "tree", "man", "woman", "table",
              "chair", "water", "food", "house", "bird", "horse", "ball", "book", "bus", "pizza",
              "boat", "banana", "guitar", "bicycle", "elephant", "shirt", "phone", "cake",
              "flower", "train"]


def median_time(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Median wall time of ``repeat`` calls and the last result."""
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def load_wordnet() -> Any:
    from kgmm.graph.sources.fetch import find_wordnet
    from kgmm.graph.sources.wordnet import read_wordnet

    return read_wordnet(find_wordnet())


def bench_import(data: Any, workdir: Path, results: dict[str, dict[str, float]]) -> Any:
    from kgmm.graph.stores.embedded import EmbeddedStore

    print("import: kgmm embedded store, rdflib memory, pyoxigraph memory", file=sys.stderr)
    counter = iter(range(1000))

    def kgmm_import() -> EmbeddedStore:
        store = EmbeddedStore(workdir / f"store-{next(counter)}")
        store.import_data(data)
        return store

    seconds, store = median_time(kgmm_import, 1)
    results["import"] = {"kgmm": seconds}

    from kgmm.graph.stores.embedded import _to_ntriples

    payload = _to_ntriples(data)

    def rdflib_memory() -> int:
        import rdflib

        graph = rdflib.Graph()
        graph.parse(data=payload, format="nt")
        return len(graph)

    results["import"]["rdflib memory Graph"] = median_time(rdflib_memory, 1)[0]

    def pyoxigraph_memory() -> int:
        import pyoxigraph as ox

        ox_store = ox.Store()
        ox_store.bulk_load(payload, format=ox.RdfFormat.N_TRIPLES)
        return len(ox_store)

    results["import"]["pyoxigraph memory bulk_load"] = median_time(pyoxigraph_memory, 1)[0]
    return store


def bench_compile_open(store: Any, workdir: Path, repeat: int,
                       results: dict[str, dict[str, float]]) -> Any:
    from kgmm.graph.compiled import CompiledKG

    store.close()
    results["compile"] = {"kgmm": median_time(
        lambda: CompiledKG.from_store(type(store)(store.root)), repeat)[0]}
    results["compile from a full store read"] = {"kgmm": median_time(
        lambda: CompiledKG.build(type(store)(store.root).export()), 1)[0]}
    kg = CompiledKG.from_store(store)
    path = kg.save(workdir / "snapshot")

    def open_snapshot() -> CompiledKG:
        loaded = CompiledKG.load(path)
        loaded.index_of("wn:dog.n.01")  # id map usable
        return loaded

    results["open snapshot"] = {"kgmm": median_time(open_snapshot, max(repeat, 5))[0]}
    return CompiledKG.load(path)


def pick_seeds(kg: Any) -> list[int]:
    seeds = []
    for name in SEED_NAMES:
        hits = kg.lookup(name, limit=1)
        if hits:
            seeds.append(hits[0])
    return seeds


def bench_subgraph(kg: Any, store: Any, neo4j_store: Any, repeat: int,
                   results: dict[str, dict[str, float]]) -> dict[str, int]:
    import networkx as nx
    import pyoxigraph as ox
    import torch
    from torch_geometric.utils import k_hop_subgraph, to_undirected

    from kgmm.graph.stores import rdf_terms as T

    seeds = pick_seeds(kg)
    sizes = {kg.id_of(s): int(kg.subgraph([s], hops=2).num_nodes) for s in seeds}
    per_tool: dict[str, list[float]] = {}

    def run(tool: str, fn: Callable[[int], set[int]], reps: int) -> None:
        print(f"2-hop subgraphs: {tool}", file=sys.stderr)
        times = []
        for seed in seeds:
            expected = set(kg.subgraph([seed], hops=2).n_id.tolist())
            seconds, got = median_time(lambda s=seed: fn(s), reps)
            if got != expected:
                raise AssertionError(f"{tool}: node set differs for {kg.id_of(seed)} "
                                     f"({len(got)} vs {len(expected)})")
            times.append(seconds)
        per_tool[tool] = times

    run("kgmm", lambda s: set(kg.subgraph([s], hops=2).n_id.tolist()), max(repeat, 20))

    src, dst, _ = kg.edge_arrays()
    edge_index = to_undirected(torch.from_numpy(np.stack([src, dst])), num_nodes=kg.num_nodes)
    run("PyG k_hop_subgraph", lambda s: set(k_hop_subgraph(
        s, 2, edge_index, num_nodes=kg.num_nodes)[0].tolist()), repeat)

    graph = nx.Graph()
    graph.add_nodes_from(range(kg.num_nodes))
    graph.add_edges_from(zip(src.tolist(), dst.tolist(), strict=True))
    run("networkx ego_graph", lambda s: set(nx.ego_graph(graph, s, radius=2).nodes), repeat)

    ox_store = store._oxigraph()
    preds = [f"<{T.relation_iri(r)}>" for r in kg.relation_ids]
    step = "(" + "|".join(preds + ["^" + p for p in preds]) + ")"
    ids = {kg.id_of(i): i for i in range(kg.num_nodes)}

    def sparql(seed: int) -> set[int]:
        iri = f"<{T.entity_iri(kg.id_of(seed))}>"
        query = (f"SELECT DISTINCT ?n WHERE {{ {{ BIND({iri} AS ?n) }} UNION "
                 f"{{ {iri} {step} ?n }} UNION {{ {iri} {step}/{step} ?n }} }}")
        return {ids[T.entity_id_from_iri(row["n"].value)] for row in ox_store.query(query)}

    _ = ox
    run("pyoxigraph SPARQL", sparql, repeat)

    if neo4j_store is not None:
        def cypher(seed: int) -> set[int]:
            with neo4j_store._session(read=True) as session:
                rows = session.run("MATCH (s:Entity {id: $id}) "
                                   "CALL (s) { MATCH (s)-[]-(a:Entity) RETURN a AS n UNION "
                                   "MATCH (s)-[]-(:Entity)-[]-(b:Entity) RETURN b AS n "
                                   "UNION RETURN s AS n } RETURN DISTINCT n.id AS id",
                                   id=kg.id_of(seed))
                return {ids[r["id"]] for r in rows}

        run("Neo4j Cypher", cypher, max(1, repeat // 2))

    results["2-hop subgraph (median over seeds)"] = {
        tool: statistics.median(times) for tool, times in per_tool.items()}
    results["2-hop subgraph, person"] = {
        tool: times[seeds.index(kg.lookup("person", limit=1)[0])]
        for tool, times in per_tool.items()}
    return sizes


def bench_neo4j_import(data: Any, results: dict[str, dict[str, float]]) -> Any:
    from kgmm.graph.stores.neo4j_store import Neo4jStore

    print("import: kgmm Neo4j store", file=sys.stderr)
    store = Neo4jStore()
    store.clear()
    started = time.perf_counter()
    store.import_data(data)
    results["import"]["kgmm Neo4j store"] = time.perf_counter() - started
    return store


def start_neo4j() -> Any:
    if os.environ.get("KGMM_NEO4J_URI"):
        return None
    spec = importlib.util.spec_from_file_location("neo4j_server",
                                                  REPO / "scripts" / "neo4j_server.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["neo4j_server"] = module
    spec.loader.exec_module(module)
    # full JIT and a larger heap: the test default (C1 only) is tuned for start-up, not load
    server = module.Neo4jTestServer(jvm_opts=("-Xmx1g", "-XX:+UseParallelGC",
                                              "-Dfile.encoding=UTF-8"))
    server.start()
    os.environ.update(KGMM_NEO4J_URI=server.uri, KGMM_NEO4J_USER=server.user,
                      KGMM_NEO4J_PASSWORD=server.password)
    return server


def print_table(results: dict[str, dict[str, float]], sizes: dict[str, int]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("operation", "tool", "median", "vs kgmm", title="kgmm KG operations (WordNet)")
    for operation, tools in results.items():
        base = tools.get("kgmm")
        for tool, seconds in tools.items():
            ratio = f"{seconds / base:.1f}×" if base and tool != "kgmm" else ""
            shown = f"{seconds * 1e3:.3f} ms" if seconds < 1 else f"{seconds:.2f} s"
            table.add_row(operation, tool, shown, ratio)
    Console().print(table)
    Console().print("2-hop neighbourhood sizes: " + ", ".join(
        f"{k.split(':', 1)[1]}={v}" for k, v in sorted(sizes.items(), key=lambda kv: -kv[1])[:10]))


def markdown_table(results: dict[str, dict[str, float]]) -> str:
    """The results as a Markdown table (median seconds, and the factor against kgmm)."""
    lines = ["| operation | tool | median | vs kgmm |", "|---|---|---|---|"]
    for operation, tools in results.items():
        base = tools.get("kgmm")
        for tool, seconds in tools.items():
            ratio = f"{seconds / base:.1f}×" if base and tool != "kgmm" else ""
            shown = f"{seconds * 1e3:.2f} ms" if seconds < 1 else f"{seconds:.2f} s"
            lines.append(f"| {operation} | {tool} | {shown} | {ratio} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="write {operation: {tool: seconds}} here")
    parser.add_argument("--markdown", type=Path, help="write the table as Markdown here")
    parser.add_argument("--no-neo4j", action="store_true", help="skip Neo4j measurements")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(2)
    results: dict[str, dict[str, float]] = {}
    started = time.perf_counter()
    data = load_wordnet()
    results["read WordNet files"] = {"kgmm": time.perf_counter() - started}
    print(f"WordNet: {data.stats()}", file=sys.stderr)
    server = None if args.no_neo4j else start_neo4j()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            store = bench_import(data, workdir, results)
            neo4j_store = None if args.no_neo4j else bench_neo4j_import(data, results)
            kg = bench_compile_open(store, workdir, args.repeat, results)
            sizes = bench_subgraph(kg, store, neo4j_store, args.repeat, results)
            if neo4j_store is not None:
                from kgmm.graph.compiled import CompiledKG

                seconds, neo_kg = median_time(lambda: CompiledKG.from_store(neo4j_store), 1)
                results["compile from a full store read"]["kgmm Neo4j store"] = seconds
                same = neo_kg.content_hash == kg.content_hash
                print(f"Neo4j and embedded stores compile to the same snapshot: {same}",
                      file=sys.stderr)
                neo4j_store.close()
            store.close()
    finally:
        if server is not None:
            server.stop()
    print_table(results, sizes)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    if args.markdown:
        args.markdown.write_text(markdown_table(results))


if __name__ == "__main__":
    main()
