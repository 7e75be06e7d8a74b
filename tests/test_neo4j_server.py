"""The Neo4j test server is a real Neo4j 5 Community server (Bolt, auth, loopback, restarts)."""

from __future__ import annotations

import importlib.util
import os
import socket
import sys
import uuid
from pathlib import Path

import neo4j
import pytest
from neo4j.exceptions import AuthError


def _neo4j_server_module():
    # Same module object as tests/conftest.py loads (scripts/ is not a package).
    name = "kgmm_scripts_neo4j_server"
    if name not in sys.modules:
        path = Path(__file__).resolve().parent.parent / "scripts" / "neo4j_server.py"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


Neo4jSettings = _neo4j_server_module().Neo4jSettings
Neo4jTestServer = _neo4j_server_module().Neo4jTestServer

pytestmark = pytest.mark.neo4j


@pytest.fixture(scope="module")
def local_toolchain() -> None:
    """For tests that start servers of their own: same skip / fail-under-CI policy as conftest."""
    try:
        _neo4j_server_module().build_classpath()
        _neo4j_server_module().find_java()
    except Exception as exc:
        reason = f"cannot start a local Neo4j: {type(exc).__name__}: {exc}"
        if os.environ.get("CI", "").strip().lower() == "true":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)


def _driver(settings: Neo4jSettings, password: str | None = None) -> neo4j.Driver:
    return neo4j.GraphDatabase.driver(
        settings.uri, auth=(settings.user, settings.password if password is None else password)
    )


def test_write_and_read_a_node(neo4j_clean_db: Neo4jSettings) -> None:
    key = uuid.uuid4().hex
    with _driver(neo4j_clean_db) as driver:
        driver.verify_connectivity()
        driver.execute_query(
            "CREATE (:KgmmProbe {key: $key, tags: ['a', 'b'], score: 0.5})", key=key
        )
        records, _, _ = driver.execute_query(
            "MATCH (p:KgmmProbe {key: $key}) RETURN p.tags AS tags, p.score AS score", key=key
        )
    assert [(r["tags"], r["score"]) for r in records] == [(["a", "b"], 0.5)]


@pytest.mark.parametrize("round_", [1, 2])
def test_clean_db_fixture_empties_the_database(neo4j_clean_db: Neo4jSettings, round_: int) -> None:
    # Round 2 sees what round 1 left behind only if the fixture failed to remove it.
    with _driver(neo4j_clean_db) as driver:
        records, _, _ = driver.execute_query("MATCH (n) RETURN count(n) AS n")
        assert records[0]["n"] == 0
        records, _, _ = driver.execute_query("SHOW CONSTRAINTS YIELD name")
        assert records == []
        records, _, _ = driver.execute_query("SHOW INDEXES YIELD name, type")
        assert {r["type"] for r in records} <= {"LOOKUP"}
        # leave something behind for the next test's fixture to remove
        driver.execute_query(
            "CREATE CONSTRAINT kgmm_probe_key IF NOT EXISTS "
            "FOR (p:KgmmProbe) REQUIRE p.key IS UNIQUE"
        )
        driver.execute_query("CREATE INDEX kgmm_probe_n IF NOT EXISTS FOR (p:KgmmProbe) ON (p.n)")
        driver.execute_query("CREATE (:KgmmProbe {key: 'leftover'})-[:NEXT]->(:KgmmProbe)")


def test_is_neo4j_5_community(neo4j_server: Neo4jSettings) -> None:
    with _driver(neo4j_server) as driver:
        records, _, _ = driver.execute_query("CALL dbms.components() YIELD name, versions, edition")
    kernel = next(r for r in records if r["name"] == "Neo4j Kernel")
    assert kernel["versions"][0].startswith("5."), kernel["versions"]
    assert kernel["edition"] == "community"


def test_wrong_password_is_rejected(neo4j_server: Neo4jSettings) -> None:
    with (
        _driver(neo4j_server, password="definitely-not-the-password") as driver,
        pytest.raises(AuthError),
    ):
        driver.verify_connectivity()


def test_right_password_needs_no_change(neo4j_server: Neo4jSettings) -> None:
    # A user that must change its password could not run ordinary queries.
    with _driver(neo4j_server) as driver:
        records, _, _ = driver.execute_query(
            "SHOW CURRENT USER YIELD user, passwordChangeRequired", database_="system"
        )
    assert records[0]["user"] == neo4j_server.user
    assert records[0]["passwordChangeRequired"] is False


def test_bound_to_loopback(neo4j_server: Neo4jSettings) -> None:
    assert neo4j_server.uri.startswith(("bolt://127.0.0.1:", "bolt://localhost:", "neo4j://"))
    host, port = _host_port(neo4j_server.uri)
    if host not in ("127.0.0.1", "localhost"):
        pytest.skip(f"external server at {host}")
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass
    # Not reachable on any non-loopback address of this machine.
    for address in _non_loopback_ipv4_addresses():
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(2)
            assert s.connect_ex((address, port)) != 0, f"also listening on {address}:{port}"


@pytest.mark.usefixtures("local_toolchain")
def test_restart_keeps_data_on_the_same_port() -> None:
    # A server of its own, so restarting it does not disturb the session server.
    with Neo4jTestServer(password="restart-pw") as server:
        uri, home, first_pid = server.uri, server.home, server.pid
        assert home is not None and home.is_dir()
        assert server.password == "restart-pw"
        with _driver(server.settings) as driver:
            driver.execute_query("CREATE (:KgmmRestart {n: 42})")

        server.restart()

        assert (server.uri, server.home) == (uri, home)
        assert server.pid != first_pid
        with _driver(server.settings) as driver:
            records, _, _ = driver.execute_query("MATCH (r:KgmmRestart) RETURN r.n AS n")
            assert [r["n"] for r in records] == [42]
        with _driver(server.settings, password="wrong") as bad, pytest.raises(AuthError):
            bad.verify_connectivity()
    assert not server.is_running()
    assert not home.exists()  # the temp home it created is removed by stop()


@pytest.mark.usefixtures("local_toolchain")
def test_start_failure_raises_with_server_output(tmp_path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen(1)
        port = blocker.getsockname()[1]
        server = Neo4jTestServer(port=port, home=tmp_path / "home", startup_timeout=120)
        with pytest.raises(RuntimeError) as excinfo:
            server.start()
    assert not server.is_running()
    assert (tmp_path / "home").is_dir()  # a home given by the caller is never removed
    message = str(excinfo.value)
    assert "Last output" in message
    assert "already in use" in message.lower() or "bind" in message.lower(), message


def _host_port(uri: str) -> tuple[str, int]:
    hostport = uri.split("://", 1)[1].split("/", 1)[0]
    host, _, port = hostport.rpartition(":")
    return host, int(port)


def _non_loopback_ipv4_addresses() -> list[str]:
    addresses: set[str] = set()
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
        addresses.update(str(info[4][0]) for info in infos)
    except OSError:
        pass
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1, no packet is sent for UDP connect
            addresses.add(s.getsockname()[0])
        except OSError:
            pass
    return sorted(a for a in addresses if not a.startswith("127."))
