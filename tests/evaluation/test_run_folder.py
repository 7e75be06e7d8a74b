"""Run folders: crash-safe JSONL, identity checks on resume, provenance."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from kgmm.evaluation import run_folder as rf
from kgmm.evaluation.run_folder import PredictionLog, RunConflictError, RunFolder
from kgmm.graph.errors import InputError


def test_prediction_log_drops_and_repairs_a_torn_last_line(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path / "p.jsonl")
    assert log.read() == [] and log.repair() == 0
    assert log.append([{"id": 1}, {"id": 2}]) == 2
    with log.path.open("a") as handle:
        handle.write('{"id": 3, "answ')  # the crash
    assert [r["id"] for r in log.read()] == [1, 2]
    assert log.repair() == len('{"id": 3, "answ')
    log.append([{"id": 3}])
    assert [r["id"] for r in log.read()] == [1, 2, 3]
    assert log.done_keys(lambda r: r["id"]) == {1, 2, 3}
    log.path.write_text('{"id": 1}\nnot json\n{"id": 2}\n')
    with pytest.raises(InputError, match=r"p\.jsonl:2"):
        log.read()


def test_open_resume_conflict_and_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "run"
    run = RunFolder.open(out, kind="t", identity={"model": "abc"}, config={"batch": 1},
                         seeds={"seed": 0}, command=["kgmm", "eval"])
    assert not run.resumed and run.manifest["status"] == "running"
    run.predictions.append([{"q": 1}])
    run.finish(overall=1.0)
    again = RunFolder.open(out, kind="t", identity={"model": "abc"}, config={"batch": 8})
    assert again.resumed and again.run_id == run.run_id
    assert len(again.manifest["sessions"]) == 2 and again.manifest["config"] == {"batch": 8}
    assert again.predictions.read() == [{"q": 1}]
    with pytest.raises(RunConflictError, match=r"model: \"abc\" here, \"xyz\" requested.*--out"):
        RunFolder.open(out, kind="t", identity={"model": "xyz"})
    fresh = RunFolder.open(out, kind="t", identity={"model": "xyz"}, overwrite=True)
    assert not fresh.resumed and fresh.predictions.read() == []

    stranger = tmp_path / "photos"
    stranger.mkdir()
    (stranger / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(RunConflictError, match="not a kgmm run folder"):
        RunFolder.open(stranger, kind="t", identity={}, overwrite=True)
    assert (stranger / "holiday.jpg").exists()


def test_provenance_is_recorded_and_git_absence_tolerated(tmp_path: Path, monkeypatch) -> None:
    run = RunFolder.open(tmp_path / "r", kind="t", identity={})
    manifest = json.loads((tmp_path / "r" / "run.json").read_text())
    assert manifest["versions"]["python"] and "torch" in manifest["versions"]
    assert "platform" in manifest["machine"] and run.manifest["git"] == manifest["git"]
    assert rf.git_commit(tmp_path) is None  # not a checkout

    def no_git(*args, **kwargs):
        raise FileNotFoundError("git")

    monkeypatch.setattr(subprocess, "run", no_git)
    assert rf.git_commit() is None


def test_fingerprint_follows_content_and_skips_kg(tmp_path: Path) -> None:
    (tmp_path / "kg").mkdir()
    (tmp_path / "kg" / "big.bin").write_bytes(b"1")
    (tmp_path / "w.json").write_text("{}")
    first = rf.fingerprint(tmp_path)
    (tmp_path / "kg" / "big.bin").write_bytes(b"2")
    assert rf.fingerprint(tmp_path) == first
    (tmp_path / "w.json").write_text("{ }")
    assert rf.fingerprint(tmp_path) != first
