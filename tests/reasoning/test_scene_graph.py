import numpy as np
import pytest
import torch

from kgmm.graph.compiled import CompiledKG
from kgmm.reasoning.node_embeddings import NodeEmbeddingCache
from kgmm.reasoning.question_linking import find_mentions, rescore_mentions
from kgmm.reasoning.scene_graph import (
    EXTRA_RELATIONS,
    GROUNDING_DIM,
    NODE_EXTRA_DIM,
    GraphConfig,
    ObjectObservation,
    ancestors,
    build_graph,
    taxonomy_features,
)

from ..graph.toy_kg import toy_graph


@pytest.fixture(scope="module")
def kg() -> CompiledKG:
    return CompiledKG.build(toy_graph())


def _emb(kg: CompiledKG):
    table = torch.eye(kg.num_nodes, 24)
    return lambda idx: table[torch.as_tensor(np.asarray(idx), dtype=torch.long)]


def test_mentions_longest_match_plurals_and_stopwords(kg: CompiledKG) -> None:
    mentions = find_mentions(kg, "How many domestic dogs are left of the banks?")
    assert [(m.text, kg.ids_of(m.candidates)) for m in mentions] == [
        ("domestic dogs", ["ex:dog"]),
        ("banks", sorted(["ex:bank_river", "ex:bank_money"],
                         key=lambda i: kg.lookup("bank").index(kg.index_of(i)))),
    ]
    assert sum(mentions[1].scores) == pytest.approx(1.0)
    assert find_mentions(kg, "What is on the left of that thing?") == []


def test_rescoring_prefers_the_sense_closest_to_the_question(kg: CompiledKG) -> None:
    mention = find_mentions(kg, "the bank")[0]
    river, money = kg.index_of("ex:bank_river"), kg.index_of("ex:bank_money")
    question = _emb(kg)([money])[0]
    [scored] = rescore_mentions([mention], question, _emb(kg))
    best = scored.candidates[int(np.argmax(scored.scores))]
    assert best == money and best != river


def test_ancestors_and_taxonomy_features(kg: CompiledKG) -> None:
    tax = [kg.relation_index("hypernym")]
    up = {kg.id_of(i): d for i, d in ancestors(kg, kg.index_of("ex:puppy"), tax, 12).items()}
    assert up == {"ex:dog": 1, "ex:canine": 2, "ex:animal": 3, "ex:organism": 4, "ex:entity": 5}
    hyponyms, depth = taxonomy_features(kg)
    assert hyponyms[kg.index_of("ex:fruit")] == 2 and hyponyms[kg.index_of("ex:puppy")] == 0
    assert depth[kg.index_of("ex:entity")] == 0 and depth[kg.index_of("ex:puppy")] == 5


def test_graph_has_objects_ancestors_depicts_and_spatial_edges(kg: CompiledKG) -> None:
    dog, apple = kg.index_of("ex:dog"), kg.index_of("ex:apple")
    observations = [
        ObjectObservation(0.2, 0.5, 0.9, [(dog, 0.8)], torch.zeros(24)),
        ObjectObservation(0.8, 0.2, 0.95, [(apple, 0.9)], torch.ones(24)),
    ]
    mentions = find_mentions(kg, "What kind of thing is the dog?")
    graph = build_graph(kg, mentions, observations, _emb(kg), GraphConfig(hops=1))
    R = kg.num_relations
    names = [*kg.relation_ids, *EXTRA_RELATIONS]
    kg_index = graph.kg_index.tolist()
    n_kg = sum(1 for i in kg_index if i >= 0)
    edges = {(s, names[r], d) for (s, d), r in zip(graph.edge_index.t().tolist(),
                                                    graph.edge_type.tolist(), strict=True)}

    def node(entity: str) -> int:
        return kg_index.index(kg.index_of(entity))

    assert (node("ex:dog"), "ancestor", node("ex:animal")) in edges
    assert (node("ex:apple"), "ancestor", node("ex:fruit")) in edges
    assert (n_kg, "depicts", node("ex:dog")) in edges and (n_kg + 1, "depicts",
                                                          node("ex:apple")) in edges
    assert (n_kg, "left_of", n_kg + 1) in edges and (n_kg + 1, "above", n_kg) in edges
    assert graph.node_extra.shape == (graph.num_nodes, NODE_EXTRA_DIM)
    assert graph.node_extra[n_kg:, 0].tolist() == [1.0, 1.0]
    assert graph.seed_score[node("ex:dog")] == pytest.approx(1.0)
    assert torch.equal(graph.x[n_kg + 1], torch.ones(24))
    assert max(graph.edge_type.tolist()) < R + len(EXTRA_RELATIONS)


def test_grounding_features_carry_object_positions_up_the_taxonomy(kg: CompiledKG) -> None:
    dog, apple, puppy = kg.index_of("ex:dog"), kg.index_of("ex:apple"), kg.index_of("ex:puppy")
    observations = [  # left to right: dog, apple, puppy; top to bottom: apple, puppy, dog
        ObjectObservation(0.1, 0.9, 0.9, [(dog, 0.8)], torch.zeros(24)),
        ObjectObservation(0.5, 0.1, 0.9, [(apple, 0.9)], torch.zeros(24)),
        ObjectObservation(0.9, 0.5, 0.9, [(puppy, 0.9)], torch.zeros(24)),
    ]
    config = GraphConfig(hops=1, grounding=True)
    assert config.node_extra_dim == NODE_EXTRA_DIM + GROUNDING_DIM
    graph = build_graph(kg, [], observations, _emb(kg), config)
    assert graph.node_extra.shape == (graph.num_nodes, config.node_extra_dim)
    kg_index = graph.kg_index.tolist()

    def grounding(entity: str) -> list[float]:
        return graph.node_extra[kg_index.index(kg.index_of(entity)), NODE_EXTRA_DIM:].tolist()

    # [grounded, max x-rank, min x-rank, max y-rank, min y-rank]
    assert grounding("ex:apple") == [1.0, 0.5, 0.5, 0.0, 0.0]
    assert grounding("ex:fruit") == [1.0, 0.5, 0.5, 0.0, 0.0]
    assert grounding("ex:canine") == [1.0, 1.0, 0.0, 1.0, 0.5]  # the dog and the puppy
    assert grounding("ex:organism") == [1.0, 1.0, 0.0, 1.0, 0.5]  # fruit is not one
    assert grounding("ex:entity") == [1.0, 1.0, 0.0, 1.0, 0.0]  # all three
    n_kg = sum(1 for i in kg_index if i >= 0)
    assert graph.node_extra[n_kg + 2, NODE_EXTRA_DIM:].tolist() == [1.0, 1.0, 1.0, 0.5, 0.5]
    off = build_graph(kg, [], observations, _emb(kg), GraphConfig(hops=1))
    assert off.node_extra.shape[1] == NODE_EXTRA_DIM
    assert GraphConfig.from_dict({"hops": 1}).grounding is False  # models saved before it


def test_node_embedding_cache_is_lazy_persistent_and_keyed(kg: CompiledKG, tmp_path) -> None:
    class Encoder:
        dim = 4
        calls = 0

        def embed(self, texts):
            Encoder.calls += len(texts)
            return torch.tensor([[len(t), 1.0, 0.0, 0.0] for t in texts])

    cache = NodeEmbeddingCache(kg, Encoder(), encoder_key="fake", cache_dir=tmp_path)
    out = cache([0, 3, 3])
    assert out.shape == (3, 4) and Encoder.calls == 2 and cache.computed == 2
    assert out[0, 0] == len(kg.node_text(0))
    cache.save()
    again = NodeEmbeddingCache(kg, Encoder(), encoder_key="fake", cache_dir=tmp_path)
    assert again.computed == 2 and torch.equal(again([3]), out[1:2])
    assert Encoder.calls == 2  # served from disk
    other = NodeEmbeddingCache(kg, Encoder(), encoder_key="other", cache_dir=tmp_path)
    assert other.computed == 0


def test_box_relations_follow_the_boxes_not_the_centres(kg: CompiledKG) -> None:
    dog, apple, puppy = kg.index_of("ex:dog"), kg.index_of("ex:apple"), kg.index_of("ex:puppy")
    observations = [
        # a wide box: its centre is well left of the apple's, but it ends after the apple starts
        ObjectObservation(0.25, 0.5, 0.9, [(dog, 0.9)], torch.zeros(24),
                          box=(0.0, 0.4, 0.5, 0.6)),
        ObjectObservation(0.55, 0.5, 0.9, [(apple, 0.9)], torch.zeros(24),
                          box=(0.45, 0.45, 0.65, 0.55)),
        # far right, 0.05 of the canvas after the apple ends: left of it, and next to it
        ObjectObservation(0.8, 0.5, 0.9, [(puppy, 0.9)], torch.zeros(24),
                          box=(0.7, 0.45, 0.9, 0.55)),
    ]
    R = kg.num_relations
    names = {R + k: n for k, n in enumerate(EXTRA_RELATIONS)}

    def spatial(config: GraphConfig) -> set[tuple[int, str, int]]:
        graph = build_graph(kg, [], observations, _emb(kg), config)
        n_kg = int((graph.kg_index >= 0).sum())
        return {(s - n_kg, names[r], d - n_kg)
                for (s, d), r in zip(graph.edge_index.t().tolist(), graph.edge_type.tolist(),
                                     strict=True) if names.get(r) in ("left_of", "above",
                                                                      "next_to")}

    boxes = spatial(GraphConfig(hops=1, spatial="boxes"))
    assert (0, "left_of", 1) not in boxes  # the boxes overlap horizontally
    assert (1, "left_of", 2) in boxes and (0, "left_of", 2) in boxes
    assert (1, "next_to", 2) in boxes and (0, "next_to", 1) in boxes
    assert (0, "next_to", 2) not in boxes  # a gap of 0.2 > near = 0.1
    assert not any(r == "above" for _, r, _ in boxes)  # they share the same rows
    centres = spatial(GraphConfig(hops=1))
    assert (0, "left_of", 1) in centres  # centres 0.3 apart: the old rule says left of
    assert GraphConfig.from_dict({"hops": 1}).spatial == "centres"  # models saved before
    with pytest.raises(ValueError, match="spatial mode"):
        GraphConfig(spatial="polygons")


def test_mention_order_tells_the_roles_of_two_mentions_apart(kg: CompiledKG) -> None:
    config = GraphConfig(hops=1, mention_order=True)
    assert config.node_extra_dim == NODE_EXTRA_DIM + 1
    column = config.mention_order_column

    def order(question: str) -> dict[str, float]:
        graph = build_graph(kg, find_mentions(kg, question), [], _emb(kg), config)
        return {kg.id_of(int(i)): float(graph.node_extra[k, column])
                for k, i in enumerate(graph.kg_index.tolist()) if i >= 0
                and graph.node_extra[k, column] > 0}

    assert order("Is the dog left of the apple?") == {"ex:dog": 0.5, "ex:apple": 1.0}
    assert order("Is the apple left of the dog?") == {"ex:apple": 0.5, "ex:dog": 1.0}
    grounded = GraphConfig(hops=1, grounding=True, mention_order=True)
    assert grounded.mention_order_column == NODE_EXTRA_DIM + GROUNDING_DIM


def _specificity(kg: CompiledKG, config: GraphConfig,
                 observations: list[ObjectObservation]) -> dict[str, float]:
    graph = build_graph(kg, [], observations, _emb(kg), config)
    column = config.answer_space_column
    ancestor, spec = graph.node_extra[:, column], graph.node_extra[:, column + 1]
    assert torch.equal(ancestor, (spec > 0).float())  # the first column flags the second's
    return {kg.id_of(int(i)): float(spec[k])
            for k, i in enumerate(graph.kg_index.tolist()) if i >= 0}


def test_answer_space_column_marks_the_most_specific_answer_space_ancestor(
        kg: CompiledKG) -> None:
    puppy, apple = kg.index_of("ex:puppy"), kg.index_of("ex:apple")
    observations = [ObjectObservation(0.2, 0.5, 1.0, [(puppy, 1.0)], torch.zeros(24)),
                    ObjectObservation(0.8, 0.5, 1.0, [(apple, 1.0)], torch.zeros(24))]
    trained = GraphConfig(hops=1, grounding=True, mention_order=True,
                          answer_space_features=True,
                          answer_space=("ex:animal", "ex:entity", "ex:puppy", "ex:unknown"))
    assert trained.node_extra_dim == NODE_EXTRA_DIM + GROUNDING_DIM + 1 + 2
    assert trained.node_extra_names[-2:] == ("answer-space ancestor of a linked entity",
                                             "answer-space specificity")
    assert trained.answer_space_column == NODE_EXTRA_DIM + GROUNDING_DIM + 1
    dog_only = observations[:1]
    spec = _specificity(kg, trained, dog_only)
    # the entity itself is in the space but no ancestor of itself; ids not in the KG are skipped
    assert spec["ex:puppy"] == 0.0
    assert spec["ex:animal"] == 1.0 and spec["ex:entity"] == 0.5
    assert spec["ex:dog"] == spec["ex:canine"] == 0.0
    # a label declared after training becomes the most specific; the others move up a level
    deployed = trained.with_answer_space((*trained.answer_space, "ex:canine"))
    spec = _specificity(kg, deployed, dog_only)
    assert spec["ex:canine"] == 1.0
    assert spec["ex:animal"] == 0.5 and spec["ex:entity"] == pytest.approx(1 / 3)
    # a node above two entities keeps its best specificity: entity is 1/3 for the puppy
    # (canine, animal below it) and 1/2 for the apple (fruit below it)
    fruit_space = deployed.with_answer_space((*deployed.answer_space, "ex:fruit"))
    spec = _specificity(kg, fruit_space, observations)
    assert spec["ex:fruit"] == spec["ex:canine"] == 1.0
    assert spec["ex:entity"] == 0.5
    # round trip, and a config without the column refuses an answer space
    assert GraphConfig.from_dict(deployed.to_dict()) == deployed
    with pytest.raises(ValueError, match="answer-space features"):
        GraphConfig().with_answer_space(["ex:dog"])
    with pytest.raises(ValueError, match=r"unknown graph configuration fields \['colour'\]"):
        GraphConfig.from_dict({**deployed.to_dict(), "colour": "red"})
