"""``run_vqa_eval``: the run folder, official-accuracy agreement, resume after a crash, errors,
inspection records."""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from kgmm.data.vqa import load_vqa
from kgmm.data.vqa_eval import evaluate_vqa
from kgmm.evaluation import EvaluationError, RunConflictError, VQAEvalConfig, run_vqa_eval
from kgmm.graph.errors import SourceNotFoundError
from kgmm.pipeline import ModelError

PNG = b"\x89PNG\r\n\x1a\n"


def _cfg(toy: dict[str, Path], out: Path, **changes: Any) -> VQAEvalConfig:
    cfg = VQAEvalConfig(data=toy["vqa"], splits=("val2014",), model=toy["model"], out=out,
                        baseline=toy["baseline"], data_dir=toy["home"], batch_size=3)
    return replace(cfg, **changes)


class Crash(Exception):
    pass


def test_run_resume_after_crash_and_conflicts(toy, tmp_path) -> None:
    whole = run_vqa_eval(_cfg(toy, tmp_path / "whole"))
    out = whole.path
    for name in ("run.json", "predictions.jsonl", "metrics.json", "report.md",
                 "results/val2014.json", "results/val2014-baseline.json"):
        assert (out / name).is_file(), name
    for plot in ("accuracy_by_family", "accuracy_by_split", "latency", "reliability"):
        assert (out / "plots" / f"{plot}.png").read_bytes().startswith(PNG)
        assert f"(plots/{plot}.png)" in (out / "report.md").read_text()

    # the official scorer over the official results file agrees with the run's metrics
    metrics = json.loads((out / "metrics.json").read_text())
    dataset = load_vqa(toy["vqa"], "val2014")
    for name, suffix in (("model", ""), ("baseline", "-baseline")):
        official = evaluate_vqa(out / "results" / f"val2014{suffix}.json", dataset)
        mine = metrics["models"][name]
        assert mine["overall"] == official["overall"]
        assert mine["per_answer_type"] == official["perAnswerType"]
        assert set(mine["per_family"]) == {"exists", "count", "category", "part_whole", "all"}
        assert mine["calibration"]["num_bins"] == 10 and 0 <= mine["calibration"]["ece"] <= 1
        assert mine["latency_ms"]["count"] == 7 and mine["latency_ms"]["p50"] > 0
    assert metrics["comparison"]["overall"]["delta"] == pytest.approx(
        metrics["models"]["model"]["overall"] - metrics["models"]["baseline"]["overall"], abs=0.01)
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["status"] == "complete" and manifest["device"]["resolved"] == "cpu"
    assert manifest["seeds"]["torch"] == 0 and manifest["versions"]["torch"]
    assert manifest["models"]["baseline"]["kind"] == "vqa-weights"
    assert manifest["models"]["baseline"]["shares_perception"] is True
    assert "git" in manifest and "KG model" in (out / "report.md").read_text()

    # crash after the first batch, plus a torn line, then resume
    crashed = tmp_path / "crashed"

    def crash_after_first_batch(done: int, total: int, description: str) -> None:
        if done == 3:
            raise Crash

    with pytest.raises(Crash):
        run_vqa_eval(_cfg(toy, crashed), progress=crash_after_first_batch)
    assert len((crashed / "predictions.jsonl").read_text().splitlines()) == 3
    assert json.loads((crashed / "run.json").read_text())["status"] == "running"
    with (crashed / "predictions.jsonl").open("a") as handle:
        handle.write('{"split": "val2014", "question_id": 103, "mod')
    resumed = run_vqa_eval(_cfg(toy, crashed, batch_size=2))
    assert (resumed.answered, resumed.resumed) == (4, 3)
    rows = [json.loads(line) for line in (crashed / "predictions.jsonl").read_text().splitlines()]
    assert [r["question_id"] for r in rows] == list(range(100, 107))
    reference = {r["question_id"]: r for r in map(json.loads, (out / "predictions.jsonl")
                                                   .read_text().splitlines())}
    for row in rows:
        for name in ("model", "baseline"):
            assert row[name]["answer"] == reference[row["question_id"]][name]["answer"]
            assert row[name]["score"] == pytest.approx(reference[row["question_id"]][name]["score"],
                                                       abs=1e-5)
    again = json.loads((crashed / "metrics.json").read_text())
    assert again["models"]["model"]["overall"] == metrics["models"]["model"]["overall"]
    assert len(json.loads((crashed / "run.json").read_text())["sessions"]) == 2

    # another model or split in the same folder is refused (before any model is loaded)
    with pytest.raises(RunConflictError, match="use a new --out, or --overwrite"):
        run_vqa_eval(_cfg(toy, crashed, baseline=None))
    with pytest.raises(RunConflictError, match="data: "):
        run_vqa_eval(_cfg(toy, crashed, data=toy["okvqa"]))


def test_okvqa_layout_two_splits_one_unannotated(toy, tmp_path) -> None:
    result = run_vqa_eval(_cfg(toy, tmp_path / "ok", data=toy["okvqa"], baseline=None,
                               splits=("val2014", "test2015"), batch_size=4, limit=3))
    model = result.metrics["models"]["model"]
    assert model["questions"] == 6 and model["scored"] == 3
    assert set(model["per_split"]) == {"val2014"} and set(model["per_family"]) == {"all"}
    test_results = json.loads((result.path / "results" / "test2015.json").read_text())
    assert [r["question_id"] for r in test_results] == [300, 301, 302]
    assert (result.path / "plots" / "accuracy_by_split.png").is_file()
    assert "No annotations" not in (result.path / "report.md").read_text()  # val2014 is scored


def test_typed_errors_before_anything_is_written(toy, tmp_path) -> None:
    with pytest.raises(SourceNotFoundError, match="test-dev"):
        run_vqa_eval(_cfg(toy, tmp_path / "a", splits=("test-dev",)))
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "kgmm_model.json").write_text("{not json")
    with pytest.raises(ModelError, match="corrupt manifest"):
        run_vqa_eval(_cfg(toy, tmp_path / "b", model=broken))
    with pytest.raises(ModelError, match="neither a kgmm model directory"):
        run_vqa_eval(_cfg(toy, tmp_path / "c", baseline=toy["vqa"]))
    assert not any((tmp_path / n).exists() for n in "abc")
    if not torch.cuda.is_available():
        with pytest.raises(EvaluationError, match="no CUDA device"):
            run_vqa_eval(_cfg(toy, tmp_path / "d", device="cuda", baseline=None, limit=1))


class _FakeStore:
    def __init__(self) -> None:
        self.written: list[Any] = []

    def write_question_records(self, records: list[Any]) -> int:
        self.written.extend(records)
        return len(records)

    def close(self) -> None:
        pass


def test_records_are_wired_to_the_inspection_api(toy, tmp_path, monkeypatch) -> None:
    """With a stand-in ``kgmm.inspection`` and store: the calls the real ones get."""
    calls: list[dict[str, Any]] = []
    fake = types.ModuleType("kgmm.inspection")

    def record_from_answer(answer, *, question_id, image, model, correct=None, run=None,
                           accuracy=None):
        calls.append({"answer": answer, "question_id": question_id, "image": image,
                      "model": model, "correct": correct, "run": run, "accuracy": accuracy})
        return question_id

    fake.record_from_answer = record_from_answer  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "kgmm.inspection", fake)
    import kgmm.graph.stores as stores

    opened: list[tuple[str, Any]] = []
    store = _FakeStore()
    monkeypatch.setattr(stores, "open_store", lambda backend, **kw: opened.append(
        (backend, kw)) or store)
    monkeypatch.setattr("kgmm.evaluation.vqa.RECORD_CHUNK", 2)
    result = run_vqa_eval(_cfg(toy, tmp_path / "rec", records=True, limit=3, baseline=None))
    assert opened[0][0] == "rdflib" and opened[0][1]["data_dir"] == toy["home"]
    assert result.records_written == 3 == len(calls) == len(store.written)
    first = calls[0]
    assert first["question_id"] == "100" and first["run"] == result.run.run_id
    assert first["answer"].question == "Is there a dog?" and first["image"].endswith(".jpg")
    assert first["answer"].evidence is not None  # evidence is stored when records are on
    assert isinstance(first["correct"], bool) and 0 <= first["accuracy"] <= 1
    assert first["model"] == str(toy["model"].resolve())


def test_record_ids_disambiguate_splits() -> None:
    from kgmm.evaluation.vqa import record_ids

    assert record_ids([{"split": "a", "question_id": 1}, {"split": "b", "question_id": 2}]) == [
        "1", "2"]
    assert record_ids([{"split": "a", "question_id": 1}, {"split": "b", "question_id": 1}]) == [
        "a:1", "b:1"]


@pytest.mark.skipif(importlib.util.find_spec("kgmm.inspection") is None,
                    reason="kgmm.inspection (record_from_answer) is not in this tree yet")
def test_records_reach_the_embedded_store(toy, tmp_path) -> None:
    from kgmm.graph.stores import open_store
    from kgmm.inspection import inspect_question

    from ..graph.toy_kg import toy_graph

    home = tmp_path / "home"
    store = open_store("rdflib", data_dir=home)
    try:
        store.import_data(toy_graph())
    finally:
        store.close()
    result = run_vqa_eval(_cfg(toy, tmp_path / "real", records=True, limit=2, data_dir=home))
    assert result.records_written == 2  # the model's answers (not the baseline's)
    store = open_store("rdflib", data_dir=home)
    try:
        seen = inspect_question(store, "101")
    finally:
        store.close()
    row = json.loads((result.path / "predictions.jsonl").read_text().splitlines()[1])
    assert seen.question["answer"] == row["model"]["answer"]


def test_records_without_the_inspection_api_fail_early(toy, tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "kgmm.inspection", None)  # import raises ImportError
    with pytest.raises(EvaluationError, match=r"kgmm\.inspection"):
        run_vqa_eval(_cfg(toy, tmp_path / "x", records=True))
    assert not (tmp_path / "x").exists()
