"""`kgmm inspect question|cypher|queries`: inspection records."""

from __future__ import annotations

import typer


def register(app: typer.Typer, groups: dict[str, typer.Typer]) -> None:
    """Add this module's commands to ``app`` / ``groups`` (nothing yet)."""
