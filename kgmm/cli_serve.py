"""`kgmm serve`: the HTTP service and its page."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kgmm.cli_common import (
    DataDir,
    Neo4jPassword,
    Neo4jUri,
    Neo4jUser,
    err_console,
    open_store_for,
)


def register(app: typer.Typer, groups: dict[str, typer.Typer]) -> None:
    """Add ``kgmm serve`` to ``app``."""
    app.command("serve")(serve)


def serve(
    host: Annotated[str, typer.Option(help="address to listen on (127.0.0.1: this machine "
                                      "only)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    model: Annotated[Path | None, typer.Option(
        "--model", help="model directory or name (default $KGMM_MODEL, else "
        "<data-dir>/models/default)")] = None,
    retriever: Annotated[Path | None, typer.Option(
        "--retriever", help="retriever directory or name for /rerank (default $KGMM_RETRIEVER, "
        "else <data-dir>/models/default-retriever; loaded on first use)")] = None,
    backend: Annotated[str, typer.Option(
        "--backend", "-b", help="store for /cypher: rdflib (embedded), neo4j or none")] = "rdflib",
    max_image_bytes: Annotated[int | None, typer.Option(
        help="largest image upload in bytes (default 32 MiB)")] = None,
    max_image_pixels: Annotated[int | None, typer.Option(
        help="most image pixels, width × height (default 40 million)")] = None,
    max_question_chars: Annotated[int | None, typer.Option(
        help="longest question in characters (default 1000)")] = None,
    declare: Annotated[list[str] | None, typer.Option(
        help="an answer label the model never saw as an answer (entity id or name); "
        "repeatable")] = None,
    warm_up: Annotated[bool, typer.Option(help="answer one blank image before serving")] = True,
    access_log: Annotated[bool, typer.Option(help="log every request")] = True,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "info",
    data_dir: DataDir = None,
    neo4j_uri: Neo4jUri = None,
    neo4j_user: Neo4jUser = None,
    neo4j_password: Neo4jPassword = None,
) -> None:
    """Serve answers over HTTP (FastAPI) with a page at / and the OpenAPI schema at /docs.

    /answer runs on the model's compiled KG; the store (--backend) is only used by /cypher,
    which answers 503 while the store is unreachable.
    """
    import dataclasses

    import uvicorn

    from kgmm.pipeline import KGMM
    from kgmm.service import ServiceLimits, create_app

    if backend not in ("rdflib", "neo4j", "none"):
        raise typer.BadParameter(f"unknown backend {backend!r}; use rdflib, neo4j or none",
                                 param_hint="--backend")
    overrides = {"max_image_bytes": max_image_bytes, "max_image_pixels": max_image_pixels,
                 "max_question_chars": max_question_chars}
    for name, value in overrides.items():
        if value is not None and value < 1:
            raise typer.BadParameter(f"must be at least 1, got {value}",
                                     param_hint="--" + name.replace("_", "-"))
    limits = dataclasses.replace(ServiceLimits(),
                                 **{k: v for k, v in overrides.items() if v is not None})
    err_console.print("loading the model …")
    loaded = KGMM.load(model, data_dir=data_dir)
    if declare:
        loaded.extend_answer_space(declare)

    def open_store() -> object:
        if backend == "neo4j":  # fail fast: /cypher answers 503 while Neo4j is unreachable
            from kgmm.graph.stores import open_store as open_kg_store

            return open_kg_store("neo4j", uri=neo4j_uri, user=neo4j_user,
                                 password=neo4j_password, connection_timeout_s=2.0,
                                 max_retry_time_s=2.0)
        return open_store_for(backend, data_dir, neo4j_uri, neo4j_user, neo4j_password)

    if retriever is None:
        try:
            from kgmm.retrieval import default_retriever_path

            retriever = default_retriever_path(data_dir)
        except ImportError:  # /rerank then answers 501
            pass
    app = create_app(loaded, None if backend == "none" else open_store, limits,
                     retriever=str(retriever) if retriever is not None else None,
                     warm_up=warm_up)
    err_console.print(f"model {loaded.path} ({loaded.parts.kg.num_nodes:,} entities); "
                      f"page at http://{host}:{port}/ , API docs at http://{host}:{port}/docs")
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=access_log)
