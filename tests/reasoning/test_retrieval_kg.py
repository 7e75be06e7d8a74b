"""The KG re-ranker on the toy KG: linking, features, evidence paths, and a tiny retriever
trained end to end on a synthetic captioned set where category queries ("a picture of an
animal") never occur in training — the dual tower cannot know them, the KG can.

Synthetic data: every object word and every category word has a random prototype; an image's
feature is the sum of its objects' prototypes plus noise; a text's feature is the sum of its
words' prototypes. Training captions name objects only.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kgmm.graph.compiled import CompiledKG
from kgmm.graph.errors import InputError
from kgmm.reasoning.retrieval.combiner import ScoreCombiner, standardize, train_combiner
from kgmm.reasoning.retrieval.data import RetrievalSplit, TextQuery
from kgmm.reasoning.retrieval.dual import DualTower, DualTowerConfig, train_dual_tower
from kgmm.reasoning.retrieval.engine import (
    SplitData,
    collect,
    evaluate_collected,
    fit_combiners,
    split_texts,
)
from kgmm.reasoning.retrieval.features import FeatureTable
from kgmm.reasoning.retrieval.kg_features import FEATURES, ConceptGraph
from kgmm.reasoning.retrieval.linking import ConceptGroup, link_entities, link_text
from kgmm.reasoning.retrieval.model import RetrievalModel
from kgmm.reasoning.retrieval.rerank import (
    CandidateInputError,
    QueryInputError,
    rerank_candidates,
)
from tests.graph.toy_kg import toy_graph

OBJECTS = {"dog": "ex:dog", "puppy": "ex:puppy", "cat": "ex:cat", "apple": "ex:apple",
           "banana": "ex:banana", "car": "ex:car", "wheel": "ex:wheel"}
CATEGORIES = {"animal": "ex:animal", "fruit": "ex:fruit", "vehicle": "ex:vehicle",
              "canine": "ex:canine"}
DIM = 48


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def kg() -> CompiledKG:
    return CompiledKG.build(toy_graph())


def _index(kg: CompiledKG, entity: str) -> int:
    return kg.index_of(entity)


# -- linking and features ---------------------------------------------------------------


def test_link_text_finds_mentions_and_skips_number_words(kg: CompiledKG) -> None:
    groups = link_text(kg, "Two dogs and an apple")
    assert [g.span for g in groups] == ["dogs", "apple"]
    assert groups[0].candidates[0][0] == _index(kg, "ex:dog")
    with pytest.raises(InputError, match="ex:unicorn"):
        link_entities(kg, ["ex:dog", "ex:unicorn"], where="candidate 3")


def test_features_follow_the_hypernym_ancestry(kg: CompiledKG) -> None:
    graph = ConceptGraph(kg)
    animal = link_text(kg, "a picture of an animal")
    images = [link_entities(kg, ["ex:puppy"]), link_entities(kg, ["ex:apple"]),
              link_entities(kg, ["ex:cat", "ex:car"]), []]
    result = graph.features(animal, images)
    f = dict(zip(FEATURES, result.values.T, strict=True))
    assert f["cover_mean"].tolist() == pytest.approx([1.0, 0.0, 1.0, 0.0], abs=1e-5)
    assert f["explain"].tolist() == pytest.approx([1.0, 0.0, 0.5, 0.0])  # the car is not one
    assert f["depth_match"][2] > f["depth_match"][0] > 0  # cat is nearer to animal than puppy
    assert f["ppr"][0] > f["ppr"][1] and f["path"][0] > f["path"][1]
    assert result.values[3].tolist() == [0.0] * len(FEATURES)  # nothing linked
    match = result.evidence(0)[0]
    assert match.relation == "is_a" and match.shown_entity == "ex:puppy"
    assert match.path == ["ex:puppy", "ex:dog", "ex:canine", "ex:animal"]
    assert match.relations == ["hypernym"] * 3
    # a non-taxonomic edge: a wheel is part of a car, which is a vehicle
    vehicle = graph.features(link_text(kg, "a vehicle"), [link_entities(kg, ["ex:wheel"])])
    assert vehicle.values[0, 0] == 0.0 and vehicle.values[0, 5] > 0
    ev = vehicle.evidence(0)[0]
    assert ev.path == ["ex:wheel", "ex:car", "ex:vehicle"]
    assert ev.relations == ["part_holonym", "hypernym"] and ev.relation == "related"


def test_coverage_is_a_noisy_or_over_uncertain_detections(kg: CompiledKG) -> None:
    graph = ConceptGraph(kg)
    dog, cat, apple = (_index(kg, f"ex:{x}") for x in ("dog", "cat", "apple"))
    # two detections, each 50 % an animal: P(at least one animal) = 1 - 0.5 · 0.5
    image = [ConceptGroup(((dog, 0.5), (apple, 0.5)), 1.0, source="image"),
             ConceptGroup(((cat, 0.5), (apple, 0.5)), 1.0, source="image")]
    value = graph.features(link_text(kg, "an animal"), [image]).values[0, 0]
    assert value == pytest.approx(0.75, abs=1e-5)
    weak = [ConceptGroup(((dog, 1.0),), 0.2, source="image")]  # objectness 0.2
    assert graph.features(link_text(kg, "an animal"), [weak]).values[0, 0] == \
        pytest.approx(0.2, abs=1e-5)
    two = link_text(kg, "an animal next to a fruit")
    both = graph.features(two, [link_entities(kg, ["ex:dog", "ex:banana"]),
                                link_entities(kg, ["ex:dog"])]).values
    assert both[0, 0] == pytest.approx(1.0, abs=1e-5) and both[1, 1] == 0.0  # min
    assert both[1, 0] == pytest.approx(0.5, abs=1e-5)  # mean


def test_image_linker_feeds_a_two_scale_parser_its_detail_maps(kg: CompiledKG) -> None:
    from kgmm.reasoning.retrieval.linking import ImageLinker
    from kgmm.reasoning.scene_parser import SceneParser

    torch.manual_seed(0)
    parser = SceneParser(feature_dim=8, embed_dim=6, cell_dim=8, context_dim=4, pos_dim=2,
                         hidden=8, grid_size=(4, 4), detail_dim=3, objectness_threshold=0.0,
                         max_objects=2)
    entities = [kg.index_of("ex:dog"), kg.index_of("ex:apple")]
    linker = ImageLinker(parser, entities, lambda idx: torch.randn(len(idx), 6))
    tokens, detail = torch.randn(3, 4, 8), torch.randn(3, 3, 4, 4)
    groups = linker(tokens, (2, 2), batch_size=2, detail=detail)
    assert [len(g) for g in groups] == [2, 2, 2]
    assert all(len(c.candidates) == 2 and c.source == "image" for g in groups for c in g)
    with pytest.raises(ValueError, match="detail map"):
        linker(tokens, (2, 2))


def test_combiner_learns_from_lists_and_round_trips(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    lists = []
    for _ in range(40):
        feats = rng.random((20, 2)).astype(np.float32)
        rel = feats[:, 1] > 0.8
        lists.append((rng.normal(size=20), feats, rel))  # the first stage is noise
    model = ScoreCombiner(["useless", "signal"])
    train_combiner(model, lists, epochs=200)
    w = model.weights()
    assert w["signal"] > 1.0 and abs(w["signal"]) > 3 * abs(w["useless"])
    model.save(tmp_path / "c.json")
    again = ScoreCombiner.load(tmp_path / "c.json")
    scores, feats, _ = lists[0]
    assert np.allclose(again.score(scores, feats), model.score(scores, feats))
    assert standardize(None, 3).tolist() == pytest.approx(
        standardize(-np.log1p(np.arange(3)), 3).tolist())


# -- a tiny retriever on synthetic data ------------------------------------------------


def _prototypes() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(7)
    words = [*OBJECTS, *CATEGORIES, "picture", "and", "a", "an", "of"]
    return {w: torch.randn(DIM, generator=gen) for w in words}


def _text_vec(text: str, protos: dict[str, torch.Tensor]) -> torch.Tensor:
    words = [w.strip(".,").lower() for w in text.split()]
    vec = sum((protos[w] for w in words if w in protos), torch.zeros(DIM))
    return F.normalize(vec, dim=0)


def _split(name: str, n: int, seed: int, kg: CompiledKG,
           protos: dict[str, torch.Tensor]) -> tuple[SplitData, dict[int, list[str]]]:
    rnd = random.Random(seed)
    ids = list(range(seed * 1000, seed * 1000 + n))
    objects = {i: rnd.sample(sorted(OBJECTS), rnd.choice([1, 1, 2])) for i in ids}
    captions = [[(" and ".join(f"a {o}" for o in objects[i]), "specific")] for i in ids]
    queries = []
    for word, entity in [*OBJECTS.items(), *CATEGORIES.items()]:
        ancestors = {entity}
        relevant = frozenset(i for i in ids if any(
            entity == OBJECTS[o] or entity in _ancestor_ids(kg, OBJECTS[o]) for o in objects[i])
            and ancestors)
        if relevant:
            level = "specific" if word in OBJECTS else "category"
            queries.append(TextQuery(len(queries), f"a picture of a {word}", level, relevant))
    split = RetrievalSplit(Path("."), name, ids, [None] * n, captions, queries)
    texts = split_texts(split)
    gen = torch.Generator().manual_seed(seed + 1)
    images = torch.stack([sum((protos[o] for o in objects[i]), torch.zeros(DIM))
                          + 0.3 * torch.randn(DIM, generator=gen) for i in ids])
    data = SplitData(split,
                     FeatureTable(texts, torch.stack([_text_vec(t, protos) for t in texts])),
                     FeatureTable([str(i) for i in ids], images),
                     [link_entities(kg, [OBJECTS[o] for o in objects[i]]) for i in ids])
    return data, objects


def _ancestor_ids(kg: CompiledKG, entity: str) -> set[str]:
    graph = ConceptGraph(kg)
    return set(kg.ids_of(graph.ancestors(kg.index_of(entity))))


@pytest.fixture(scope="module")
def tiny(kg: CompiledKG) -> tuple[RetrievalModel, dict[str, SplitData]]:
    torch.manual_seed(0)
    protos = _prototypes()
    data = {name: _split(name, n, seed, kg, protos)[0]
            for name, n, seed in (("train", 120, 1), ("val", 60, 2), ("test", 60, 3))}
    train = data["train"]
    rows = train.texts.index()
    pairs = [(rows[c], n) for n, caps in enumerate(train.split.captions) for c, _ in caps]
    dual = DualTower(DualTowerConfig(text_dim=DIM, image_dim=DIM, dim=32, hidden=64))
    losses = train_dual_tower(dual, train.texts.pooled, train.images.pooled, pairs, epochs=30,
                              batch_size=32)
    assert losses[-1] < losses[0]
    model = RetrievalModel(kg, None, None, dual, {}, {})
    fit_combiners(model, collect(model, data["val"], k=30, want=("kg",)))
    return model, data


def test_kg_reranker_lifts_category_queries_of_a_tiny_retriever(tiny) -> None:
    model, data = tiny
    assert model.rankers() == ["dual", "kg"]
    metrics = evaluate_collected(model, collect(model, data["test"], k=30, want=("kg",)),
                                 ["dual", "kg"])
    t2i = metrics["t2i"]
    cat, spec = t2i["category"], t2i["specific"]
    assert cat["kg"]["R@1"] >= cat["dual"]["R@1"] + 15, cat
    assert cat["kg"]["R@1"] == 100.0 and cat["kg"]["nDCG@10"] > cat["dual"]["nDCG@10"]
    assert spec["kg"]["R@1"] >= spec["dual"]["R@1"] - 1, spec
    i2t = metrics["i2t"]["specific"]
    assert i2t["kg"]["MRR"] >= i2t["dual"]["MRR"] - 1  # and image→text does not suffer
    weights = model.combiners["kg"]["t2i"].weights()
    assert weights["kg_cover_mean"] + weights["kg_cover_min"] > 0


def test_rerank_api_on_given_entities_with_evidence(tiny, kg: CompiledKG) -> None:
    model, _ = tiny

    class Words:  # a stand-in text encoder: the synthetic prototypes
        dim = DIM

        def encode(self, texts: list[str]):
            from kgmm.reasoning.encoders import TextFeatures

            pooled = torch.stack([_text_vec(t, _prototypes()) for t in texts])
            return TextFeatures(pooled[:, None], torch.ones(len(texts), 1, dtype=torch.bool),
                                pooled)

    model.text_encoder = Words()
    candidates = [{"id": "a", "score": 0.9, "entities": ["ex:apple"]},
                  {"id": "b", "score": 0.8, "entities": ["ex:car"]},
                  {"id": "c", "score": 0.1, "entities": ["ex:puppy", "ex:banana"]},
                  {"id": "d", "score": 0.5, "text": "a cat"}]  # linked through its caption
    ranked = rerank_candidates(model, "a picture of an animal", candidates, k=3)
    assert [r.id for r in ranked][:2] in (["c", "d"], ["d", "c"])
    top = next(r for r in ranked if r.id == "c")
    assert top.first_stage_rank == 3 and top.evidence is not None and top.evidence.linked
    match = top.evidence.matches[0]
    assert match["shown_entity"] == "ex:puppy" and match["named_entity"] == "ex:animal"
    assert match["path"][-1] == "ex:animal" and set(match["relations"]) == {"hypernym"}
    assert top.evidence.query_entities[0]["span"] == "animal"
    dual = rerank_candidates(model, "a picture of an animal", candidates, k=None,
                             method="dual")
    assert [r.id for r in dual] == ["a", "b", "d", "c"]


def test_rerank_bad_input_errors(tiny) -> None:
    model, _ = tiny
    good = [{"id": 1, "entities": ["ex:dog"]}]
    with pytest.raises(QueryInputError, match="empty"):
        rerank_candidates(model, "   ", good)
    with pytest.raises(CandidateInputError, match="candidate 7 has nothing to link"):
        rerank_candidates(model, "a dog", [{"id": 7, "score": 1.0}])
    with pytest.raises(InputError, match=r"ex:unicorn.*not in the knowledge graph"):
        rerank_candidates(model, "a dog", [{"id": 2, "entities": ["ex:unicorn"]}])
    with pytest.raises(CandidateInputError, match="links to no entity"):
        rerank_candidates(model, "a dog", [*good, {"id": 9, "text": "zzz qqq"}], strict=True)
    with pytest.raises(InputError, match="no 'cross' re-ranker"):
        rerank_candidates(model, "a dog", good, method="cross")
    with pytest.raises(InputError, match="unknown re-ranker"):
        rerank_candidates(model, "a dog", good, method="magic")
    assert rerank_candidates(model, "a dog", []) == []
    # a query that links to nothing keeps the first-stage order, and says so
    out = rerank_candidates(model, "zzz", [{"id": 1, "score": 0.1, "entities": ["ex:dog"]},
                                           {"id": 2, "score": 0.9, "entities": ["ex:cat"]}])
    assert [r.id for r in out] == [2, 1] and out[0].evidence.linked is False
