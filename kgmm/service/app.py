"""The FastAPI application: ``create_app(model=..., store=..., limits=...)``.

Routes: ``POST /answer`` (multipart image + question), ``POST /rerank``, ``GET /entities/{id}``,
``POST /cypher`` (read-only), ``GET /healthz``, the page at ``/`` and its files under
``/static``; ``/openapi.json`` and ``/docs`` come from FastAPI. Every error is RFC 9457
problem details (see :mod:`kgmm.service.problems`).

Answering runs on the model's compiled KG in one worker thread (the model is not re-entrant
and the CPU is the bottleneck), batching the questions that queued up meanwhile; JSON routes
run in FastAPI's thread pool. The store is only used by ``/cypher`` and is opened lazily, so
the service starts and answers without it.
"""

# no "from __future__ import annotations": FastAPI reads the route annotations, some of which
# use the limits given to create_app.

import asyncio
import contextlib
import math
import time
import weakref
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, File, Form, Query, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from kgmm.graph.errors import (
    QueryError,
    ReadOnlyViolationError,
    StoreError,
    StoreUnavailableError,
)
from kgmm.reasoning.inputs import MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS, MAX_QUESTION_CHARS

from . import schemas
from .middleware import BodyLimitMiddleware
from .problems import PROBLEM_MEDIA_TYPE, PROBLEM_TYPES, Problem, install_problem_handlers
from .store import StoreProvider
from .views import answer_view, entity_view, plain

STATIC_DIR = Path(str(resources.files("kgmm.service") / "static"))
_PAGE_CSP = ("default-src 'self'; img-src 'self' blob: data:; style-src 'self' 'unsafe-inline'; "
             "script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
             "frame-ancestors 'none'")


@dataclass(frozen=True)
class ServiceLimits:
    """Input limits of the service (the image and question limits default to the library's)."""

    max_image_bytes: int = MAX_IMAGE_BYTES
    max_image_pixels: int = MAX_IMAGE_PIXELS
    max_question_chars: int = MAX_QUESTION_CHARS
    max_top_k: int = 20
    max_json_bytes: int = 1024 * 1024
    max_neighbours: int = 200
    max_pending_answers: int = 256
    max_batch: int = 16
    inspect_concurrency: int = 4


_IMAGE_ENCODING = {"requestBody": {"content": {"multipart/form-data": {"encoding": {
    "image": {"contentType": "image/png, image/jpeg, image/webp, image/gif, image/bmp"}}}}}}


def _problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {s: {"model": schemas.ProblemDetails, "description": _describe(s),
                "content": {PROBLEM_MEDIA_TYPE: {"schema": {
                    "$ref": "#/components/schemas/ProblemDetails"}}}} for s in statuses}


def _describe(status: int) -> str:
    kinds = [p.title for p in PROBLEM_TYPES.values() if p.status == status]
    return "; ".join(kinds) or "Error"


class _AnswerWorker:
    """Answers in one worker thread, batching whatever queued up while the previous batch ran.

    Nothing waits for a batch to fill: under light load every batch has one question; under
    heavy load the reasoner's forward pass is shared by up to ``max_batch`` questions.
    """

    def __init__(self, model: Any, max_pending: int, max_batch: int) -> None:
        self.model = model
        self.max_pending = max_pending
        self.max_batch = max(1, max_batch)
        self._waiting: list[tuple[Any, str, int, asyncio.Future[Any]]] = []
        self._in_flight = 0
        self._drainer: asyncio.Task[None] | None = None
        self._pool: ThreadPoolExecutor | None = None

    @property
    def pending(self) -> int:
        return len(self._waiting) + self._in_flight

    def pool(self) -> ThreadPoolExecutor:
        if self._pool is None:  # (re)created, so an app can be started again after shutdown
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kgmm-answer")
        return self._pool

    async def answer(self, image: Any, question: str, top_k: int) -> Any:
        if self.pending >= self.max_pending:
            raise Problem("overloaded", f"{self.pending} answers are queued; retry shortly",
                          headers={"Retry-After": "1"})
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.append((image, question, top_k, future))
        if self._drainer is None or self._drainer.done():
            # a task of its own: a client that disconnects cannot stop the others' answers
            self._drainer = asyncio.ensure_future(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._waiting:
            batch = self._waiting[:self.max_batch]
            del self._waiting[:self.max_batch]
            self._in_flight = len(batch)
            try:
                for top_k in sorted({item[2] for item in batch}):
                    await self._run([item for item in batch if item[2] == top_k], top_k)
            finally:
                self._in_flight = 0

    async def _run(self, items: list[tuple[Any, str, int, asyncio.Future[Any]]],
                   top_k: int) -> None:
        loop = asyncio.get_running_loop()
        items = [item for item in items if not item[3].done()]  # skip cancelled requests
        if not items:
            return
        pairs = [(image, question) for image, question, _, _ in items]
        try:
            answers = await loop.run_in_executor(self.pool(), lambda: self.model.answer_batch(
                pairs, top_k=top_k, evidence=True))
        except Exception as exc:
            if len(items) == 1:
                if not items[0][3].done():
                    items[0][3].set_exception(exc)
                return
            for item in items:  # one bad item must not fail the others: one by one
                await self._run([item], top_k)
            return
        for (_, _, _, future), answer in zip(items, answers, strict=True):
            if not future.done():
                future.set_result(answer)

    def warm_up(self) -> None:
        """One throw-away answer, so the first user does not pay for lazy initialisation."""
        from PIL import Image

        with contextlib.suppress(Exception):
            self.pool().submit(self.model.answer, Image.new("RGB", (64, 64), "white"),
                               "What is this?").result()

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


def create_app(model: Any = None, store: Any = None, limits: ServiceLimits | None = None, *,
               retriever: Any = None, warm_up: bool = False, title: str = "kgmm") -> FastAPI:
    """The kgmm HTTP service.

    ``model``: a loaded :class:`kgmm.KGMM` (None: ``/answer`` and ``/entities`` answer 503).
    ``store``: an open store, a zero-argument callable that opens one (reopened after an
    outage), or None (``/cypher`` answers 503). ``retriever``: what ``/rerank`` passes to
    ``kgmm.rerank(model=...)`` (a retriever, its directory or name; None: kgmm's default,
    loaded on first use). ``warm_up``: answer one blank image at start.
    """
    import kgmm

    limits = limits or ServiceLimits()
    provider = store if isinstance(store, StoreProvider) else (
        StoreProvider(opener=store) if callable(store) and not hasattr(store, "inspect")
        else StoreProvider(store))
    worker = (_AnswerWorker(model, limits.max_pending_answers, limits.max_batch)
              if model is not None else None)
    inspect_slots: weakref.WeakKeyDictionary[Any, asyncio.Semaphore] = (
        weakref.WeakKeyDictionary())  # one per event loop (tests run several)
    retry_after = str(max(1, math.ceil(provider.retry_s)))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if worker is not None and warm_up:
            await asyncio.get_running_loop().run_in_executor(None, worker.warm_up)
        yield
        if worker is not None:
            worker.close()
        provider.close()

    app = FastAPI(
        title=title, version=kgmm.__version__, lifespan=lifespan,
        description="Answer questions about images with a knowledge graph, with evidence. "
                    "Errors are RFC 9457 problem details (application/problem+json).")
    app.state.limits = limits
    app.state.model = model
    app.state.store = provider
    install_problem_handlers(app)
    answer_body_limit = limits.max_image_bytes + 64 * 1024

    def body_limit(path: str) -> int:
        return answer_body_limit if path.rstrip("/") == "/answer" else limits.max_json_bytes

    app.add_middleware(BodyLimitMiddleware, limit_for=body_limit)  # type: ignore[arg-type]
    _problem_only_openapi(app)
    kg = model.parts.kg if model is not None else None

    def require_model() -> Any:
        if model is None:
            raise Problem("model-unavailable", "the service was started without a model")
        return model

    # -- page ----------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html",
                            headers={"Content-Security-Policy": _PAGE_CSP,
                                     "Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    # -- answering -----------------------------------------------------------------------
    @app.post("/answer", response_model=schemas.AnswerOut, tags=["answering"],
              responses=_problem_responses(400, 413, 422, 503), openapi_extra=_IMAGE_ENCODING)
    async def answer(
        image: Annotated[UploadFile, File(description="the image (JPEG, PNG, WebP, ...)")],
        question: Annotated[str, Form(min_length=1, max_length=limits.max_question_chars,
                                      pattern=r"\S",
                                      description="the question about the image")],
        top_k: Annotated[int, Form(ge=1, le=limits.max_top_k,
                                   description="the answer plus up to top_k - 1 "
                                               "alternatives")] = 5,
    ) -> JSONResponse:
        """Answer a question about an image, with score, alternatives, evidence and a graph."""
        from kgmm.reasoning.inputs import (
            ImageInputError,
            QuestionInputError,
            check_question,
        )

        loaded = require_model()
        try:
            text = check_question(question, max_chars=limits.max_question_chars)
        except QuestionInputError as exc:
            raise Problem("invalid-question", exc.reason, field="question") from None
        data = await image.read(limits.max_image_bytes + 1)
        if len(data) > limits.max_image_bytes:
            raise Problem("image-too-large", f"the image is larger than "
                          f"{limits.max_image_bytes:,} bytes", field="image")
        name = image.filename or "image"
        try:
            picture = await asyncio.get_running_loop().run_in_executor(
                None, _decode_image, data, name, limits.max_image_pixels)
        except ImageInputError as exc:
            raise Problem(_image_problem(exc), exc.reason, field="image") from None
        started = time.perf_counter()
        assert worker is not None
        result = await worker.answer(picture, text, top_k)
        elapsed = (time.perf_counter() - started) * 1000.0
        return JSONResponse(answer_view(result, loaded.parts.kg, elapsed))

    # -- entities ------------------------------------------------------------------------
    @app.get("/entities/{entity_id:path}", response_model=schemas.EntityOut, tags=["graph"],
             responses=_problem_responses(404, 422, 503))
    def entity(
        entity_id: Annotated[str, PathParam(description="entity id, e.g. wn:dog.n.01",
                                            examples=["wn:dog.n.01"])],
        limit: Annotated[int, Query(ge=0, le=limits.max_neighbours,
                                    description="most neighbours to list")] = 50,
    ) -> dict[str, Any]:
        """An entity of the model's compiled KG with its neighbours (no store needed)."""
        require_model()
        index = kg.find_index(entity_id) if entity_id else None
        if index is None:
            raise Problem("entity-not-found", f"no entity {entity_id!r} in the knowledge graph",
                          field="entity_id")
        return entity_view(kg, index, limit)

    # -- inspection ----------------------------------------------------------------------
    @app.post("/cypher", response_model=schemas.CypherOut, tags=["graph"],
              responses=_problem_responses(400, 403, 413, 422, 503, 504))
    async def cypher(body: schemas.CypherIn) -> dict[str, Any]:
        """Run a read-only Cypher query on the store; user values only as ``params``."""
        if not provider.configured:
            raise Problem("store-unavailable", "no knowledge-graph store is configured; start "
                          "the service with --backend rdflib or neo4j")
        loop = asyncio.get_running_loop()
        if loop not in inspect_slots:
            inspect_slots[loop] = asyncio.Semaphore(limits.inspect_concurrency)
        slots = inspect_slots[loop]
        async with slots:
            try:
                result = await loop.run_in_executor(None, lambda: provider.inspect(
                    body.query, body.params, limit=body.limit, timeout_s=body.timeout_s))
            except ReadOnlyViolationError as exc:
                raise Problem("read-only", str(exc), field="query") from None
            except QueryError as exc:
                if "timed out" in str(exc):
                    raise Problem("query-timeout", str(exc), field="timeout_s") from None
                raise Problem("invalid-query", str(exc), field="query") from None
            except StoreUnavailableError as exc:
                raise Problem("store-unavailable", str(exc),
                              headers={"Retry-After": retry_after}) from None
            except StoreError as exc:
                raise Problem("store-error", str(exc), headers={"Retry-After": retry_after}
                              ) from None
        return {"columns": list(result.columns), "rows": plain(list(result.rows)),
                "truncated": bool(result.truncated), "backend": result.backend or
                (provider.backend or ""), "notes": list(result.notes)}

    # -- re-ranking ----------------------------------------------------------------------
    @app.post("/rerank", response_model=schemas.RerankOut, tags=["retrieval"],
              responses=_problem_responses(400, 413, 422, 501, 503))
    def rerank(body: schemas.RerankIn) -> dict[str, Any]:
        """Re-rank first-stage retrieval candidates for a text query with the knowledge graph
        (``kgmm.rerank``); each result carries its evidence."""
        from kgmm.graph.errors import InputError, KGMMError

        try:
            from kgmm.retrieval import rerank as rerank_fn
        except ImportError:
            raise Problem("not-implemented", "re-ranking is not available in this kgmm "
                          "installation (kgmm.retrieval.rerank is missing)") from None
        candidates = []
        for candidate in body.candidates:
            item: dict[str, Any] = {"id": candidate.id, "score": candidate.score}
            if candidate.caption is not None:
                item["caption"] = candidate.caption
            if candidate.image_id is not None:
                item["image_id"] = candidate.image_id
            candidates.append(item)
        options: dict[str, Any] = {"method": body.method}
        if retriever is not None:
            options["model"] = retriever
        try:
            ranked = rerank_fn(body.query, candidates, k=body.k, **options)
        except InputError as exc:
            field = exc.field if exc.field in ("query", "k", "method") else (
                f"candidates.{exc.record}" if isinstance(exc.record, int) else exc.field)
            raise Problem("invalid-request", exc.reason, field=field) from None
        except KGMMError as exc:  # no retriever model, or one that cannot be loaded
            raise Problem("retriever-unavailable", str(exc)) from None
        return {"query": body.query, "method": body.method,
                "results": [plain(_as_dict(r)) for r in _items(ranked)]}

    # -- health and problem types --------------------------------------------------------
    @app.get("/healthz", response_model=schemas.Health, tags=["service"])
    def healthz() -> dict[str, Any]:
        """Liveness: 200 while the service can answer; says whether the store is reachable."""
        status, detail = provider.status()
        info = None
        if model is not None:
            info = {"path": str(model.path) if model.path else None,
                    "kg_content_hash": kg.content_hash, "entities": kg.num_nodes,
                    "relations": kg.num_relations}
        return {"status": "ok", "model": info, "version": kgmm.__version__,
                "store": {"backend": provider.backend, "status": status, "detail": detail}}

    @app.get("/problems/{slug}", response_model=schemas.ProblemTypeInfo, tags=["service"],
             responses=_problem_responses(404))
    def problem_type(slug: Annotated[str, PathParam(examples=["store-unavailable"])]
                     ) -> dict[str, Any]:
        """What a problem ``type`` URI means."""
        kind = PROBLEM_TYPES.get(slug)
        if kind is None:
            raise Problem("not-found", f"no problem type {slug!r}", field="slug")
        return {"type": kind.uri, "slug": kind.slug, "title": kind.title, "status": kind.status,
                "description": kind.description}

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(status_code=204)

    return app


def _problem_only_openapi(app: FastAPI) -> None:
    """Document every error response as ``application/problem+json`` with ProblemDetails
    (FastAPI would also list ``application/json`` and its own 422 body)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        problem = {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                for status, response in operation.get("responses", {}).items():
                    if status.isdigit() and int(status) >= 400:
                        response["content"] = {PROBLEM_MEDIA_TYPE: problem}
                        if status == "422":
                            response["description"] = _describe(422)
        components = schema.get("components", {}).get("schemas", {})
        for unused in ("HTTPValidationError", "ValidationError"):
            components.pop(unused, None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _decode_image(data: bytes, name: str, max_pixels: int) -> Any:
    from kgmm.reasoning.inputs import load_image

    return load_image(data, max_pixels=max_pixels, max_bytes=len(data) + 1, name=name)


def _image_problem(exc: Exception) -> str:
    return "image-too-large" if "pixels, more than" in str(exc) else "invalid-image"


def _items(ranked: Any) -> list[Any]:
    for attribute in ("results", "items", "candidates"):
        if hasattr(ranked, attribute) and not isinstance(ranked, dict | list | tuple):
            return list(getattr(ranked, attribute))
    return list(ranked)


def _as_dict(item: Any) -> dict[str, Any]:
    import dataclasses

    if isinstance(item, dict):
        return item
    if hasattr(item, "to_dict"):
        return dict(item.to_dict())
    if dataclasses.is_dataclass(item) and not isinstance(item, type):
        return dataclasses.asdict(item)
    if hasattr(item, "model_dump"):
        return dict(item.model_dump())
    if isinstance(item, tuple) and len(item) == 2:
        return {"id": str(item[0]), "score": item[1]}
    return {"value": item}

