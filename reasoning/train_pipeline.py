"""Training a complete model from a benchmark folder: perception, reasoning, baseline, report.

1. Frozen encoders: EfficientNet-Lite0 grid, detail map and pooled features of every image
   (once), MiniLM
   sentence vectors of every question (once), node texts on demand (cached on disk).
2. The scene parser (two scales where the encoder has a detail map) is trained on the train
   split's scene graphs against the text
   embeddings of the train objects' synsets; at test time it links against every object
   synset of the benchmark (novel ones included: zero-shot).
3. Every question's reasoning graph is built from the *parsed* objects (not the stored scene
   graphs), and the KG model and the no-KG baseline are trained on the same inputs.
4. Both are evaluated with the official VQA accuracy on every split, per question family;
   the KG model, its parser and the KG snapshot are saved as a model directory.

The answer space (:mod:`.scene_graph`): training graphs mark the training answers; the
evaluated splits and the saved model mark them plus ``declared_answers`` — by default the
category list of the benchmark's manifest, labels a deployment knows without having seen
them answered (generalised zero-shot). ``test-novel-answers`` is also scored with
the training answer space alone (``test-novel-answers (training answers only)``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from kgmm.data import load_vqa
from kgmm.graph.compiled import CompiledKG

from .perception_domain import PerceptionDomain
from .scene_graph import ObjectObservation, observations_from_detections
from .scene_parser import (
    SceneParser,
    SceneParserConfig,
    scene_parser_targets,
    stack_targets,
    train_scene_parser,
)
from .vqa_data import build_vocabularies, make_examples
from .vqa_model import VQAModel
from .vqa_train import (
    UNDECLARED_SPLIT,
    answer_space_configs,
    default_config,
    default_graph_config,
    encode_images,
    evaluate,
    load_scenes,
    surface_forms,
    train_model,
    training_answer_space,
)

SPLITS = ("train", "val", "test", "test-novel-answers", "test-novel-objects")


def train_full(root: Path, kg: CompiledKG, out: Path, *, text_encoder: Any, image_encoder: Any,
               node_cache: Any, epochs: int = 30, parser_epochs: int = 15,
               declared_answers: Sequence[str] | None = None,
               log: Callable[[str], None] = print) -> dict[str, Any]:
    """Steps 1–4 of the module docstring; returns the metrics (also saved with the model).
    ``declared_answers``: entity ids added to the answer space after training (None: the
    manifest's categories)."""
    from kgmm.pipeline import save_model

    started = time.perf_counter()
    manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    if declared_answers is None:
        declared_answers = manifest_categories(manifest)
    features = encode_images(root, SPLITS, image_encoder)
    grid = tuple(image_encoder.encode([_blank(image_encoder)]).grid_size)
    some = next(iter(features.values()))
    # the parser's cells: the detail map's where the encoder has one, else the tokens'
    parse_grid = grid if some.detail is None else tuple(some.detail.shape[-2:])
    log(f"image features: {len(features)} images in {time.perf_counter() - started:.0f} s")

    scenes = {split: load_scenes(root, split) for split in SPLITS}
    train_objects = sorted({o["synset_id"] for s in scenes["train"].values()
                            for o in s["objects"] if kg.find_index(o["synset_id"]) is not None})
    all_objects = sorted({o["synset_id"] for split in SPLITS for s in scenes[split].values()
                          for o in s["objects"] if kg.find_index(o["synset_id"]) is not None})
    train_index = {e: i for i, e in enumerate(train_objects)}
    train_ids = list(scenes["train"])
    targets = stack_targets([scene_parser_targets(scenes["train"][i], parse_grid,
                                                  entity_index=train_index)
                             for i in train_ids])
    tokens, detail = _stacked_features(features, train_ids)
    parser = SceneParser(SceneParserConfig(
        feature_dim=tokens.shape[-1], embed_dim=text_encoder.dim, grid_size=parse_grid,
        detail_dim=0 if detail is None else int(detail.shape[1])))
    train_embeddings = node_cache([kg.index_of(e) for e in train_objects])
    t0 = time.perf_counter()
    train_scene_parser(parser, tokens, targets, train_embeddings, epochs=parser_epochs,
                       grid_size=grid, detail=detail)
    log(f"scene parser: {len(train_ids)} scenes, {parse_grid[0]}×{parse_grid[1]} cells, "
        f"{parser_epochs} epochs in "
        f"{time.perf_counter() - t0:.0f} s")
    parser.eval()
    candidate_index = [kg.index_of(e) for e in all_objects]
    candidate_matrix = node_cache(candidate_index)
    parser_metrics = _calibrate_and_evaluate_parser(
        parser, features, scenes, grid, all_objects, candidate_matrix,
        novel=sorted(set(all_objects) - set(train_objects)))
    log(f"scene parser detection: threshold {parser.config.objectness_threshold:g}, "
        f"nms_iou {parser.config.nms_iou:g} (best val F1); " + "; ".join(
            f"{split} P {m['det_precision']:.2f} R {m['det_recall']:.2f} "
            f"link {m['det_link_top1']:.2f}"
            for split, m in parser_metrics.items() if isinstance(m, dict)))

    parsed: dict[Any, list[ObjectObservation]] = {}

    def observe(record: Any) -> tuple[torch.Tensor, list[ObjectObservation]]:
        """The image's pooled vector and parsed objects (parsed once per image: several
        questions, and the undeclared copy of test-novel-answers, share an image)."""
        encoded = features[record.image_id]
        if record.image_id not in parsed:
            tokens, detail = _stacked_features(features, [record.image_id])
            detections = parser.parse(tokens, candidate_matrix,
                                      [str(i) for i in candidate_index], grid_size=grid,
                                      detail=detail)[0]
            parsed[record.image_id] = observations_from_detections(detections)
        return encoded.pooled, parsed[record.image_id]

    train_space = training_answer_space(load_vqa(root, "train"), kg)
    train_graph, deployed_graph = answer_space_configs(default_graph_config(), train_space,
                                                       declared_answers)
    # (name, split read, graph configuration): the evaluated splits see the declared answers;
    # test-novel-answers is scored once more with the training answers alone
    plan = [(split, split, train_graph if split == "train" else deployed_graph)
            for split in SPLITS]
    if deployed_graph != train_graph:
        plan.append((UNDECLARED_SPLIT, "test-novel-answers", train_graph))
    data = {name: make_examples(load_vqa(root, split), kg, observe, text_encoder.embed,
                                node_cache, config, text_tokens=text_encoder.token_embeddings)
            for name, split, config in plan}
    log(f"questions prepared in {time.perf_counter() - started:.0f} s")
    kg_vocab, all_vocab = build_vocabularies(data["train"])
    names = surface_forms(data["train"])
    metrics: dict[str, Any] = {"benchmark": {"scenes": manifest.get("scenes"),
                                             "seed": manifest.get("seed")},
                               "parser": parser_metrics}
    models = {}
    for use_kg, vocab in ((True, kg_vocab), (False, all_vocab)):
        tag = "kg" if use_kg else "no_kg"
        model = VQAModel(default_config(kg, vocab.itos, use_kg=use_kg,
                                        image_dim=image_encoder.dim, graph=deployed_graph))
        t0 = time.perf_counter()
        train_model(model, data["train"], epochs=epochs,
                    on_epoch=lambda e, m, tag=tag: log(f"{tag} epoch {e}: {m}"))
        metrics[tag] = {"train_seconds": round(time.perf_counter() - t0, 1)}
        for split in [name for name, *_ in plan[1:] if use_kg or name in SPLITS]:
            res = evaluate(model, data[split], kg, names)
            metrics[tag][split] = {"accuracy": round(res.accuracy, 2),
                                   "per_family": {k: round(v, 2)
                                                  for k, v in res.per_family.items()},
                                   "questions": res.count}
            log(f"{tag} {split}: {res.accuracy:.1f}")
        models[tag] = model
    node_cache.save()
    domain = PerceptionDomain.fit(torch.stack([features[i].pooled for i in train_ids]))
    save_model(out, kg=kg, vqa=models["kg"], parser=parser, perception_domain=domain,
               baseline=models["no_kg"],
               parser_entities=all_objects,
               surface_forms={kg.id_of(i): t for i, t in names.items()},
               image_size=image_encoder.image_size, metrics=metrics)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1), encoding="utf-8")
    log(f"model saved to {out} ({time.perf_counter() - started:.0f} s in all)")
    return metrics


def manifest_categories(manifest: dict[str, Any]) -> list[str]:
    """The synset ids of a benchmark manifest's category list (``categories``)."""
    return [c["synset_id"] for c in manifest.get("categories", []) if "synset_id" in c]


def _stacked_features(features: dict[Any, Any], ids: Sequence[Any]
                      ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The tokens ``[N, P, D]`` and detail maps ``[N, D_d, H, W]`` (None where the encoder
    has none) of the images ``ids``, as float32."""
    tokens = torch.stack([features[i].tokens.float() for i in ids])
    if features[ids[0]].detail is None:
        return tokens, None
    return tokens, torch.stack([features[i].detail.float() for i in ids])


def _calibrate_and_evaluate_parser(parser: Any, features: dict[Any, Any],
                                   scenes: dict[str, dict[Any, Any]], grid: tuple[int, ...],
                                   entities: list[str], entity_matrix: torch.Tensor, *,
                                   novel: list[str]) -> dict[str, Any]:
    """Choose the parser's detection threshold and suppression on ``val`` (best detection
    F1, :func:`~kgmm.reasoning.parser_calibration.calibrate_detection`), then its detection
    precision / recall / linking top-1 on val, test and the novel objects (linking of the
    novel synsets only)."""
    from kgmm.reasoning.parser_calibration import calibrate_detection
    from kgmm.reasoning.scene_parser import evaluate_scene_parser

    index = {e: i for i, e in enumerate(entities)}

    def split_inputs(split: str) -> tuple[torch.Tensor, torch.Tensor | None, Any, list[Any]]:
        ids = list(scenes[split])
        tokens, detail = _stacked_features(features, ids)
        parse_grid = grid if detail is None else tuple(detail.shape[-2:])
        targets = stack_targets([scene_parser_targets(scenes[split][i], parse_grid,
                                                      entity_index=index) for i in ids])
        return tokens, detail, targets, [scenes[split][i] for i in ids]

    inputs = {split: split_inputs(split) for split in ("val", "test", "test-novel-objects")
              if scenes.get(split)}
    if "val" in inputs:
        val_features, val_detail, val_targets, val_scenes = inputs["val"]
        calibrate_detection(parser, val_features, val_targets, entity_matrix, val_scenes,
                            entities, grid_size=grid, detail=val_detail)
    out: dict[str, Any] = {"objectness_threshold": parser.config.objectness_threshold,
                           "nms_iou": parser.config.nms_iou}
    keys = ("det_precision", "det_recall", "det_link_top1")
    for split, (split_features, split_detail, targets, split_scenes) in inputs.items():
        res = evaluate_scene_parser(parser, split_features, targets, entity_matrix,
                                    scenes=split_scenes, entity_ids=entities, grid_size=grid,
                                    detail=split_detail,
                                    eval_entities=novel if split == "test-novel-objects" and novel
                                    else None)
        out[split] = {k: round(float(res[k]), 4) for k in keys}
    return out


def _blank(encoder: Any) -> Any:
    from PIL import Image

    return Image.new("RGB", (encoder.image_size, encoder.image_size), (255, 255, 255))
