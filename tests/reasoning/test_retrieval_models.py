"""Dual tower and cross-attention scorers: formulas, training on a synthetic matching task,
checkpoints; feature tables; retrieval splits read from COCO captions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from kgmm.graph.errors import InputError, SnapshotError
from kgmm.reasoning.retrieval.cross import (
    AdditiveCrossScorer,
    CrossScorerConfig,
    FeatureRows,
    PairBatch,
    TrainList,
    build_cross_scorer,
    load_cross_scorer,
    save_cross_scorer,
    score_pairs,
    train_cross_scorer,
)
from kgmm.reasoning.retrieval.data import load_retrieval_split
from kgmm.reasoning.retrieval.dual import DualTower, DualTowerConfig, train_dual_tower
from kgmm.reasoning.retrieval.features import FeatureTable, cached

DT, DV = 12, 20


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _task(n: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Paired features: image i is a fixed random linear map of text i plus noise."""
    gen = torch.Generator().manual_seed(seed)
    texts = torch.randn(n, DT, generator=gen)
    mix = torch.randn(DT, DV, generator=torch.Generator().manual_seed(99))
    return texts, texts @ mix + 0.1 * torch.randn(n, DV, generator=gen)


def test_dual_tower_scores_are_cosines_and_training_aligns_pairs(tmp_path: Path) -> None:
    texts, images = _task()
    model = DualTower(DualTowerConfig(text_dim=DT, image_dim=DV, dim=16, hidden=32)).eval()
    s = model.score(texts[:3], images[:5])
    expected = F.normalize(model.text_head(texts[:3]), dim=1) @ \
        F.normalize(model.image_head(images[:5]), dim=1).T
    assert torch.allclose(s, expected, atol=1e-6) and s.abs().max() <= 1 + 1e-6
    losses = train_dual_tower(model, texts, images, [(i, i) for i in range(64)], epochs=15,
                              batch_size=64, lr=1e-2)
    assert losses[-1] < 0.5 * losses[0]
    with torch.no_grad():
        top1 = model.score(texts, images).argmax(1)
    assert (top1 == torch.arange(64)).float().mean() > 0.8
    model.save_pretrained(tmp_path / "dual")
    again = DualTower.from_pretrained(tmp_path / "dual")
    assert torch.allclose(again.score(texts, images), model.score(texts, images))
    assert again.fingerprint() == model.fingerprint()


def test_additive_scorer_formula() -> None:
    cfg = CrossScorerConfig(kind="additive", text_dim=DT, image_dim=DV, hidden=8, dropout=0.0)
    model = AdditiveCrossScorer(cfg).eval()
    t, v = torch.randn(4, DT), torch.randn(4, DV)
    expected = model.w(torch.tanh(model.w_q(model.norm_q(t)) + model.w_c(model.norm_c(v))))
    assert torch.allclose(model(PairBatch(t, v)), expected.squeeze(-1))


@pytest.mark.parametrize("kind", ["additive", "transformer"])
def test_cross_scorers_learn_to_rank_and_round_trip(kind: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    texts, images = _task(48)
    # tokens: the text vector split over 3 "tokens"; patches: the image vector over 4 cells
    t_tokens = texts[:, None, :].repeat(1, 3, 1) + 0.05 * torch.randn(48, 3, DT)
    i_tokens = images[:, None, :].repeat(1, 4, 1) + 0.05 * torch.randn(48, 4, DV)
    trows = FeatureRows(texts, t_tokens, torch.ones(48, 3, dtype=torch.bool))
    irows = FeatureRows(images, i_tokens)
    lists = []
    for i in range(48):
        negatives = [(i + k) % 48 for k in (1, 5, 9, 13, 17)]
        lists.append(TrainList(i, [i, *negatives], [True] + [False] * 5, True))
    cfg = CrossScorerConfig(kind=kind, text_dim=DT, image_dim=DV, hidden=32, patches=4,
                            dropout=0.0)
    model = build_cross_scorer(cfg)
    losses = train_cross_scorer(model, trows, irows, lists, epochs=10, lists_per_step=12,
                                lr=1e-2 if kind == "additive" else 3e-3)
    assert losses[-1] < 0.6 * losses[0]
    hits = 0
    for i in range(48):
        cands = [i, *[(i + k) % 48 for k in (2, 7, 11)]]  # unseen negatives
        s = score_pairs(model, trows, irows, [i] * 4, cands)
        hits += int(s.argmax()) == 0
    assert hits / 48 > 0.6
    save_cross_scorer(model, tmp_path / kind)
    again = load_cross_scorer(tmp_path / kind)
    assert torch.allclose(score_pairs(again, trows, irows, [0, 1], [0, 1]),
                          score_pairs(model, trows, irows, [0, 1], [0, 1]), atol=1e-6)


def test_transformer_refuses_another_patch_count() -> None:
    model = build_cross_scorer(CrossScorerConfig(kind="transformer", text_dim=DT, image_dim=DV,
                                                 hidden=16, patches=4))
    batch = PairBatch(torch.randn(1, DT), torch.randn(1, DV), torch.randn(1, 2, DT),
                      torch.ones(1, 2, dtype=torch.bool), torch.randn(1, 9, DV))
    with pytest.raises(ValueError, match="4 image patches, got 9"):
        model(batch)


def test_feature_tables_round_trip_and_refuse_another_encoder(tmp_path: Path) -> None:
    table = FeatureTable(["a", "b"], torch.randn(2, 4), torch.randn(2, 3, 4).half(),
                         torch.tensor([[1, 1, 0], [1, 0, 0]], dtype=torch.bool), "minilm")
    table.save(tmp_path / "t.safetensors")
    again = FeatureTable.load(tmp_path / "t.safetensors", "minilm")
    assert again.keys == ["a", "b"] and torch.equal(again.mask, table.mask)
    assert torch.equal(again.select(["b"]).pooled, table.pooled[1:])
    with pytest.raises(SnapshotError, match="encoder 'minilm'"):
        FeatureTable.load(tmp_path / "t.safetensors", "other")
    calls = []
    got = cached(tmp_path / "t.safetensors", "minilm", lambda: calls.append(1) or table, ["a"])
    assert not calls and got.keys == ["a"]
    (tmp_path / "bad.safetensors").write_bytes(b"junk")
    with pytest.raises(SnapshotError):
        FeatureTable.load(tmp_path / "bad.safetensors")
    # image tables keep the encoder's finer map for a two-scale parser, through select too
    images = FeatureTable(["x", "y"], torch.randn(2, 4), torch.randn(2, 4, 4).half(),
                          torch.ones(2, 4, dtype=torch.bool), "lite0@224",
                          torch.randn(2, 3, 4, 4).half())
    images.save(tmp_path / "i.safetensors")
    loaded = FeatureTable.load(tmp_path / "i.safetensors", "lite0@224")
    assert torch.equal(loaded.detail, images.detail)
    assert torch.equal(loaded.select(["y"]).detail, images.detail[1:])
    # a table written before detail maps were kept is encoded again by cached()
    from safetensors.torch import load_file, save_file

    old = tmp_path / "old.safetensors"
    save_file({k: v for k, v in load_file(str(tmp_path / "i.safetensors")).items()
               if k != "detail"}, str(old), metadata={"keys": '["x", "y"]',
                                                      "encoder_key": "lite0@224"})
    with pytest.raises(SnapshotError, match="before detail maps"):
        FeatureTable.load(old, "lite0@224")
    assert cached(old, "lite0@224", lambda: calls.append(2) or images, ["x"]) is images
    assert calls == [2] and FeatureTable.load(old, "lite0@224").detail is not None


def _coco(root: Path, queries: dict | None = None) -> None:
    (root / "annotations").mkdir(parents=True)
    images = [{"id": 1, "file_name": "a.jpg", "caption_levels": ["specific", "category"]},
              {"id": 2, "file_name": "b.jpg"}]
    anns = [{"id": 10, "image_id": 1, "caption": "A dog."},
            {"id": 11, "image_id": 1, "caption": "An  animal."},
            {"id": 12, "image_id": 2, "caption": "a dog."}]
    (root / "annotations" / "captions_val2014.json").write_text(json.dumps(
        {"images": images, "annotations": anns}))
    if queries is not None:
        (root / "retrieval").mkdir()
        (root / "retrieval" / "val2014_queries.json").write_text(json.dumps(queries))


def test_retrieval_split_from_coco_captions(tmp_path: Path) -> None:
    _coco(tmp_path)
    split = load_retrieval_split(tmp_path, "val")
    assert split.image_ids == [1, 2]
    # no queries file: every distinct caption is a query for its images
    by_text = {q.text: q.relevant for q in split.queries}
    assert by_text == {"A dog.": frozenset({1, 2}), "An  animal.": frozenset({1})}
    texts, relevant = split.gallery("specific")
    assert texts == ["A dog."] and relevant == [{0}, set()]
    assert split.caption_levels == ["specific", "category", "caption"]


def test_retrieval_queries_file_is_checked(tmp_path: Path) -> None:
    _coco(tmp_path, {"queries": [{"query_id": 5, "text": "a dog", "level": "specific",
                                  "relevant_image_ids": [1, 3]}]})
    with pytest.raises(InputError, match="image 3 is not an image of the split") as info:
        load_retrieval_split(tmp_path, "val")
    assert info.value.field == "relevant_image_ids" and info.value.record == "queries[0]"
