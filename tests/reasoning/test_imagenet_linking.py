"""The ImageNet → KG visual linker, the perception-domain check, and ``KGMM.answer`` on a real
photograph (scikit-image's Chelsea the cat) with a parser trained on another picture style."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from kgmm.graph.model import Entity, GraphData, Relation, Triple
from kgmm.reasoning.encoders.imagenet import imagenet_classes
from kgmm.reasoning.imagenet_linking import (
    VisualLinkConfig,
    imagenet_candidates,
    imagenet_observation,
    link_imagenet_classes,
)
from kgmm.reasoning.perception_domain import PerceptionDomain


def _class(name: str) -> int:
    return next(c.index for c in imagenet_classes() if c.name == name)


def test_every_class_links_to_its_own_synset_on_wordnet_31(wordnet31_kg) -> None:
    links = link_imagenet_classes(wordnet31_kg)
    assert (links >= 0).sum() >= 995
    name = {c.name: wordnet31_kg.id_of(int(links[c.index])) for c in imagenet_classes()}
    assert name["tabby"] == "wn:tabby.n.01"
    assert name["Egyptian cat"] == "wn:egyptian_cat.n.01"
    assert name["golden retriever"] == "wn:golden_retriever.n.01"
    # 'crane' is two classes (bird and machine): definitions pick the right sense for each
    cranes = [wordnet31_kg.entity(int(links[c.index])).description
              for c in imagenet_classes() if c.name == "crane"]
    assert len(cranes) == 2 and any("bird" in d for d in cranes) \
        and any("lifting" in d for d in cranes)


def test_definitions_break_ties_between_senses_of_one_name() -> None:
    from kgmm.graph.compiled import CompiledKG

    kg = CompiledKG.build(GraphData(entities=[
        Entity("ex:tabby_cloth", "tabby", description="a fabric with a watered pattern"),
        Entity("ex:tabby_cat", "tabby", aliases=("tabby cat",),
               description="a cat with a grey or tawny coat mottled with black"),
        Entity("ex:cat", "cat", description="feline mammal"),
    ], relations=[Relation("hypernym", "hypernym")],
        triples=[Triple("ex:tabby_cat", "hypernym", "ex:cat")]))
    links = link_imagenet_classes(kg)
    assert kg.id_of(int(links[_class("tabby")])) == "ex:tabby_cat"
    assert (links >= 0).sum() <= 3  # nothing else is named in this graph


def test_candidates_merge_classes_of_one_entity_and_drop_unsure_ones() -> None:
    links = np.full(1000, -1, dtype=np.int64)
    links[[1, 2]] = 7  # two classes, one entity
    links[3] = 9
    logits = torch.full((1000,), -10.0)
    logits[1], logits[2], logits[3], logits[4] = 3.0, 3.0, 2.5, 5.0  # class 4 is unlinked
    out = imagenet_candidates(logits, links, VisualLinkConfig(top_k=4, min_probability=0.05))
    assert [i for i, _ in out] == [7, 9]
    assert out[0][1] > out[1][1]
    obs = imagenet_observation(out, lambda idx: torch.eye(10)[torch.as_tensor(idx)])
    assert (obs.x, obs.y) == (0.5, 0.5)
    assert sum(p for _, p in obs.candidates) == pytest.approx(1.0)
    assert obs.embedding[7] > obs.embedding[9] > 0


def test_domain_separates_two_picture_styles() -> None:
    g = torch.Generator().manual_seed(0)
    style_a = torch.randn(200, 32, generator=g) * 0.3 + torch.linspace(1, 2, 32)
    style_b = torch.randn(50, 32, generator=g) * 0.3 - torch.linspace(1, 2, 32)
    domain = PerceptionDomain.fit(style_a[:150])
    assert all(domain.contains(v) for v in style_a[150:])
    assert not any(domain.contains(v) for v in style_b)
    again = PerceptionDomain.from_dict(domain.to_dict())
    assert again.threshold == pytest.approx(domain.threshold)
    with pytest.raises(ValueError, match="pooled features"):
        PerceptionDomain.fit(style_a[:1])


def test_a_photograph_is_linked_through_imagenet(wordnet31_kg, tmp_path) -> None:
    skimage_data = pytest.importorskip("skimage.data")
    from kgmm.pipeline import KGMM, save_model
    from kgmm.reasoning.encoders import build_image_encoder
    from kgmm.reasoning.scene_parser import SceneParser, SceneParserConfig
    from kgmm.reasoning.vqa_model import COUNT, YESNO, VQAModel
    from kgmm.reasoning.vqa_train import default_config

    torch.manual_seed(0)
    kg = wordnet31_kg
    encoder = build_image_encoder("efficientnet-lite0", image_size=224, crop_pct=1.0)
    # the parser's "training style": drawings on a white background
    rng = np.random.default_rng(0)
    drawings = []
    for _ in range(12):
        pixels = np.full((224, 224, 3), 255, dtype=np.uint8)
        for _ in range(3):
            x, y = rng.integers(10, 160, size=2)
            pixels[y:y + 50, x:x + 50] = rng.integers(0, 255, size=3)
        drawings.append(Image.fromarray(pixels))
    domain = PerceptionDomain.fit(encoder.encode(drawings).pooled)
    parser = SceneParser(SceneParserConfig(feature_dim=encoder.dim, embed_dim=384,
                                           objectness_threshold=0.0, max_objects=3))
    vqa = VQAModel(default_config(kg, ["<unk>", COUNT, YESNO], use_kg=True,
                                  image_dim=encoder.dim, layers=2))
    path = save_model(tmp_path / "model", kg=kg, vqa=vqa, parser=parser,
                      parser_entities=["wn:dog.n.01", "wn:apple.n.01"], surface_forms={},
                      perception_domain=domain)
    model = KGMM.load(path, data_dir=tmp_path / "home", kg=kg)

    cat = Image.fromarray(skimage_data.chelsea())
    assert not domain.contains(encoder.encode([cat]).pooled[0])
    answer = model.answer(cat, "What animal is this?")
    from_image = [e for e in answer.evidence.linked_entities if e.source == "image"]
    assert from_image, "the photograph should be linked through the ImageNet classifier"
    feline = kg.index_of("wn:feline.n.01")
    from kgmm.reasoning.scene_graph import TAXONOMY, ancestors

    taxonomy = [kg.relation_index(r) for r in TAXONOMY]
    assert feline in ancestors(kg, kg.index_of(from_image[0].entity_id), taxonomy, 12)
    # an image in the parser's style goes through the parser (untrained here: its objects
    # link only to the two parser entities)
    drawn = model.answer(drawings[0], "What is this?")
    image_links = {e.entity_id for e in drawn.evidence.linked_entities if e.source == "image"}
    assert image_links <= {"wn:dog.n.01", "wn:apple.n.01"}
