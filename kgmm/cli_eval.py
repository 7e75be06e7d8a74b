"""`kgmm eval vqa`: batch VQA evaluation runs (see docs/evaluation.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kgmm.cli_common import (
    Backend,
    DataDir,
    Neo4jPassword,
    Neo4jUri,
    Neo4jUser,
    console,
    err_console,
)


def eval_vqa(
    data: Annotated[Path, typer.Option("--data", help="dataset folder in VQA v2 / OK-VQA "
                                       "layout (questions, annotations, images)")],
    split: Annotated[list[str], typer.Option(
        "--split", help="split to evaluate (train, val, test, test-dev or a subtype such as "
        "val2014); repeatable")],
    model: Annotated[str | None, typer.Option(
        "--model", help="model directory or name (default: $KGMM_MODEL or the default "
        "model)")] = None,
    baseline: Annotated[Path | None, typer.Option(
        "--baseline", help="a second model to compare: a model directory, or bare VQA "
        "weights (config.json + model.safetensors) run on the model's perception")] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", help="run folder (default runs/vqa-<data>-<splits>); an existing run with "
        "the same models, data and splits is resumed")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 32,
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="answers kept per question")] = 5,
    limit: Annotated[int | None, typer.Option(
        "--limit", min=1, help="evaluate only the first N questions of each split")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda[:N]")] = "auto",
    seed: Annotated[int, typer.Option(help="seed of python, numpy and torch")] = 0,
    variant: Annotated[str, typer.Option(help="file naming: auto, v2 or okvqa")] = "auto",
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="replace the run in --out instead of resuming it")] = False,
    skip_missing_images: Annotated[bool, typer.Option(
        "--skip-missing-images", help="leave out questions whose image is not on disk")] = False,
    evidence: Annotated[bool | None, typer.Option(
        "--evidence/--no-evidence", help="store each answer's evidence in the predictions "
        "(default: on with --records)")] = None,
    records: Annotated[bool, typer.Option(
        "--records/--no-records", help="write the run's inspection records to the store at "
        "the end")] = False,
    backend: Backend = "rdflib",
    neo4j_uri: Neo4jUri = None,
    neo4j_user: Neo4jUser = None,
    neo4j_password: Neo4jPassword = None,
    data_dir: DataDir = None,
) -> None:
    """Answer a VQA split in batches; write predictions, metrics, report and plots to a run
    folder (resumable after a crash)."""
    from kgmm.evaluation.progress import throughput_progress
    from kgmm.evaluation.vqa import VQAEvalConfig, resolve_model_path, run_vqa_eval

    if variant not in ("auto", "v2", "okvqa"):
        raise typer.BadParameter(f"--variant must be auto, v2 or okvqa, got {variant!r}")
    if out is None:
        out = Path("runs") / f"vqa-{data.resolve().name}-{'+'.join(split)}"
    options = {k: v for k, v in (("uri", neo4j_uri), ("user", neo4j_user),
                                 ("password", neo4j_password)) if v is not None}
    cfg = VQAEvalConfig(
        data=data, splits=tuple(split), model=resolve_model_path(model, data_dir), out=out,
        baseline=baseline, data_dir=data_dir, batch_size=batch_size, top_k=top_k, limit=limit,
        variant=variant, device=device, seed=seed, evidence=evidence, overwrite=overwrite,
        skip_missing_images=skip_missing_images, records=records, backend=backend,
        store_options=options)
    with throughput_progress(err_console) as progress:
        result = run_vqa_eval(cfg, progress=progress, log=lambda m: err_console.print(m))
    _print_summary(result)


def _print_summary(result: object) -> None:
    from rich.table import Table

    from kgmm.evaluation.report import cell, signed
    from kgmm.evaluation.vqa import BASELINE, MODEL, VQARunResult

    assert isinstance(result, VQARunResult)
    metrics = result.metrics
    models = metrics["models"]
    has_base = BASELINE in models
    table = Table("split", "questions", "model", *(("baseline", "Δ") if has_base else ()),
                  title=f"VQA accuracy — {result.path}")
    rows = [(s, metrics["per_split_questions"][s], models[MODEL]["per_split"].get(s),
             models.get(BASELINE, {}).get("per_split", {}).get(s)) for s in metrics["splits"]]
    rows.append(("all", metrics["questions"], models[MODEL]["overall"],
                 models.get(BASELINE, {}).get("overall")))
    for split, n, a, b in rows:
        extra = (cell(b), signed(a - b if a is not None and b is not None else None)) \
            if has_base else ()
        table.add_row(split, f"{n:,}", cell(a), *extra)
    console.print(table)
    thr = metrics["throughput"]
    console.print(f"answered {result.answered:,} now, {result.resumed:,} resumed; "
                  f"{cell(thr['questions_per_second'])} questions/s over all sessions; "
                  f"report: {result.path / 'report.md'}")
    if result.records_written is not None:
        console.print(f"inspection records written: {result.records_written:,}")


def register(app: typer.Typer, groups: dict[str, typer.Typer]) -> None:
    """Add ``kgmm eval vqa`` to the ``eval`` group."""
    groups["eval"].command("vqa")(eval_vqa)
