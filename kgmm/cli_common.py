"""Shared pieces of the ``kgmm`` command line: consoles, common options, progress, helpers.

Command modules (``kgmm/cli_*.py``) import from here, never from ``kgmm.cli`` (which may run as
``__main__``), and expose ``register(app, groups)``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

console = Console()
err_console = Console(stderr=True)

DataDir = Annotated[Path | None, typer.Option("--data-dir", help="kgmm data directory "
                                              "(default: $KGMM_HOME or ~/.local/share/kgmm)")]
Backend = Annotated[str, typer.Option("--backend", "-b", help="rdflib (embedded) or neo4j")]
Neo4jUri = Annotated[str | None, typer.Option("--neo4j-uri", help="default $KGMM_NEO4J_URI")]
Neo4jUser = Annotated[str | None, typer.Option("--neo4j-user", help="default $KGMM_NEO4J_USER")]
Neo4jPassword = Annotated[str | None, typer.Option("--neo4j-password",
                                                   help="default $KGMM_NEO4J_PASSWORD")]


@contextmanager
def progress_display() -> Iterator[Callable[[str, int, int], None]]:
    """A rich progress display; yields a ``progress(step, done, total)`` callback."""
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), TaskProgressColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=False) as progress:
        tasks: dict[str, Any] = {}

        def update(step: str, done: int, total: int) -> None:
            if step not in tasks:
                tasks[step] = progress.add_task(step, total=total or None)
            progress.update(tasks[step], completed=done, total=total or None)

        yield update


def open_store_for(backend: str, data_dir: Path | None, uri: str | None = None,
                   user: str | None = None, password: str | None = None) -> Any:
    from kgmm.graph.stores import open_store

    return open_store(backend, data_dir=data_dir, uri=uri, user=user, password=password)


def print_stats(title: str, stats: dict[str, Any]) -> None:
    table = Table(title=title, show_header=False)
    for key, value in stats.items():
        table.add_row(key, f"{value:,}" if isinstance(value, int) else str(value))
    console.print(table)


def parse_params(items: list[str] | None) -> dict[str, Any]:
    """``k=v`` pairs; ``v`` is read as JSON when it parses (numbers, lists), else as text."""
    params: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.isidentifier():
            raise typer.BadParameter(f"--param needs NAME=VALUE, got {item!r}")
        try:
            params[key] = json.loads(raw)
        except json.JSONDecodeError:
            params[key] = raw
    return params


def cell_text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 120 else text[:117] + "..."


