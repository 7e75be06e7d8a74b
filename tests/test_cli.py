"""The ``kgmm`` command line, run in-process through the real entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


def kgmm(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kgmm.cli", *args, "--data-dir", str(data_dir)],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("home")
    result = kgmm("kg", "import", str(FIXTURES / "tsv" / "triples.tsv"), data_dir=home)
    assert result.returncode == 0, result.stderr
    return home


def test_import_stats_compile_subgraph(home: Path) -> None:
    stats = kgmm("kg", "stats", data_dir=home)
    assert stats.returncode == 0
    assert "entities" in stats.stdout and "triples" in stats.stdout
    compiled = kgmm("kg", "compile", data_dir=home)
    assert compiled.returncode == 0, compiled.stderr
    assert (home / "compiled" / "default.json").exists()
    sub = kgmm("kg", "subgraph", "ex:dog", "--hops", "1", data_dir=home)
    assert sub.returncode == 0, sub.stderr
    assert "isA" in sub.stdout


def test_inspect_with_parameters_as_json(home: Path) -> None:
    result = kgmm("kg", "inspect", "MATCH (a:Entity {id: $id})-[r]->(b) RETURN type(r), b.id "
                  "ORDER BY b.id", "--param", "id=ex:dog", "--json", data_dir=home)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert {"type(r)": "isA", "b.id": "ex:animal"} in rows
    assert {"type(r)": "chases", "b.id": "ex:cat"} in rows


def test_errors_are_one_line_with_status_2(home: Path, tmp_path: Path) -> None:
    write = kgmm("kg", "inspect", "MATCH (n) DETACH DELETE n", data_dir=home)
    assert write.returncode == 2
    assert "ReadOnlyViolationError" in write.stderr and "Traceback" not in write.stderr
    bad = kgmm("kg", "import", str(FIXTURES / "tsv" / "malformed.tsv"), data_dir=home)
    assert bad.returncode == 2
    assert "malformed.tsv:" in bad.stderr and "Traceback" not in bad.stderr
    missing = kgmm("kg", "subgraph", "ex:dog", data_dir=tmp_path)
    assert missing.returncode == 2 and "kgmm kg compile" in missing.stderr
    after = kgmm("kg", "stats", data_dir=home)
    assert after.stdout == kgmm("kg", "stats", data_dir=home).stdout  # store unchanged


def test_export_round_trips_through_import(home: Path, tmp_path: Path) -> None:
    out = tmp_path / "kg.ttl"
    result = kgmm("kg", "export", str(out), data_dir=home)
    assert result.returncode == 0, result.stderr
    other = tmp_path / "other"
    again = kgmm("kg", "import", str(out), data_dir=other)
    assert again.returncode == 0, again.stderr
    from kgmm.graph.stores.embedded import EmbeddedStore

    first, second = EmbeddedStore(data_dir=home).export(), EmbeddedStore(data_dir=other).export()
    assert sorted(first.entities, key=lambda e: e.id) == sorted(second.entities,
                                                                key=lambda e: e.id)
    assert set(first.triples) == set(second.triples)


def test_printed_answer_shows_relations_and_bracketed_labels(monkeypatch) -> None:
    """Evidence paths print as ``a-[relation]->b``: rich must not take ``[relation]`` (or a
    label with brackets) for markup and drop it."""
    import io

    from rich.console import Console

    import kgmm.cli as cli
    from kgmm.pipeline import Alternative, Answer, Evidence, EvidencePath, LinkedEntity

    out = io.StringIO()
    monkeypatch.setattr(cli, "console", Console(file=out, width=200, color_system=None))
    answer = Answer(
        text="plant", entity_id="wn:plant.n.02", score=0.9,
        alternatives=[Alternative("tree [woody]", 0.1)],
        evidence=Evidence(
            linked_entities=[LinkedEntity("wn:tree.n.01", "tree [bold]", 1.0, "image",
                                          "x=0.23,y=0.71", 0)],
            subgraph_nodes=3, subgraph_edges=2, top_nodes=[],
            paths=[EvidencePath(["object#0", "wn:tree.n.01", "wn:plant.n.02"],
                                ["depicts", "ancestor"], 1.5e-3)],
            score_terms=[("graph reasoning", -1.25), ("largest x-rank of its objects", 4.5)]),
        question="What kind of thing is the object on the left?")
    cli._print_answer(answer)
    text = out.getvalue()
    assert "object#0-[depicts]->wn:tree.n.01-[ancestor]->wn:plant.n.02" in text
    assert "path (score 0.0015)" in text
    assert "tree [woody]" in text and "tree [bold]" in text
    assert "answer logit = − 1.25 (graph reasoning) + 4.50 (largest x-rank of its objects)" \
        in text
