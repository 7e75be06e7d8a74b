"""EmbeddingIndex (exact and FAISS search, save/load, bad files, mismatches) and the
ranking metrics."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kgmm.graph.errors import SnapshotError
from kgmm.reasoning.retrieval.index import (
    INDEX_FILE,
    VECTORS_FILE,
    EmbeddingIndex,
    IndexFileError,
    IndexMismatchError,
)
from kgmm.reasoning.retrieval.metrics import mean_metrics, query_metrics


def _vectors(n: int = 300, d: int = 16, seed: int = 0) -> torch.Tensor:
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=1)


def test_exact_search_matches_brute_force_across_chunks() -> None:
    vecs, queries = _vectors(), _vectors(5, seed=1)
    index = EmbeddingIndex(vecs, [f"img{i}" for i in range(300)], kind="image")
    scores, pos = index.search(queries, k=7, chunk=64)  # several chunks merged
    expected = (queries @ vecs.T).topk(7, dim=1)
    assert np.array_equal(pos, expected.indices.numpy())
    assert np.allclose(scores, expected.values.numpy(), atol=1e-6)
    assert index.search(queries[0], k=1000)[1].shape == (1, 300)  # k capped at N


def test_faiss_flat_equals_exact_and_ivf_finds_the_nearest() -> None:
    pytest.importorskip("faiss")
    vecs, queries = _vectors(), _vectors(5, seed=1)
    exact = EmbeddingIndex(vecs, list(range(300)), kind="image")
    flat = EmbeddingIndex(vecs, list(range(300)), kind="image", backend="faiss")
    assert np.array_equal(exact.search(queries, 5)[1], flat.search(queries, 5)[1])
    ivf = EmbeddingIndex(vecs, list(range(300)), kind="image", backend="faiss", nlist=8,
                         nprobe=8)  # every list probed: exact
    assert np.array_equal(exact.search(vecs[:10], 1)[1][:, 0], np.arange(10))
    assert np.array_equal(ivf.search(vecs[:10], 1)[1][:, 0], np.arange(10))


def test_save_load_round_trip_without_pickle(tmp_path: Path) -> None:
    vecs = _vectors(20)
    payload = [{"path": f"{i}.jpg", "concepts": []} for i in range(20)]
    index = EmbeddingIndex(vecs, [10 + i for i in range(20)], kind="image", model="abc",
                           encoder="efficientnet-lite0@224", payload=payload)
    index.save(tmp_path / "idx")
    assert sorted(p.name for p in (tmp_path / "idx").iterdir()) == [VECTORS_FILE, INDEX_FILE]
    loaded = EmbeddingIndex.load(tmp_path / "idx", model="abc")
    assert loaded.ids == index.ids and loaded.payload[3] == {"path": "3.jpg", "concepts": []}
    assert np.array_equal(loaded.matrix, index.matrix)
    assert np.array_equal(loaded.search(vecs[:3], 2)[1], index.search(vecs[:3], 2)[1])


def test_mismatched_dimension_and_model_are_refused(tmp_path: Path) -> None:
    index = EmbeddingIndex(_vectors(10, d=16), list(range(10)), kind="image", model="m1",
                           encoder="efficientnet-lite0@224")
    with pytest.raises(IndexMismatchError, match=r"dimension 8.*index has 16"):
        index.search(torch.randn(2, 8))
    with pytest.raises(IndexMismatchError, match="model m1, not m2"):
        index.check_model("m2")
    with pytest.raises(IndexMismatchError, match="encoder"):
        index.check_model("m1", "resnet50@224")
    index.save(tmp_path / "idx")
    with pytest.raises(IndexMismatchError):
        EmbeddingIndex.load(tmp_path / "idx", model="other")
    assert issubclass(IndexMismatchError, SnapshotError)


@pytest.mark.parametrize("damage", ["truncate_vectors", "flip_vectors", "bad_json",
                                    "missing", "count"])
def test_corrupt_index_files_raise_index_file_error(tmp_path: Path, damage: str) -> None:
    EmbeddingIndex(_vectors(10), list(range(10)), kind="image").save(tmp_path / "idx")
    vec, meta = tmp_path / "idx" / VECTORS_FILE, tmp_path / "idx" / INDEX_FILE
    if damage == "truncate_vectors":
        vec.write_bytes(vec.read_bytes()[:100])
    elif damage == "flip_vectors":
        data = bytearray(vec.read_bytes())
        data[-5] ^= 0xFF
        vec.write_bytes(bytes(data))
    elif damage == "bad_json":
        meta.write_text("{not json")
    elif damage == "missing":
        vec.unlink()
    else:
        m = json.loads(meta.read_text())
        m["count"] = 11
        meta.write_text(json.dumps(m))
    with pytest.raises(IndexFileError, match="idx"):
        EmbeddingIndex.load(tmp_path / "idx")


def test_query_metrics_values() -> None:
    m = query_metrics(["a", "b", "c", "d"], {"c", "d"})
    assert m["R@1"] == 0.0 and m["R@5"] == 1.0 and m["MRR"] == pytest.approx(1 / 3)
    dcg = 1 / math.log2(4) + 1 / math.log2(5)
    assert m["nDCG@10"] == pytest.approx(dcg / (1 + 1 / math.log2(3)))
    assert query_metrics(["x"], {"y"})["MRR"] == 0.0
    avg = mean_metrics([(["a", "b"], {"a"}), (["a", "b"], {"b"}), (["a"], set())])
    assert avg["R@1"] == 50.0 and avg["MRR"] == 75.0 and avg["queries"] == 2
    assert avg["skipped"] == 1
