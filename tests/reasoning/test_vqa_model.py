"""End-to-end learning test of the VQA model on a toy KG with synthetic scenes.

Objects are given as observations (what a scene parser returns) whose embeddings are the
entity's text embedding plus noise; questions need the KG (categories), counting over objects
or a yes/no over objects. The model must beat chance clearly, and the no-KG baseline trains
through the same path.
"""

from __future__ import annotations

import random
import zlib

import numpy as np
import pytest
import torch

from kgmm.graph.compiled import CompiledKG
from kgmm.reasoning.scene_graph import GraphConfig, ObjectObservation, relation_inverse
from kgmm.reasoning.vqa_data import (
    Example,
    build_vocabularies,
    collate,
    forward_inputs,
    make_examples,
)
from kgmm.reasoning.vqa_model import VQAConfig, VQAModel

from ..graph.toy_kg import toy_graph

OBJECTS = ["ex:dog", "ex:cat", "ex:apple", "ex:banana", "ex:car", "ex:puppy"]
CATEGORY = {"ex:dog": "canine", "ex:puppy": "dog", "ex:cat": "animal", "ex:apple": "fruit",
            "ex:banana": "fruit", "ex:car": "vehicle"}


class _Record:
    def __init__(self, qid, question, answer, entity_ids, scene):
        self.question_id = qid
        self.question = question
        self.answers = (answer,) * 10
        self.multiple_choice_answer = answer
        self.answer_entity_ids = tuple(entity_ids)
        self.extra = {"question_family": "toy"}
        self.scene = scene


def _records(kg: CompiledKG, n: int, seed: int) -> list[_Record]:
    rng = random.Random(seed)
    records = []
    for qid in range(n):
        scene = rng.sample(OBJECTS, rng.randint(1, 4))
        kind = rng.choice(["category", "count", "exists"])
        if kind == "category":
            target = rng.choice(scene)
            name = kg.label(kg.index_of(target))
            answer = CATEGORY[target]
            ids = [f"ex:{answer}"]
            question = f"What kind of thing is the {name}?"
        elif kind == "count":
            cat = rng.choice(["fruit", "animal"])
            members = {"fruit": {"ex:apple", "ex:banana"},
                       "animal": {"ex:dog", "ex:cat", "ex:puppy"}}[cat]
            answer = str(sum(o in members for o in scene))
            ids = []
            question = f"How many {cat}s are there?"
        else:
            cat = rng.choice(["fruit", "vehicle", "animal"])
            members = {"fruit": {"ex:apple", "ex:banana"}, "vehicle": {"ex:car"},
                       "animal": {"ex:dog", "ex:cat", "ex:puppy"}}[cat]
            answer = "yes" if any(o in members for o in scene) else "no"
            ids = []
            question = f"Is there a {cat}?"
        records.append(_Record(qid, question, answer, ids, scene))
    return records


@pytest.fixture(scope="module")
def setting():
    torch.manual_seed(0)
    kg = CompiledKG.build(toy_graph())
    table = torch.nn.functional.normalize(torch.randn(kg.num_nodes, 32), dim=-1)

    def node_embeddings(idx):
        return table[torch.as_tensor(np.asarray(idx), dtype=torch.long)]

    def text_embed(texts):
        out = []
        for text in texts:
            g = torch.Generator().manual_seed(zlib.crc32(text.encode()) % (2**31))
            out.append(torch.randn(32, generator=g))
        return torch.stack(out)

    def image_features(record):
        rng = np.random.default_rng(record.question_id)
        observations = []
        for k, entity in enumerate(record.scene):
            index = kg.index_of(entity)
            emb = table[index] + 0.05 * torch.randn(32)
            observations.append(ObjectObservation(
                x=(k + 0.5) / len(record.scene), y=float(rng.uniform(0.2, 0.8)),
                objectness=0.95, candidates=[(index, 0.9)], embedding=emb))
        return torch.zeros(8), observations

    def examples(records):
        return make_examples(records, kg, image_features, text_embed, node_embeddings,
                             GraphConfig(hops=1, fanout=8))

    def word_tokens(texts):  # one fixed random vector per word, as a token encoder gives
        out = []
        for text in texts:
            rows = []
            for word in text.lower().rstrip("?").split():
                g = torch.Generator().manual_seed(zlib.crc32(word.encode()) % (2**31))
                rows.append(torch.randn(32, generator=g))
            out.append(torch.stack(rows))
        return out

    def tokens_only(records):  # the sentence vector is the same for every question
        return make_examples(records, kg, image_features, lambda t: torch.zeros(len(t), 32),
                             node_embeddings, GraphConfig(hops=1, fanout=8),
                             text_tokens=word_tokens)

    return (kg, examples(_records(kg, 240, 0)), examples(_records(kg, 120, 1)),
            (tokens_only(_records(kg, 240, 0)), tokens_only(_records(kg, 120, 1))))


def _train(model: VQAModel, train: list[Example], steps: int, use_kg: bool) -> None:
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    rng = random.Random(0)
    model.train()
    for _ in range(steps):
        batch = collate(rng.sample(train, 24), model.vocab, use_kg)
        result = model(**forward_inputs(batch))
        loss, _ = model.loss(result, batch["targets"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def _accuracy(model: VQAModel, kg: CompiledKG, test: list[Example], use_kg: bool) -> float:
    model.eval()
    batch = collate(test, model.vocab, use_kg)
    with torch.no_grad():
        result = model(**forward_inputs(batch))
    answers = model.decode(result, [e.graph for e in test], kg.label, k=1)
    return float(np.mean([a[0][0] == e.answer for a, e in zip(answers, test, strict=True)]))


def _config(kg: CompiledKG, vocab, use_kg: bool, heads: int = 0) -> VQAConfig:
    return VQAConfig(question_pool_heads=heads,
        use_kg=use_kg, text_dim=32, image_dim=8, fusion={"name": "early", "d_out": 32},
        reasoner={"conv": "relation_attention", "hidden": 32, "layers": 2,
                  "num_relations": kg.num_relations + 5,
                  "relation_inverse": relation_inverse(kg)},
        answers=vocab.itos)


def test_kg_model_learns_categories_counts_and_existence(setting, tmp_path) -> None:
    kg, train, test, _ = setting
    torch.manual_seed(0)
    kg_vocab, _ = build_vocabularies(train)
    model = VQAModel(_config(kg, kg_vocab, True))
    before = _accuracy(model, kg, test, True)
    _train(model, train, 150, True)
    after = _accuracy(model, kg, test, True)
    assert after > 0.7 and after > before + 0.2, (before, after)
    model.save_pretrained(tmp_path / "m")
    again = VQAModel.from_pretrained(tmp_path / "m")
    assert _accuracy(again, kg, test, True) == pytest.approx(after)


def test_question_token_pooling_reads_what_the_sentence_vector_lost(setting, tmp_path) -> None:
    """Every question gets the same sentence vector; only the token embeddings say what is
    asked. The model with token pooling learns the task, the sentence-only one cannot."""
    kg, _, _, (train, test) = setting
    assert train[0].text_tokens.shape[-1] == 32
    kg_vocab, _ = build_vocabularies(train)
    scores = {}
    for heads in (0, 2):
        torch.manual_seed(0)
        model = VQAModel(_config(kg, kg_vocab, True, heads=heads))
        assert model.uses_tokens == bool(heads)
        _train(model, train, 150, True)
        scores[heads] = _accuracy(model, kg, test, True)
    assert scores[2] > 0.7 and scores[2] > scores[0] + 0.2, scores
    model.save_pretrained(tmp_path / "tokens")
    again = VQAModel.from_pretrained(tmp_path / "tokens")
    assert _accuracy(again, kg, test, True) == pytest.approx(scores[2])
    batch = collate(test[:4], model.vocab, True)
    with pytest.raises(ValueError, match="text_tokens"):
        again(batch["image_vec"], batch["text_vec"], batch["graphs"])


def test_baseline_trains_through_the_same_path(setting) -> None:
    kg, train, test, _ = setting
    torch.manual_seed(0)
    _, all_vocab = build_vocabularies(train)
    model = VQAModel(_config(kg, all_vocab, False))
    _train(model, train, 100, False)
    assert 0.0 <= _accuracy(model, kg, test, False) <= 1.0


def test_prefetching_cache_gives_the_same_graphs_as_direct_lookups(setting) -> None:
    """make_examples with a cache that can prefetch (graphs first, node features after one
    length-sorted pass) builds exactly the graphs of the node-by-node path."""
    from kgmm.reasoning.node_embeddings import NodeEmbeddingCache

    kg = CompiledKG.build(toy_graph())

    class HashEncoder:  # deterministic sentence vectors, so both paths see the same values
        dim = 16

        def embed(self, texts):
            rows = []
            for text in texts:
                g = torch.Generator().manual_seed(sum(map(ord, text)) * 7919 % (2**31))
                rows.append(torch.randn(16, generator=g))
            return torch.stack(rows)

    def image_features(record):
        return torch.zeros(8), [ObjectObservation(
            x=0.5, y=0.5, objectness=0.9, candidates=[(kg.index_of(record.scene[0]), 0.9)],
            embedding=torch.ones(16))]

    records = _records(kg, 30, 3)
    cache = NodeEmbeddingCache(kg, HashEncoder(), encoder_key="hash", cache_dir=None)
    cache.path = cache.path.with_name("unused")  # never saved in this test
    direct = make_examples(records, kg, image_features, HashEncoder().embed,
                           lambda idx: cache(idx), GraphConfig(hops=1, fanout=8))
    fresh = NodeEmbeddingCache(kg, HashEncoder(), encoder_key="hash", cache_dir=None)
    fresh._done[:] = False
    prefetched = make_examples(records, kg, image_features, HashEncoder().embed, fresh,
                               GraphConfig(hops=1, fanout=8))
    for a, b in zip(direct, prefetched, strict=True):
        assert torch.equal(a.graph.kg_index, b.graph.kg_index)
        torch.testing.assert_close(a.graph.x, b.graph.x)
    assert fresh.computed > 0
