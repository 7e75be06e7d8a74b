"""The answer space: labels declared after training are answered like the seen ones.

A synthetic taxonomy (kingdom → unnamed clade → family → [unnamed sub-family →] leaf, random
node texts, so names carry nothing), "What kind of thing is the <leaf>?" (its family) and
"… the <family>?" (its kingdom). One family per kingdom never occurs in training; declared
after training, its leaves are answered with it, and without the declaration with the nearest
answer-space ancestor (the kingdom).
"""

from __future__ import annotations

import random
import zlib

import numpy as np
import pytest
import torch

from kgmm.graph.compiled import CompiledKG
from kgmm.graph.errors import InputError
from kgmm.graph.model import Entity, GraphData, Relation, Triple
from kgmm.reasoning.answer_space import read_declared_answers, resolve_declared
from kgmm.reasoning.scene_graph import GraphConfig, ObjectObservation, relation_inverse
from kgmm.reasoning.vqa_data import build_vocabularies, collate, forward_inputs, make_examples
from kgmm.reasoning.vqa_model import VQAConfig, VQAModel
from kgmm.reasoning.vqa_train import answer_space_configs, training_answer_space

KINGDOMS, FAMILIES, LEAVES = 3, 3, 3
HELD = {f"ex:f{k}{FAMILIES - 1}" for k in range(KINGDOMS)}


def _word(key: str) -> str:
    rng = random.Random(key)
    return "".join(rng.choice("bdfgklmnprstvz") + rng.choice("aeiou") for _ in range(3))


def _taxonomy() -> GraphData:
    entities = [Entity("ex:thing", "thing", (), "", ("noun.Tops",))]
    triples = []

    def add(key: str, parent: str) -> None:
        entities.append(Entity(key, _word(key), (), "", ("noun.Tops",)))
        triples.append(Triple(key, "hypernym", parent))

    for k in range(KINGDOMS):
        add(f"ex:k{k}", "ex:thing")
        for f in range(FAMILIES):
            add(f"ex:c{k}{f}", f"ex:k{k}")  # a clade no question names
            add(f"ex:f{k}{f}", f"ex:c{k}{f}")
            add(f"ex:s{k}{f}", f"ex:f{k}{f}")  # so the family is not always the parent
            for leaf in range(LEAVES):
                add(f"ex:l{k}{f}{leaf}", f"ex:s{k}{f}" if leaf % 2 else f"ex:f{k}{f}")
    return GraphData(entities, [Relation("hypernym", "is a kind of", "")], triples,
                     source="synthetic")


class _Record:
    def __init__(self, qid: int, question: str, answer: str, entity: str,
                 scene: list[str]) -> None:
        self.question_id = qid
        self.question = question
        self.answers = (answer,) * 10
        self.multiple_choice_answer = answer
        self.answer_entity_ids = (entity,)
        self.extra = {"question_family": "category"}
        self.scene = scene


def _records(kg: CompiledKG, n: int, seed: int, *, held: bool) -> list[_Record]:
    rng = random.Random(seed)
    leaves = [f"ex:l{k}{f}{i}" for k in range(KINGDOMS) for f in range(FAMILIES)
              for i in range(LEAVES) if (f"ex:f{k}{f}" in HELD) == held]
    out = []
    for qid in range(n):
        leaf = rng.choice(leaves)
        asked, answer = leaf, f"ex:f{leaf[4:6]}"
        if not held and rng.random() < 0.3:
            asked, answer = answer, f"ex:k{leaf[4]}"
        scene = [leaf, *rng.sample([x for x in leaves if x != leaf], 1)]
        rng.shuffle(scene)
        out.append(_Record(qid, f"What kind of thing is the {kg.label(kg.index_of(asked))}?",
                           kg.label(kg.index_of(answer)), answer, scene))
    return out


@pytest.fixture(scope="module")
def world():
    kg = CompiledKG.build(_taxonomy())
    torch.manual_seed(0)
    table = torch.nn.functional.normalize(torch.randn(kg.num_nodes, 32), dim=-1)

    def nodes(idx):
        return table[torch.as_tensor(np.asarray(idx), dtype=torch.long)]

    def text(texts):
        return torch.stack([torch.randn(32, generator=torch.Generator().manual_seed(
            zlib.crc32(t.encode()) % 2**31)) for t in texts])

    def image(record):
        return torch.zeros(8), [ObjectObservation((k + 0.5) / 2, 0.5, 1.0,
                                                  [(kg.index_of(e), 1.0)], nodes([
                                                      kg.index_of(e)])[0])
                                for k, e in enumerate(record.scene)]

    def examples(records, config):
        return make_examples(records, kg, image, text, nodes, config)

    return kg, examples


def test_declared_labels_are_answered_like_the_seen_ones(world) -> None:
    kg, examples = world
    train_records = _records(kg, 300, 0, held=False)
    space = training_answer_space(train_records, kg)
    assert not HELD & set(space)
    base = GraphConfig(hops=1, fanout=8, grounding=True, answer_space_features=True)
    train_graph, deployed = answer_space_configs(base, space, sorted(HELD))
    train = examples(train_records, train_graph)
    vocab, _ = build_vocabularies(train)
    torch.manual_seed(0)
    model = VQAModel(VQAConfig(
        use_kg=True, text_dim=32, image_dim=8, fusion={"name": "early", "d_out": 32},
        reasoner={"conv": "relation_attention", "hidden": 32, "layers": 2,
                  "num_relations": kg.num_relations + 5, "feature_score": True,
                  "node_text_dropout": 0.5, "relation_inverse": relation_inverse(kg)},
        graph=deployed.to_dict(), answers=vocab.itos))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    rng = random.Random(0)
    model.train()
    for _ in range(150):
        batch = collate(rng.sample(train, 24), model.vocab, True)
        loss, _ = model.loss(model(**forward_inputs(batch)), batch["targets"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    def accuracy(records, config) -> tuple[float, list[str]]:
        test = examples(records, config)
        model.eval()
        with torch.no_grad():
            result = model(**forward_inputs(collate(test, model.vocab, True)))
        answers = [a[0][0] for a in model.decode(result, [e.graph for e in test],
                                                 kg.label, k=1)]
        return (float(np.mean([a == e.answer for a, e in zip(answers, test, strict=True)])),
                answers)

    seen, _ = accuracy(_records(kg, 60, 1, held=False), deployed)
    declared, _ = accuracy(_records(kg, 60, 2, held=True), deployed)
    undeclared, answers = accuracy(_records(kg, 60, 2, held=True), train_graph)
    kingdoms = {kg.label(kg.index_of(f"ex:k{k}")) for k in range(KINGDOMS)}
    assert seen >= 0.9
    assert declared >= 0.8
    assert undeclared == 0.0 and np.mean([a in kingdoms for a in answers]) >= 0.8


def test_declared_answers_resolve_ids_and_names_and_name_bad_entries(world, tmp_path) -> None:
    kg, _ = world
    name = kg.label(kg.index_of("ex:f02"))
    resolved = resolve_declared(kg, ["ex:k0", f"  {name.upper()} "])
    assert [(d.entity_id, d.name) for d in resolved] == [("ex:k0", None), ("ex:f02", name)]
    listing = tmp_path / "answers.txt"
    listing.write_text(f"# declared\nex:k1\n\n{name}\nno such thing\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"answers\.txt:5: answer 'no such thing'"):
        read_declared_answers(listing, kg)
    manifest = tmp_path / "manifest.json"
    manifest.write_text('{"categories": [{"name": "x", "synset_id": "ex:f12"}], '
                        '"objects": [{"synset_id": "ex:l120"}]}')
    assert [d.entity_id for d in read_declared_answers(manifest, kg)] == ["ex:f12"]
    manifest.write_text('{"categories": [{"synset_id": "ex:f12"}, {"x": 1}]}')
    with pytest.raises(InputError, match="record 1, field 'synset_id'"):
        read_declared_answers(manifest, kg)
    manifest.write_text('{"scenes": 3}')
    with pytest.raises(InputError, match="benchmark manifest"):
        read_declared_answers(manifest, kg)
    broken = tmp_path / "list.json"
    broken.write_text('["ex:k0", ')
    with pytest.raises(InputError, match=r"list\.json:1: not JSON"):
        read_declared_answers(broken, kg)
