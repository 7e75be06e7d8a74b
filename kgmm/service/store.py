"""The store behind ``/cypher``: opened lazily, dropped and reopened after an outage.

Answering never touches the store (it runs on the model's compiled KG), so the service starts
and answers while the store is down; inspection answers 503 until the store is back. While the
store is down, requests are refused at once for ``retry_s`` seconds after each failed attempt
(and while another request is reconnecting) instead of each waiting for a connection timeout.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from kgmm.graph.errors import StoreError, StoreUnavailableError

StoreOpener = Callable[[], Any]


class StoreProvider:
    """Hands out one open store; reopens it (with ``opener``) after it became unreachable."""

    def __init__(self, store: Any = None, *, opener: StoreOpener | None = None,
                 backend: str | None = None, retry_s: float = 2.0) -> None:
        self._store = store
        self._opener = opener
        self.backend = backend or getattr(store, "backend", None)
        self.retry_s = retry_s
        self._lock = threading.Lock()
        self._opening = False
        self._down_until = 0.0
        self.last_error: str | None = None

    @property
    def configured(self) -> bool:
        return self._store is not None or self._opener is not None

    def _refuse(self, why: str) -> StoreUnavailableError:
        return StoreUnavailableError(f"{self.last_error or 'the store is unreachable'} ({why})")

    def get(self) -> Any:
        """The open store; raises :class:`StoreUnavailableError` while it cannot be opened."""
        with self._lock:
            if self._store is not None:
                return self._store
            if self._opener is None:
                raise StoreError("no knowledge-graph store is configured for inspection")
            if self._opening:
                raise self._refuse("reconnecting")
            wait = self._down_until - time.monotonic()
            if wait > 0:
                raise self._refuse(f"next attempt in {wait:.1f} s")
            self._opening = True
        store = None
        try:
            store = self._opener()
        except StoreError as exc:
            self._failed(exc)
            raise
        finally:
            with self._lock:
                self._opening = False
                if store is not None:
                    self._store = store
                    self.backend = getattr(store, "backend", self.backend)
                    self.last_error = None
        return store

    def _failed(self, error: Exception, store: Any = None) -> None:
        """Remember an outage; forget ``store`` so that the next attempt opens a fresh one."""
        with self._lock:
            self.last_error = str(error)
            self._down_until = time.monotonic() + self.retry_s
            if store is None or self._opener is None or self._store is not store:
                return
            self._store = None
        with contextlib.suppress(Exception):  # closing a dead connection may fail
            store.close()

    def inspect(self, query: str, params: Mapping[str, Any], *, limit: int,
                timeout_s: float) -> Any:
        store = self.get()
        try:
            return store.inspect(query, params, limit=limit, timeout_s=timeout_s)
        except StoreUnavailableError as exc:
            self._failed(exc, store)
            raise

    def status(self) -> tuple[str, str | None]:
        """``("up"|"down"|"none", detail)``; probes a server store with ``RETURN 1``."""
        if not self.configured:
            return "none", None
        try:
            store = self.get()
            if getattr(store, "backend", "") == "neo4j":
                self.inspect("RETURN 1 AS ok", {}, limit=1, timeout_s=2.0)
        except StoreError as exc:
            return "down", str(exc)
        return "up", None

    def close(self) -> None:
        with self._lock:
            store, self._store = self._store, None
        if store is not None and self._opener is not None:
            store.close()
