"""``kgmm eval vqa`` through the real command line, in-process."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kgmm.cli import app, main


def test_eval_vqa_writes_a_run_folder(toy, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = CliRunner().invoke(app, [
        "eval", "vqa", "--data", str(toy["vqa"]), "--split", "val2014", "--model",
        str(toy["model"]), "--out", str(out), "--limit", "2", "--batch-size", "2",
        "--data-dir", str(toy["home"])])
    assert result.exit_code == 0, result.output
    assert "VQA accuracy" in result.output and "report.md" in result.output
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["status"] == "complete" and manifest["config"]["batch_size"] == 2
    assert len((out / "predictions.jsonl").read_text().splitlines()) == 2


def test_errors_are_one_line_with_status_2(toy, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(sys, "argv", [
        "kgmm", "eval", "vqa", "--data", str(toy["vqa"]), "--split", "test-dev",
        "--model", str(toy["model"]), "--out", str(tmp_path / "run")])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "SourceNotFoundError" in err and "test-dev" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()
