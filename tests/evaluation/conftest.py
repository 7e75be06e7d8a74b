"""A toy model, bare no-KG baseline weights and tiny VQA-format datasets, built in seconds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from kgmm.data.records import VQARecord
from kgmm.data.vqa import write_vqa
from kgmm.graph.compiled import CompiledKG
from kgmm.pipeline import save_model
from kgmm.reasoning.encoders import build_image_encoder
from kgmm.reasoning.scene_parser import SceneParser, SceneParserConfig
from kgmm.reasoning.vqa_model import COUNT, YESNO, VQAModel
from kgmm.reasoning.vqa_train import default_config

from ..graph.toy_kg import toy_graph

QUESTIONS = [  # (image_id, question, answers, answer_type, family)
    (1, "Is there a dog?", ["yes"] * 10, "yes/no", "exists"),
    (1, "How many animals are there?", ["2"] * 7 + ["3"] * 3, "number", "count"),
    (1, "What kind of thing is the dog?", ["animal"] * 6 + ["canine"] * 4, "other", "category"),
    (2, "Is there a car?", ["no"] * 10, "yes/no", "exists"),
    (2, "What is the fruit?", ["apple"] * 9 + ["fruit"], "other", None),
    (3, "How many cars are there?", ["1"] * 10, "number", "count"),
    (3, "What has wheels?", ["car"] * 5 + ["automobile"] * 5, "other", "part_whole"),
]


def _write_images(folder: Path, subtype: str, ids: list[int]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for image_id in ids:
        pixels = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"COCO_{subtype}_{image_id:012d}.jpg")


def _records(base_qid: int, *, families: bool, answers: bool = True) -> list[VQARecord]:
    out = []
    for i, (image_id, question, gts, answer_type, family) in enumerate(QUESTIONS):
        extra = {"question_family": family} if families and family else {}
        out.append(VQARecord(question_id=base_qid + i, image_id=image_id, question=question,
                             answers=gts if answers else (),
                             question_type=question.lower().split(" ")[0] if answers else None,
                             answer_type=answer_type if answers else None,
                             multiple_choice_answer=gts[0] if answers and families else None,
                             extra=extra))
    return out


@pytest.fixture(scope="session")
def toy(tmp_path_factory) -> dict[str, Path]:
    """``model`` (KG model dir), ``baseline`` (bare no-KG VQA weights), ``vqa`` (VQA v2 layout,
    val2014 with families), ``okvqa`` (OK-VQA names, no families; val2014 + unannotated
    test2015), ``home`` (KGMM_HOME)."""
    root = tmp_path_factory.mktemp("eval-toy")
    torch.manual_seed(0)
    kg = CompiledKG.build(toy_graph())
    encoder = build_image_encoder("small_cnn", image_size=64)
    vqa = VQAModel(default_config(kg, ["<unk>", COUNT, YESNO], use_kg=True,
                                  image_dim=encoder.dim, layers=2))
    parser = SceneParser(SceneParserConfig(feature_dim=encoder.dim, embed_dim=384,
                                           objectness_threshold=0.0, max_objects=3))
    save_model(root / "model", kg=kg, vqa=vqa, parser=parser,
               parser_entities=["ex:dog", "ex:cat", "ex:apple", "ex:car"],
               surface_forms={"ex:car": "automobile"}, image_size=64,
               trained_image_encoder=encoder)
    baseline = VQAModel(default_config(kg, ["<unk>", "yes", "no", "2", "apple", "car"],
                                       use_kg=False, image_dim=encoder.dim, layers=2))
    baseline.save_pretrained(root / "baseline")

    vqa_dir = root / "vqa"
    _write_images(vqa_dir / "images" / "val2014", "val2014", [1, 2, 3])
    write_vqa(_records(100, families=True), vqa_dir / "v2_OpenEnded_mscoco_val2014_questions.json",
              vqa_dir / "v2_mscoco_val2014_annotations.json", data_subtype="val2014")

    ok_dir = root / "okvqa"
    _write_images(ok_dir / "val2014", "val2014", [1, 2, 3])
    _write_images(ok_dir / "test2015", "test2015", [1, 2, 3])
    write_vqa(_records(200, families=False), ok_dir / "OpenEnded_mscoco_val2014_questions.json",
              ok_dir / "mscoco_val2014_annotations.json", data_subtype="val2014")
    write_vqa(_records(300, families=False, answers=False),
              ok_dir / "OpenEnded_mscoco_test2015_questions.json", data_subtype="test2015")
    return {"root": root, "model": root / "model", "baseline": root / "baseline",
            "vqa": vqa_dir, "okvqa": ok_dir, "home": root / "home"}
