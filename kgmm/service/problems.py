"""Errors as RFC 9457 problem details (``application/problem+json``).

Every error the service returns is a JSON object with ``type`` (a URI naming the kind of
problem; ``/problems/<slug>`` on this service, described at that address), ``title``,
``status``, ``detail`` and, where one input is at fault, ``field``. Request-validation
problems also carry ``errors`` (one entry per invalid input).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("kgmm.service")

PROBLEM_MEDIA_TYPE = "application/problem+json"


@dataclass(frozen=True)
class ProblemType:
    """One documented kind of problem."""

    slug: str
    title: str
    status: int
    description: str

    @property
    def uri(self) -> str:
        return f"/problems/{self.slug}"


PROBLEM_TYPES: dict[str, ProblemType] = {p.slug: p for p in [
    ProblemType("invalid-request", "Invalid request", 422,
                "A field is missing, has the wrong type or is out of range."),
    ProblemType("malformed-request", "Malformed request", 400,
                "The body could not be parsed (e.g. broken multipart data)."),
    ProblemType("invalid-image", "Invalid image", 422,
                "The uploaded file is empty, truncated or not an image Pillow can read."),
    ProblemType("invalid-question", "Invalid question", 422,
                "The question is empty or longer than the service accepts."),
    ProblemType("image-too-large", "Image too large", 413,
                "The image has more bytes or more pixels than the service accepts."),
    ProblemType("request-too-large", "Request too large", 413,
                "The request body is larger than the service accepts."),
    ProblemType("not-found", "Not found", 404, "Nothing is at this address."),
    ProblemType("entity-not-found", "Entity not found", 404,
                "No entity with this id is in the model's knowledge graph."),
    ProblemType("invalid-query", "Invalid query", 400,
                "The Cypher query is not valid, not in the supported subset, or failed."),
    ProblemType("read-only", "Read-only inspection", 403,
                "The query would write; inspection is read-only."),
    ProblemType("query-timeout", "Query timed out", 504,
                "The inspection query ran longer than its timeout."),
    ProblemType("store-unavailable", "Knowledge-graph store unavailable", 503,
                "The store (e.g. the Neo4j server) cannot be reached; answering still works "
                "from the compiled KG. Retry later."),
    ProblemType("store-error", "Knowledge-graph store error", 503,
                "The store refused the request (credentials, settings)."),
    ProblemType("model-unavailable", "No model loaded", 503,
                "The service was started without a model."),
    ProblemType("retriever-unavailable", "No retriever loaded", 503,
                "Re-ranking needs a retriever model (kgmm serve --retriever DIR, or the "
                "default retriever in the data directory)."),
    ProblemType("overloaded", "Service overloaded", 503,
                "Too many answers are queued; retry later."),
    ProblemType("not-implemented", "Not implemented", 501,
                "This kgmm installation does not provide the feature."),
    ProblemType("internal-error", "Internal server error", 500,
                "An unexpected error; the server log has the traceback."),
]}


class Problem(Exception):
    """Raise in a route to answer with a problem-details document."""

    def __init__(self, slug: str, detail: str, *, field: str | None = None,
                 status: int | None = None, headers: dict[str, str] | None = None,
                 **extra: Any) -> None:
        kind = PROBLEM_TYPES[slug]
        self.kind = kind
        self.status = status or kind.status
        self.detail = detail
        self.field = field
        self.headers = headers or {}
        self.extra = extra
        super().__init__(detail)

    def body(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"type": self.kind.uri, "title": self.kind.title,
                                "status": self.status, "detail": self.detail}
        if instance:
            body["instance"] = instance
        if self.field:
            body["field"] = self.field
        body.update(self.extra)
        return body


def problem_response(body: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=body["status"], headers=headers,
                        media_type=PROBLEM_MEDIA_TYPE)


def _http_title(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _field_of(loc: tuple[Any, ...] | list[Any]) -> str | None:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        parts = parts[1:]  # where the input was, not its name
    return ".".join(parts) or None


def install_problem_handlers(app: FastAPI) -> None:
    """Turn every error (ours, validation, HTTP, unexpected) into problem details."""

    @app.exception_handler(Problem)
    async def on_problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc.body(request.url.path), exc.headers)

    @app.exception_handler(RequestValidationError)
    async def on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"field": _field_of(e.get("loc", ())), "message": str(e.get("msg", "")),
                   "type": str(e.get("type", ""))} for e in exc.errors()]
        first = errors[0] if errors else {"field": None, "message": "invalid request"}
        detail = "; ".join(f"{e['field'] or 'request'}: {e['message']}" for e in errors[:5])
        problem = Problem("invalid-request", detail or str(first["message"]),
                          field=first["field"], errors=errors)
        return problem_response(problem.body(request.url.path))

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:  # the body parsers' complaints (multipart, form fields)
            problem = Problem("malformed-request", str(exc.detail))
            return problem_response(problem.body(request.url.path), dict(exc.headers or {}))
        body = {"type": "about:blank", "title": _http_title(exc.status_code),
                "status": exc.status_code, "detail": str(exc.detail),
                "instance": request.url.path}
        return problem_response(body, dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        problem = Problem("internal-error", f"{type(exc).__name__} while handling the request")
        return problem_response(problem.body(request.url.path))
