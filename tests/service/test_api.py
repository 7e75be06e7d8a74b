"""The HTTP API: answers with evidence graphs, entities, read-only Cypher, re-ranking, limits,
and every error as RFC 9457 problem details."""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest

from kgmm.graph.errors import StoreUnavailableError
from kgmm.service import ServiceLimits, StoreProvider, create_app

from .conftest import TEST_LIMITS, png_bytes

PROBLEM = "application/problem+json"


def ask(client: Any, question: str = "What kind of thing is the dog?", image: bytes | None = None,
        **fields: Any) -> Any:
    data = {"question": question, **{k: str(v) for k, v in fields.items()}}
    files = {"image": ("scene.png", png_bytes() if image is None else image, "image/png")}
    return client.post("/answer", data=data, files=files)


def assert_problem(response: Any, status: int, slug: str, field: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == status and body["type"] == f"/problems/{slug}"
    assert body["title"] and body["detail"]
    if field is not None:
        assert body["field"] == field
    return body


def test_healthz_names_the_model_and_the_store(client: Any, toy_model: Any) -> None:
    body = client.get("/healthz").json()
    assert body["status"] == "ok"
    assert body["model"]["kg_content_hash"] == toy_model.parts.kg.content_hash
    assert body["store"] == {"backend": "rdflib", "status": "up", "detail": None}


def test_answer_has_score_alternatives_evidence_and_a_drawable_graph(client: Any) -> None:
    response = ask(client, top_k=3)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["text"] and 0.0 <= body["score"] <= 1.0 and len(body["alternatives"]) <= 2
    assert body["question"] == "What kind of thing is the dog?"
    linked = {(e["entity_id"], e["source"]) for e in body["evidence"]["linked_entities"]}
    assert ("ex:dog", "question") in linked
    nodes = {n["id"]: n for n in body["graph"]["nodes"]}
    assert nodes["question"]["kind"] == "question" and nodes["image"]["kind"] == "image"
    assert "linked" in nodes["ex:dog"]["roles"] and nodes["ex:dog"]["label"] == "dog"
    if body["entity_id"]:
        assert "answer" in nodes[body["entity_id"]]["roles"]
    edges = body["graph"]["edges"]
    assert any(e["source"] == "question" and e["target"] == "ex:dog" for e in edges)
    assert all(e["source"] in nodes and e["target"] in nodes for e in edges)


def test_answer_input_errors_are_problem_details(client: Any) -> None:
    missing = client.post("/answer", data={"question": "What is it?"})
    assert_problem(missing, 422, "invalid-request", "image")
    no_question = client.post("/answer", files={"image": ("a.png", png_bytes(), "image/png")})
    body = assert_problem(no_question, 422, "invalid-request", "question")
    assert body["errors"][0]["field"] == "question"
    assert_problem(ask(client, "   "), 422, "invalid-request", "question")  # schema: \S
    assert_problem(ask(client, "\x1c\x1d"), 422, "invalid-question", "question")  # split()
    assert_problem(ask(client, "w" * 201), 422, "invalid-request", "question")
    assert_problem(ask(client, top_k=0), 422, "invalid-request", "top_k")
    assert_problem(ask(client, top_k=21), 422, "invalid-request", "top_k")
    assert_problem(ask(client, image=b"not an image at all"), 422, "invalid-image", "image")
    assert_problem(ask(client, image=b""), 422, "invalid-image", "image")
    truncated = png_bytes()[:100]
    assert_problem(ask(client, image=truncated), 422, "invalid-image", "image")


def test_image_limits_bytes_and_pixels(client: Any) -> None:
    big = png_bytes((500, 501))  # 250,500 pixels > 250,000; random data: > 300,000 bytes
    assert len(big) > TEST_LIMITS.max_image_bytes
    body = assert_problem(ask(client, image=big), 413, "request-too-large")
    assert "bytes" in body["detail"]
    wide = _flat_png((1000, 251))  # a small file with many pixels
    assert len(wide) < TEST_LIMITS.max_image_bytes
    body = assert_problem(ask(client, image=wide), 413, "image-too-large", "image")
    assert "pixels" in body["detail"]


def _flat_png(size: tuple[int, int]) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, "white").save(buffer, format="PNG")
    return buffer.getvalue()


def test_image_just_under_the_request_limit_but_over_the_image_limit(app: Any) -> None:
    from fastapi.testclient import TestClient

    limits = ServiceLimits(max_image_bytes=1000)
    small_app = create_app(app.state.model, None, limits)
    with TestClient(small_app) as client:
        body = assert_problem(ask(client, image=_flat_png((40, 40)) + b"\0" * 1200), 413,
                              "image-too-large", "image")
        assert "1,000 bytes" in body["detail"]


def test_streamed_body_over_the_limit_is_cut_off(client: Any) -> None:
    def chunks() -> Any:
        for _ in range(100):
            yield b"x" * 10_000

    response = client.post("/answer", content=chunks(),
                           headers={"content-type": "multipart/form-data; boundary=zzz"})
    assert_problem(response, 413, "request-too-large")
    response = client.post("/cypher", content=b"{" + b" " * 1_100_000 + b"}",
                           headers={"content-type": "application/json"})
    assert_problem(response, 413, "request-too-large")


def test_entity_with_neighbours(client: Any) -> None:
    body = client.get("/entities/ex:dog").json()
    assert body["label"] == "dog" and "domestic dog" in body["aliases"]
    by_relation = {(n["relation"], n["direction"], n["id"]) for n in body["neighbours"]}
    assert ("hypernym", "out", "ex:canine") in by_relation
    assert ("hyponym", "out", "ex:puppy") in by_relation
    assert ("antonym", "in", "ex:cat") in by_relation
    assert body["out_degree"] == 3 and not body["truncated"]
    few = client.get("/entities/ex:dog", params={"limit": 1}).json()
    assert len(few["neighbours"]) == 1 and few["truncated"]
    quoted = client.get("/entities/ex%3Aentity").json()
    assert quoted["id"] == "ex:entity" and quoted["properties"]["rank"] == 0
    assert_problem(client.get("/entities/ex:unicorn"), 404, "entity-not-found", "entity_id")
    assert_problem(client.get("/entities/ex:dog", params={"limit": 10_000}), 422,
                   "invalid-request", "limit")


def test_cypher_reads_with_parameters_and_refuses_writes(client: Any) -> None:
    ok = client.post("/cypher", json={"query": "MATCH (e:Entity {id: $id}) RETURN e.label AS "
                                               "label", "params": {"id": "ex:dog"}})
    assert ok.status_code == 200, ok.text
    assert ok.json()["rows"] == [{"label": "dog"}] and ok.json()["backend"] == "rdflib"
    write = client.post("/cypher", json={"query": "CREATE (n:Entity {id: 'x'}) RETURN n"})
    assert_problem(write, 403, "read-only", "query")
    bad = client.post("/cypher", json={"query": "MATCH (n RETURN n"})
    assert_problem(bad, 400, "invalid-query", "query")
    assert_problem(client.post("/cypher", json={"query": ""}), 422, "invalid-request", "query")
    assert_problem(client.post("/cypher", json={"query": "RETURN 1", "limit": 0}), 422,
                   "invalid-request", "limit")
    assert_problem(client.post("/cypher", json={"query": "MATCH (n) RETURN n", "sql": 1}),
                   422, "invalid-request", "sql")
    assert_problem(client.post("/cypher", content=b"{not json",
                               headers={"content-type": "application/json"}),
                   422, "invalid-request")


def test_store_outage_gives_503_while_answers_continue(app: Any) -> None:
    from fastapi.testclient import TestClient

    calls = {"n": 0}

    class FlakyStore:
        backend = "neo4j"

        def inspect(self, query: str, params: Any, *, limit: int, timeout_s: float) -> Any:
            raise StoreUnavailableError("cannot reach Neo4j at bolt://127.0.0.1:1: refused")

        def close(self) -> None:
            pass

    def opener() -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise StoreUnavailableError("cannot reach Neo4j at bolt://127.0.0.1:1: refused")
        return FlakyStore()

    provider = StoreProvider(opener=opener, backend="neo4j", retry_s=0.0)
    with TestClient(create_app(app.state.model, provider, TEST_LIMITS)) as client:
        for _ in range(3):
            response = client.post("/cypher", json={"query": "MATCH (n) RETURN n LIMIT 1"})
            body = assert_problem(response, 503, "store-unavailable")
            assert response.headers["retry-after"] == "1" and "Neo4j" in body["detail"]
            assert ask(client).status_code == 200
        assert calls["n"] == 3  # reopened after each outage
        health = client.get("/healthz").json()
        assert health["status"] == "ok" and health["store"]["status"] == "down"
    calls["n"] = 0
    patient = StoreProvider(opener=opener, backend="neo4j", retry_s=60.0)
    with TestClient(create_app(app.state.model, patient, TEST_LIMITS)) as client:
        first = client.post("/cypher", json={"query": "RETURN 1"})
        again = client.post("/cypher", json={"query": "RETURN 1"})
        assert first.status_code == again.status_code == 503 and calls["n"] == 1
        assert "next attempt in" in again.json()["detail"]  # refused at once, no new attempt
        assert again.headers["retry-after"] == "60"
    with TestClient(create_app(app.state.model, None, TEST_LIMITS)) as client:
        assert_problem(client.post("/cypher", json={"query": "RETURN 1"}), 503,
                       "store-unavailable")
        assert client.get("/healthz").json()["store"]["status"] == "none"


def test_without_a_model_answering_is_503(toy_store: Any) -> None:
    from fastapi.testclient import TestClient

    with TestClient(create_app(None, toy_store)) as client:
        assert_problem(ask(client), 503, "model-unavailable")
        assert_problem(client.get("/entities/ex:dog"), 503, "model-unavailable")
        assert client.get("/healthz").json()["model"] is None


def test_rerank_calls_kgmm_retrieval(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from kgmm.graph.errors import InputError, KGMMError

    seen: dict[str, Any] = {}

    def rerank(query: str, candidates: list[dict[str, Any]], k: int = 10, *, method: str = "kg",
               model: Any = None) -> list[Any]:
        seen.update(query=query, candidates=candidates, k=k, method=method, model=model)
        if query == "bad candidate":
            raise InputError("candidate 'b' has nothing to link", record=1, field="candidate")
        if query == "no retriever":
            raise KGMMError("no kgmm retriever at /nowhere")
        ranked = sorted(candidates, key=lambda c: -c["score"])[:k]
        return [{"id": c["id"], "score": c["score"] + 1, "rank": i + 1}
                for i, c in enumerate(ranked)]

    monkeypatch.setitem(sys.modules, "kgmm.retrieval", types.SimpleNamespace(rerank=rerank))
    request = {"query": "a dog on a bank", "k": 1, "method": "dual", "candidates": [
        {"id": "a", "caption": "a dog", "score": 0.5}, {"id": "b", "image_id": "7", "score": 0.2}]}
    response = client.post("/rerank", json=request)
    assert response.status_code == 200, response.text
    assert response.json() == {"query": "a dog on a bank", "method": "dual",
                               "results": [{"id": "a", "score": 1.5, "rank": 1}]}
    assert seen["candidates"][1] == {"id": "b", "image_id": "7", "score": 0.2}
    assert seen["k"] == 1 and seen["method"] == "dual" and seen["model"] is None
    body = assert_problem(client.post("/rerank", json={**request, "query": "bad candidate"}),
                          422, "invalid-request", "candidates.1")
    assert "nothing to link" in body["detail"]
    assert_problem(client.post("/rerank", json={**request, "query": "no retriever"}), 503,
                   "retriever-unavailable")
    assert_problem(client.post("/rerank", json={"query": "x", "candidates": [{"id": "a"}]}),
                   422, "invalid-request", "candidates.0.score")
    assert_problem(client.post("/rerank", json={**request, "method": "magic"}), 422,
                   "invalid-request", "method")


def test_rerank_without_the_retrieval_module_is_501(client: Any,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "kgmm.retrieval", None)  # import fails
    response = client.post("/rerank", json={"query": "x", "candidates": []})
    assert_problem(response, 501, "not-implemented")


def test_rerank_without_a_retriever_model_is_503(app: Any, tmp_path: Any) -> None:
    pytest.importorskip("kgmm.retrieval")
    from fastapi.testclient import TestClient

    service = create_app(app.state.model, None, TEST_LIMITS, retriever=tmp_path / "missing")
    with TestClient(service) as client:
        response = client.post("/rerank", json={"query": "a dog", "candidates": [
            {"id": "a", "caption": "a dog", "score": 0.5}]})
        body = assert_problem(response, 503, "retriever-unavailable")
        assert "missing" in body["detail"]


def test_http_errors_and_problem_types(client: Any) -> None:
    missing = client.get("/nowhere")
    assert missing.status_code == 404 and missing.headers["content-type"].startswith(PROBLEM)
    assert missing.json()["type"] == "about:blank" and missing.json()["title"] == "Not Found"
    wrong = client.get("/answer")
    assert wrong.status_code == 405 and wrong.json()["title"] == "Method Not Allowed"
    described = client.get("/problems/store-unavailable").json()
    assert described["status"] == 503 and described["type"] == "/problems/store-unavailable"
    assert_problem(client.get("/problems/nothing"), 404, "not-found", "slug")


def test_openapi_schema_documents_routes_and_problems(client: Any) -> None:
    schema = client.get("/openapi.json").json()
    assert {"/answer", "/rerank", "/entities/{entity_id}", "/cypher", "/healthz"} <= set(
        schema["paths"])
    answer = schema["paths"]["/answer"]["post"]
    assert "multipart/form-data" in answer["requestBody"]["content"]
    assert PROBLEM in answer["responses"]["413"]["content"]
    assert PROBLEM in answer["responses"]["422"]["content"]


def test_page_and_bundled_assets_need_no_other_origin(client: Any) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "default-src 'self'" in page.headers["content-security-policy"]
    script = client.get("/static/vendor/cytoscape.min.js")
    assert script.status_code == 200 and len(script.content) > 100_000
    for text in (page.text, client.get("/static/app.js").text):
        assert "http://" not in text and "https://" not in text


def test_concurrent_answers_share_batches_and_one_failure_stays_alone(app: Any) -> None:
    import asyncio
    import time

    import httpx

    real = app.state.model
    batches: list[int] = []

    class SlowSpy:
        parts, path = real.parts, None

        def answer_batch(self, pairs: list[Any], *, top_k: int, evidence: bool) -> list[Any]:
            batches.append(len(pairs))
            time.sleep(0.05)
            if any(question.startswith("boom") for _, question in pairs):
                raise RuntimeError("boom")
            return real.answer_batch(pairs, top_k=top_k, evidence=evidence)

    service = create_app(SlowSpy(), None, TEST_LIMITS)
    questions = ["Is there a dog?", "What is the cat?", "boom?", "How many cars?"] * 3

    async def main() -> list[Any]:
        transport = httpx.ASGITransport(app=service, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await asyncio.gather(*(client.post(
                "/answer", data={"question": q},
                files={"image": ("a.png", png_bytes(seed=i), "image/png")})
                for i, q in enumerate(questions)))

    responses = asyncio.run(main())
    for question, response in zip(questions, responses, strict=True):
        if question.startswith("boom"):
            assert_problem(response, 500, "internal-error")
        else:
            assert response.status_code == 200 and response.json()["question"] == question
    assert max(batches) > 1  # requests that queued up were answered together
