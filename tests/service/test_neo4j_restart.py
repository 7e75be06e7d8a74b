"""The service while its Neo4j server goes down and comes back: ``/answer`` and
``/entities`` keep working from the compiled KG, ``/cypher`` answers a clear 503 problem while
Neo4j is down and works again once it is back, without restarting the service.

Starts its own Neo4j server (not the shared session one) on a fixed port and home, so that
stopping and starting it keeps the data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kgmm.graph.stores import open_store
from kgmm.service import create_app

from ..graph.toy_kg import toy_graph
from .conftest import TEST_LIMITS, free_port, neo4j_server_module, png_bytes, required_or_skip

QUERY = {"query": "MATCH (e:Entity {id: $id}) RETURN e.label AS label",
         "params": {"id": "ex:dog"}}


def _ask(client: Any) -> Any:
    return client.post("/answer", data={"question": "Is there a dog?"},
                       files={"image": ("a.png", png_bytes(), "image/png")})


@pytest.mark.neo4j
@pytest.mark.slow
def test_answers_continue_and_inspection_recovers_across_a_neo4j_restart(
        toy_model: Any, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    server = neo4j_server_module().Neo4jTestServer(port=free_port(), home=tmp_path / "neo4j")
    try:
        server.start()
    except Exception as exc:  # no JDK/Maven, port taken, ...
        required_or_skip("Neo4j", f"{type(exc).__name__}: {exc}")
    settings = server.settings

    def opener() -> Any:
        return open_store("neo4j", uri=settings.uri, user=settings.user,
                          password=settings.password)

    try:
        store = opener()
        store.import_data(toy_graph())
        store.close()
        with TestClient(create_app(toy_model, opener, TEST_LIMITS)) as client:
            up = client.post("/cypher", json=QUERY)
            assert up.status_code == 200, up.text
            assert up.json()["rows"] == [{"label": "dog"}] and up.json()["backend"] == "neo4j"

            server.stop()
            for _ in range(2):
                down = client.post("/cypher", json=QUERY)
                assert down.status_code == 503, down.text
                assert down.headers["content-type"].startswith("application/problem+json")
                assert down.json()["type"] == "/problems/store-unavailable"
                assert settings.uri in down.json()["detail"]
                assert down.headers["retry-after"]
                assert _ask(client).status_code == 200
                assert client.get("/entities/ex:dog").status_code == 200
            health = client.get("/healthz").json()
            assert health["status"] == "ok" and health["store"]["status"] == "down"

            server.start()
            back = client.post("/cypher", json=QUERY)
            assert back.status_code == 200, back.text
            assert back.json()["rows"] == [{"label": "dog"}]
            assert client.get("/healthz").json()["store"]["status"] == "up"
    finally:
        server.stop()
