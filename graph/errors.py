"""Typed errors shared by every layer of kgmm.

Each error names the input it is about (a file, a line, a record, a field) so that a user
can find and fix it without reading a traceback.
"""

from __future__ import annotations

from pathlib import Path


class KGMMError(Exception):
    """Base class of every error kgmm raises on purpose."""


class InputError(KGMMError, ValueError):
    """Malformed user input: a file, a record in it, or a field of a record.

    The message reads ``<source>:<line>: [record <r>] [field <f>]: <what is wrong>``.
    """

    def __init__(
        self,
        message: str,
        *,
        source: str | Path | None = None,
        line: int | None = None,
        record: str | int | None = None,
        field: str | None = None,
    ) -> None:
        self.source = str(source) if source is not None else None
        self.line = line
        self.record = record
        self.field = field
        self.reason = message
        super().__init__(self._format())

    def _format(self) -> str:
        where = ""
        if self.source is not None:
            where = self.source
            if self.line is not None:
                where += f":{self.line}"
        parts = [where] if where else []
        if self.record is not None:
            parts.append(f"record {self.record}")
        if self.field is not None:
            parts.append(f"field {self.field!r}")
        prefix = ", ".join(parts)
        return f"{prefix}: {self.reason}" if prefix else self.reason


class SourceNotFoundError(KGMMError, FileNotFoundError):
    """A knowledge source (files or a package) could not be found or fetched."""


class StoreError(KGMMError):
    """A knowledge-graph store failed; the store is left as it was."""


class StoreUnavailableError(StoreError):
    """The store's server cannot be reached (down, wrong address)."""


class StoreAuthError(StoreError):
    """The store's server refused the credentials."""


class QueryError(KGMMError, ValueError):
    """An inspection query is not valid in the supported Cypher subset."""


class ReadOnlyViolationError(KGMMError, PermissionError):
    """An inspection query would write; inspection is read-only."""


class SnapshotError(KGMMError):
    """A compiled KG snapshot is missing, corrupt or does not match what uses it."""
