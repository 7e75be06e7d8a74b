"""`kgmm inspect question|cypher|queries|run`: Cypher inspection of answered questions.

Records are written by `kgmm eval vqa --records` or the API (`kgmm.inspection`); see
docs/inspection.md for the record schema and the named queries.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from kgmm.cli_common import (
    Backend,
    DataDir,
    Neo4jPassword,
    Neo4jUri,
    Neo4jUser,
    cell_text,
    console,
    open_store_for,
    parse_params,
)

Params = Annotated[list[str] | None, typer.Option("--param", "-p", help="NAME=VALUE, repeatable")]
Limit = Annotated[int, typer.Option(help="row limit")]
Timeout = Annotated[float, typer.Option(help="seconds before the query is stopped")]
AsJson = Annotated[bool, typer.Option("--json", help="print rows as JSON lines")]


def _cell(value: Any) -> str:
    from rich.markup import escape

    return escape(cell_text(value))


def _print_result(result: Any, backend: str, as_json: bool, title: str = "") -> None:
    from rich.table import Table

    if as_json:
        for row in result.rows:
            sys.stdout.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
        return
    heading = f"{title}{len(result.rows)} rows ({backend})"
    table = Table(*result.columns, title=heading + (" — truncated by --limit"
                                                    if result.truncated else ""))
    for row in result.rows:
        table.add_row(*[_cell(row[c]) for c in result.columns])
    console.print(table)


def _raw_params(items: list[str] | None) -> dict[str, Any]:
    """``k=v`` pairs with values kept as text (named queries coerce them to their types)."""
    parse_params(items)  # the same NAME=VALUE checks as everywhere else
    return {key: value for key, _, value in (item.partition("=") for item in items or [])}


def register(app: typer.Typer, groups: dict[str, typer.Typer]) -> None:
    """Add `question`, `cypher`, `queries` and `run` to the `inspect` group."""
    inspect_app = groups["inspect"]

    @inspect_app.command("question")
    def inspect_question_cmd(
        question_id: Annotated[str, typer.Argument(help="the question id of the record")],
        limit: Limit = 100, timeout: Timeout = 10.0, as_json: Annotated[bool, typer.Option(
            "--json", help="print the record as one JSON object")] = False,
        backend: Backend = "rdflib", data_dir: DataDir = None, neo4j_uri: Neo4jUri = None,
        neo4j_user: Neo4jUser = None, neo4j_password: Neo4jPassword = None,
    ) -> None:
        """Show one answered question: its answer, linked entities and evidence edges."""
        from kgmm.inspection import inspect_question

        store = open_store_for(backend, data_dir, neo4j_uri, neo4j_user, neo4j_password)
        try:
            found = inspect_question(store, question_id, limit=limit, timeout_s=timeout)
        finally:
            store.close()
        if as_json:
            sys.stdout.write(json.dumps(found.to_dict(), ensure_ascii=False, default=str) + "\n")
            return
        from rich.table import Table

        q = found.question
        verdict = {True: "[green]correct[/green]", False: "[red]wrong[/red]"}.get(
            q.get("correct"), "not scored")
        console.print(f"[bold]question {_cell(q['id'])}[/bold]: {_cell(q.get('text'))}",
                      highlight=False)
        console.print(f"image {_cell(q.get('image'))}  model {_cell(q.get('model'))}  "
                      f"run {_cell(q.get('run'))}", highlight=False)
        console.print(f"answer [bold]{_cell(q.get('answer'))}[/bold] "
                      f"({_cell(q.get('answer_entity') or 'no entity')}, score "
                      f"{q.get('answer_score', 0):.3f}) — {verdict}", highlight=False)
        linked = Table("link", "entity", "label", "score", "span", title="linked entities")
        for row in found.linked:
            linked.add_row(row["link"], _cell(row["entity"]), _cell(row["label"]),
                           f"{row['score']:.3f}", _cell(row["span"] or ""))
        console.print(linked)
        evidence = Table("source", "relation", "target", "score", title="evidence edges")
        for row in found.evidence:
            evidence.add_row(_cell(row["source"]), _cell(row["relation"]),
                             _cell(row["target"]), f"{row['score']:.3f}")
        console.print(evidence)

    @inspect_app.command("cypher")
    def inspect_cypher(
        query: Annotated[str, typer.Argument(help="a read-only Cypher query "
                                                  "(docs/inspection.md)")],
        param: Params = None, limit: Limit = 100, timeout: Timeout = 10.0,
        as_json: AsJson = False, backend: Backend = "rdflib", data_dir: DataDir = None,
        neo4j_uri: Neo4jUri = None, neo4j_user: Neo4jUser = None,
        neo4j_password: Neo4jPassword = None,
    ) -> None:
        """Run a read-only Cypher query over the KG and the question records.

        Values only as --param NAME=VALUE (read as JSON when they parse: quote ids that look
        like numbers, e.g. --param 'id="42"').
        """
        store = open_store_for(backend, data_dir, neo4j_uri, neo4j_user, neo4j_password)
        try:
            result = store.inspect(query, parse_params(param), limit=limit, timeout_s=timeout)
        finally:
            store.close()
        _print_result(result, backend, as_json)

    @inspect_app.command("queries")
    def inspect_queries(
        as_json: Annotated[bool, typer.Option("--json", help="print the queries as JSON "
                                                             "lines")] = False,
    ) -> None:
        """List the named inspection queries, their parameters and what they answer."""
        from rich.table import Table

        from kgmm.graph.inspection import NAMED_QUERIES

        if as_json:
            for name, q in NAMED_QUERIES.items():
                sys.stdout.write(json.dumps({"name": name, "params": list(q.params),
                                             "description": q.description,
                                             "cypher": q.cypher}) + "\n")
            return
        table = Table("name", "params", "description", title="named inspection queries "
                      "(kgmm inspect run NAME --param k=v)")
        for name, q in NAMED_QUERIES.items():
            table.add_row(name, ", ".join(f"${p}" for p in q.params), _cell(q.description))
        console.print(table)

    @inspect_app.command("run")
    def inspect_run(
        name: Annotated[str, typer.Argument(help="a named query (kgmm inspect queries)")],
        param: Params = None, limit: Limit = 100, timeout: Timeout = 10.0,
        as_json: AsJson = False, backend: Backend = "rdflib", data_dir: DataDir = None,
        neo4j_uri: Neo4jUri = None, neo4j_user: Neo4jUser = None,
        neo4j_password: Neo4jPassword = None,
    ) -> None:
        """Run a named inspection query (parameters as --param NAME=VALUE)."""
        from kgmm.graph.inspection import coerce_params
        from kgmm.inspection import run_named_query

        params = coerce_params(name, _raw_params(param))  # refuse bad input before connecting
        store = open_store_for(backend, data_dir, neo4j_uri, neo4j_user, neo4j_password)
        try:
            result = run_named_query(store, name, params, limit=limit, timeout_s=timeout)
        finally:
            store.close()
        _print_result(result, backend, as_json, title=f"{name}: ")
