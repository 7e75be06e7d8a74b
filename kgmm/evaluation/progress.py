"""A rich progress bar with throughput (items/s), for evaluators that stream batches."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

#: ``update(done, total, description)``: absolute progress of the current stage.
ProgressCallback = Callable[[int, int, str], None]


@contextmanager
def throughput_progress(console: Any = None, unit: str = "q") -> Iterator[ProgressCallback]:
    """A rich display (to ``console``, default stderr) of ``done/total``, ``<unit>/s``,
    elapsed and remaining time; yields the update callback. The rate counts only what this
    process did (a resumed run starts its bar at the resumed count)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        Task,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class Throughput(ProgressColumn):
        def render(self, task: Task) -> Text:
            speed = task.finished_speed or task.speed
            return Text(f"{speed:.1f} {unit}/s" if speed else f"– {unit}/s", style="cyan")

    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               Throughput(), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn())
    with Progress(*columns, console=console or Console(stderr=True),
                  speed_estimate_period=60.0) as progress:
        tasks: dict[str, Any] = {}

        def update(done: int, total: int, description: str) -> None:
            if description not in tasks:
                tasks[description] = progress.add_task(description, total=total or None,
                                                       completed=0)
                # the resumed part is not this process's work: start from it without a rate
                progress.update(tasks[description], completed=done)
                progress.reset(tasks[description], total=total or None, completed=done)
                return
            progress.update(tasks[description], completed=done, total=total or None)

        yield update
