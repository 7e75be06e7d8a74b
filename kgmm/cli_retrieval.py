"""`kgmm retrieve` and `kgmm eval retrieval`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from kgmm.cli_common import DataDir, console, err_console, progress_display

RERANKERS = ("none", "cross", "kg", "cross+kg")


def retrieve_command(
    query: Annotated[str | None, typer.Argument(help="the text query (omit with --image)")]
    = None,
    image: Annotated[Path | None, typer.Option(
        "--image", help="search captions with this image instead of a text query")] = None,
    top: Annotated[int, typer.Option("--top", min=1, help="results to show")] = 10,
    rerank: Annotated[str, typer.Option(
        "--rerank", help="re-ranker: none, cross, kg or cross+kg")] = "none",
    candidates: Annotated[int, typer.Option(
        "--candidates", min=1, help="first-stage results the re-ranker re-orders")] = 100,
    model: Annotated[str | None, typer.Option(
        "--model", help="retriever directory or name (default: $KGMM_RETRIEVER or "
        "<data-dir>/models/default-retriever)")] = None,
    images: Annotated[Path | None, typer.Option(
        "--images", help="search this folder of images (indexed now) instead of the "
        "retriever's own index")] = None,
    index: Annotated[Path | None, typer.Option(
        "--index", help="search this saved image index instead of the retriever's own")] = None,
    save_index: Annotated[Path | None, typer.Option(
        "--save-index", help="with --images: save the new index here for reuse")] = None,
    backend: Annotated[str, typer.Option(help="index search: exact or faiss")] = "exact",
    as_json: Annotated[bool, typer.Option("--json", help="print the results as JSON")] = False,
    data_dir: DataDir = None,
) -> None:
    """Text→image (or, with --image, image→text) search with an optional re-ranker; every
    re-ranked result comes with its evidence (linked entities, KG paths)."""
    from kgmm.graph.errors import InputError
    from kgmm.retrieval import Retriever

    if rerank not in RERANKERS:
        raise typer.BadParameter(f"--rerank must be one of {', '.join(RERANKERS)}")
    if (query is None) == (image is None):
        raise InputError("give either a text QUERY or --image PATH", field="query")
    retriever = Retriever.load(model, data_dir=data_dir)
    if index is not None:
        from kgmm.reasoning.retrieval.index import EmbeddingIndex

        retriever.use_index(EmbeddingIndex.load(index, backend=backend))
    elif images is not None:
        files = sorted(p for p in images.iterdir()
                       if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp", ".bmp"))
        if not files:
            raise InputError("no images (.jpg, .png, .webp, .bmp) in the folder", source=images)
        with progress_display() as progress:
            built = retriever.build_index([str(p) for p in files], [p.name for p in files],
                                          backend=backend, progress=progress)
        if save_index is not None:
            built.save(save_index)
        retriever.use_index(built)
    hits = retriever.retrieve(query if query is not None else image, top,
                              rerank=None if rerank == "none" else rerank,
                              candidates=candidates)
    if as_json:
        sys.stdout.write(json.dumps([h.to_dict() for h in hits], ensure_ascii=False) + "\n")
        return
    _print_hits(hits, rerank != "none")


def _print_hits(hits: list[Any], reranked: bool) -> None:
    from rich.table import Table

    table = Table("rank", "id", "score", *(("was",) if reranked else ()), "what", "evidence")
    for hit in hits:
        what = hit.text or ", ".join(g["entities"][0][0] for g in
                                     hit.payload.get("concepts", [])[:4] if g["entities"])
        ev = ""
        if hit.evidence is not None and hit.evidence.matches:
            m = hit.evidence.matches[0]
            verb = {"same": "=", "is_a": "is a", "related": "→", "similar": "~"}
            ev = f"{m['shown_entity']} {verb.get(m['relation'], '~')} {m['named_entity']}"
            if m["relations"]:
                ev += f" ({len(m['relations'])} hops)"
        table.add_row(str(hit.rank + 1), str(hit.id), f"{hit.score:.3f}",
                      *((str(hit.first_stage_rank + 1),) if reranked else ()), what, ev)
    console.print(table)


def eval_retrieval(
    data: Annotated[Path, typer.Option("--data", help="folder in COCO-captions layout "
                                       "(OpenMoji-scenes adds retrieval/<split>_queries.json)")],
    split: Annotated[list[str], typer.Option("--split", help="split to evaluate; repeatable")],
    out: Annotated[Path, typer.Option("--out", help="run folder: metrics.json, report.md")],
    model: Annotated[str | None, typer.Option(
        "--model", help="retriever directory or name (default: the default retriever)")] = None,
    candidates: Annotated[int, typer.Option(
        "--candidates", min=1, help="dual-tower results each re-ranker re-orders")] = 100,
    data_dir: DataDir = None,
) -> None:
    """R@1/5/10, MRR and nDCG@10 per direction × query kind × ranker; writes RUN/metrics.json
    and RUN/report.md (a Markdown table)."""
    from kgmm.reasoning.retrieval.report import evaluate_folder, markdown_table, write_run
    from kgmm.retrieval import Retriever

    retriever = Retriever.load(model, data_dir=data_dir)
    with progress_display() as progress:
        metrics = evaluate_folder(retriever.model, data, split, k=candidates, progress=progress)
    path = write_run(out, metrics)
    console.print(markdown_table(metrics))
    err_console.print(f"metrics: {path / 'metrics.json'}; table: {path / 'report.md'}")


def register(app: typer.Typer, groups: dict[str, typer.Typer]) -> None:
    """Add ``kgmm retrieve`` and ``kgmm eval retrieval``."""
    app.command("retrieve")(retrieve_command)
    groups["eval"].command("retrieval")(eval_retrieval)
