"""Training and evaluating the VQA model on a VQA v2-format benchmark with scene graphs.

``observations="oracle"`` uses the benchmark's stored scene graphs as the detected objects
(ground-truth perception: it measures the reasoning alone); ``"parser"`` uses a trained scene
parser on the image features. Answers for KG nodes are written with the surface form the
training answers use for that entity (``floppy disk`` for ``wn:diskette.n.01``), falling back to
the entity's label.
"""

from __future__ import annotations

import contextlib
import json
import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from kgmm.data import load_vqa, vqa_accuracy
from kgmm.graph.compiled import CompiledKG

from .scene_graph import GraphConfig, ObjectObservation, relation_inverse
from .vqa_data import Example, build_vocabularies, collate, forward_inputs, make_examples
from .vqa_model import VQAConfig, VQAModel

SCENE_FILES = {"train": "train2014", "val": "val2014", "test": "test2015"}
#: ``test-novel-answers`` scored with the training answer space only (nothing declared)
UNDECLARED_SPLIT = "test-novel-answers (training answers only)"


def load_scenes(root: Path, split: str) -> dict[Any, dict[str, Any]]:
    """Scene graphs of a split by image id (``scenes/<subtype>_scenes.json``)."""
    sub = SCENE_FILES.get(split, split)
    data = json.loads((root / "scenes" / f"{sub}_scenes.json").read_text(encoding="utf-8"))
    return {scene["image_id"]: scene for scene in data["scenes"]}


def oracle_observations(kg: CompiledKG, scene: dict[str, Any],
                        node_embeddings: Callable[[Any], torch.Tensor]) -> list[ObjectObservation]:
    """The scene graph's objects as perfect detections."""
    out = []
    width, height = scene["width"], scene["height"]
    for obj in scene["objects"]:
        index = kg.find_index(obj["synset_id"])
        if index is None:
            continue
        x0, y0, x1, y1 = obj["box"]
        out.append(ObjectObservation(
            x=(x0 + x1) / 2 / width, y=(y0 + y1) / 2 / height, objectness=1.0,
            candidates=[(index, 1.0)], embedding=node_embeddings([index])[0],
            box=(x0 / width, y0 / height, x1 / width, y1 / height)))
    return out


def surface_forms(examples: Sequence[Example]) -> dict[int, str]:
    """Entity → the answer string training uses most for it."""
    counts: dict[int, Counter[str]] = defaultdict(Counter)
    for ex in examples:
        if len(ex.answer_entities) == 1:
            counts[ex.answer_entities[0]][ex.answer] += 1
    return {entity: c.most_common(1)[0][0] for entity, c in counts.items()}


@dataclass
class EvalResult:
    accuracy: float
    per_family: dict[str, float]
    count: int


def evaluate(model: VQAModel, examples: Sequence[Example], kg: CompiledKG,
             names: dict[int, str], batch_size: int = 64) -> EvalResult:
    """Official VQA accuracy overall and per question family."""
    model.eval()
    device = next(model.parameters()).device
    scores: list[float] = []
    families: dict[str, list[float]] = defaultdict(list)

    def label(index: int) -> str:
        return names.get(index) or kg.label(index).lower()

    for start in range(0, len(examples), batch_size):
        chunk = examples[start:start + batch_size]
        batch = batch_to(collate(chunk, model.vocab, model.config.use_kg), device)
        with torch.no_grad():
            result = model(**forward_inputs(batch))
        answers = model.decode(result, [e.graph for e in chunk], label, k=1)
        for ex, ans in zip(chunk, answers, strict=True):
            predicted = ans[0][0] if ans else ""
            score = vqa_accuracy(predicted, list(ex.answers))
            scores.append(score)
            families[ex.family or "all"].append(score)
    return EvalResult(float(np.mean(scores)) * 100 if scores else 0.0,
                      {f: float(np.mean(v)) * 100 for f, v in sorted(families.items())},
                      len(scores))


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"``/None → CUDA when available, else CPU; anything else as given."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def batch_to(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """A collated batch (inputs, PyG graphs, targets) moved to ``device``."""
    if device.type == "cpu":
        return batch
    out = dict(batch)
    out["image_vec"] = batch["image_vec"].to(device, non_blocking=True)
    out["text_vec"] = batch["text_vec"].to(device, non_blocking=True)
    for key in ("text_tokens", "text_mask"):
        if batch.get(key) is not None:
            out[key] = batch[key].to(device, non_blocking=True)
    if batch.get("graphs") is not None:
        out["graphs"] = [g.to(device, non_blocking=True) for g in batch["graphs"]]
    out["targets"] = {k: v.to(device, non_blocking=True) for k, v in batch["targets"].items()}
    return out


def train_model(model: VQAModel, train: Sequence[Example], *, epochs: int, lr: float = 2e-3,
                batch_size: int = 32, seed: int = 0,
                on_epoch: Callable[[int, dict[str, float]], None] | None = None,
                device: str | torch.device | None = "auto") -> None:
    """AdamW with cosine decay and gradient clipping, on ``device`` (CUDA when available, with
    bf16 autocast there); the model is left on that device."""
    device = resolve_device(device)
    model.to(device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" \
        else contextlib.nullcontext()
    torch.manual_seed(seed)
    rng = random.Random(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = max(1, epochs * (len(train) // batch_size))
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    order = list(train)
    for epoch in range(epochs):
        model.train()
        rng.shuffle(order)
        losses = []
        for start in range(0, len(order) - batch_size + 1, batch_size):
            batch = batch_to(collate(order[start:start + batch_size], model.vocab,
                                     model.config.use_kg), device)
            with autocast:
                result = model(**forward_inputs(batch))
            loss, terms = model.loss(result, batch["targets"])  # fp32 (BCE refuses autocast)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            losses.append(terms["loss"])
        if on_epoch:
            on_epoch(epoch, {"loss": float(np.mean(losses)) if losses else 0.0})


def prepare(root: Path, splits: Sequence[str], kg: CompiledKG, text_embed: Callable,
            node_embeddings: Callable, graph_config: GraphConfig,
            image_vectors: Callable[[Any], torch.Tensor] | None = None,
            observations: Callable[[Any, dict], list[ObjectObservation]] | None = None,
            limit: int | None = None,
            text_tokens: Callable[[list[str]], list[torch.Tensor]] | None = None,
            split_graph_configs: dict[str, GraphConfig] | None = None,
            ) -> dict[str, list[Example]]:
    """Examples of each split (oracle observations unless ``observations`` is given); a split
    named in ``split_graph_configs`` builds its graphs with that configuration instead."""
    out = {}
    for split in splits:
        records = list(load_vqa(root, split))[:limit]
        scenes = load_scenes(root, split)

        def features(record: Any, scenes: dict = scenes) -> tuple[torch.Tensor, list]:
            scene = scenes[record.image_id]
            obs = (observations(record, scene) if observations
                   else oracle_observations(kg, scene, node_embeddings))
            vec = image_vectors(record) if image_vectors else torch.zeros(1)
            return vec, obs

        config = (split_graph_configs or {}).get(split, graph_config)
        out[split] = make_examples(records, kg, features, text_embed, node_embeddings,
                                   config, text_tokens=text_tokens)
    return out


def default_graph_config() -> GraphConfig:
    """How the demo and the benchmark table build reasoning graphs (with grounding and the
    answer-space columns)."""
    return GraphConfig(grounding=True, spatial="boxes", mention_order=True,
                       answer_space_features=True)


def training_answer_space(records: Iterable[Any], kg: CompiledKG) -> tuple[str, ...]:
    """Entity ids named by the answers of ``records`` (``answer_entity_ids``) that the KG
    holds: the answer space a model learns from."""
    return tuple(sorted({entity for record in records for entity in record.answer_entity_ids
                         if kg.find_index(entity) is not None}))


def answer_space_configs(graph: GraphConfig, train_space: Sequence[str],
                         declared: Sequence[str] = ()) -> tuple[GraphConfig, GraphConfig]:
    """(training, deployment) graph configurations: training graphs see the training answers
    as the answer space; evaluation and the saved model see them plus ``declared`` entity
    ids (labels known at deployment, never seen as answers). Unchanged without the
    answer-space columns."""
    if not graph.answer_space_features:
        return graph, graph
    return (graph.with_answer_space(train_space),
            graph.with_answer_space((*train_space, *declared)))


def default_config(kg: CompiledKG, vocab_itos: list[str], *, use_kg: bool, image_dim: int,
                   conv: str = "relation_attention", layers: int = 3,
                   graph: GraphConfig | None = None, question_pool_heads: int = 4,
                   feature_score: bool = True, node_text_dropout: float = 0.3
                   ) -> VQAConfig:
    """The configuration the demo and the benchmark table use."""
    from .scene_graph import EXTRA_RELATIONS

    return VQAConfig(
        use_kg=use_kg, image_dim=image_dim, fusion={"name": "early", "d_out": 256},
        reasoner={"conv": conv, "hidden": 128, "layers": layers,
                  "num_relations": kg.num_relations + len(EXTRA_RELATIONS),
                  "relation_inverse": relation_inverse(kg), "dropout": 0.1,
                  "feature_score": feature_score, "node_text_dropout": node_text_dropout},
        graph=(graph or default_graph_config()).to_dict(),
        answers=vocab_itos, kg_content_hash=kg.content_hash,
        question_pool_heads=question_pool_heads)


class EncodedImage(NamedTuple):
    """One image's frozen features, as the scene parser and the reasoner read them.

    Attributes:
        tokens: grid tokens ``[P, D]`` float16 (None when not kept).
        pooled: the pooled vector ``[D]`` float32.
        detail: the encoder's finer map ``[D_d, H, W]`` float16 (None when it has none or it
            was not kept).
    """

    tokens: torch.Tensor | None
    pooled: torch.Tensor
    detail: torch.Tensor | None = None


def encode_images(root: Path, splits: tuple[str, ...], encoder: Any, batch_size: int = 32,
                  *, tokens: bool = True) -> dict[Any, EncodedImage]:
    """``image_id →`` :class:`EncodedImage` for every image of the splits (``tokens=False``:
    the pooled vectors only)."""
    from .inputs import load_image

    out: dict[Any, EncodedImage] = {}
    for split in splits:
        paths = {r.image_id: r.image_path for r in load_vqa(root, split)}
        ids = [i for i in paths if i not in out]
        for start in range(0, len(ids), batch_size):
            chunk = ids[start:start + batch_size]
            with torch.no_grad():
                features = encoder.encode([load_image(paths[i]) for i in chunk])
            for k, image_id in enumerate(chunk):
                detail = features.detail[k].half() \
                    if tokens and features.detail is not None else None
                out[image_id] = EncodedImage(features.tokens[k].half() if tokens else None,
                                             features.pooled[k].float(), detail)
    return out


def image_vectors(root: Path, splits: Sequence[str], encoder: Any,
                  batch_size: int = 32) -> dict[Any, torch.Tensor]:
    """Pooled image features of every image of the splits, by image id (frozen encoder)."""
    features = encode_images(root, tuple(splits), encoder, batch_size, tokens=False)
    return {image_id: encoded.pooled for image_id, encoded in features.items()}


def run(root: Path, kg: CompiledKG, text_encoder: Any, node_cache: Any, *, epochs: int = 30,
        limit: int | None = None, log: Callable[[str], None] = print,
        image_encoder: Any = None, declared_answers: Sequence[str] = (),
        graph: GraphConfig | None = None, baseline: bool = True,
        seed: int = 0) -> dict[str, Any]:
    """Train the KG model and the no-KG baseline with oracle perception; evaluate all splits.

    Both models get the same pooled image vector (when ``image_encoder`` is given) and the
    same question vector; only the KG model gets the graph. ``declared_answers`` (entity ids)
    join the answer space of every evaluated split (:func:`answer_space_configs`); ``seed``
    fixes the models' initialisation and the training order.
    """
    splits = ["train", "val", "test", "test-novel-answers", "test-novel-objects"]
    started = time.perf_counter()
    pooled = image_vectors(root, splits, image_encoder) if image_encoder is not None else {}
    image_dim = next(iter(pooled.values())).numel() if pooled else 1
    log(f"image features in {time.perf_counter() - started:.0f} s")
    vec = (lambda record: pooled[record.image_id]) if pooled else None
    train_graph, deployed_graph = answer_space_configs(
        graph or default_graph_config(),
        training_answer_space(list(load_vqa(root, "train"))[:limit], kg), declared_answers)
    data = prepare(root, splits, kg, text_encoder.embed, node_cache, deployed_graph,
                   image_vectors=vec, limit=limit, text_tokens=text_encoder.token_embeddings,
                   split_graph_configs={"train": train_graph})
    kg_splits = list(splits[1:])
    if deployed_graph != train_graph:
        data[UNDECLARED_SPLIT] = prepare(
            root, ["test-novel-answers"], kg, text_encoder.embed, node_cache, train_graph,
            image_vectors=vec, limit=limit,
            text_tokens=text_encoder.token_embeddings)["test-novel-answers"]
        kg_splits.append(UNDECLARED_SPLIT)
    log(f"prepared {sum(len(v) for v in data.values())} questions in "
        f"{time.perf_counter() - started:.0f} s")
    kg_vocab, all_vocab = build_vocabularies(data["train"])
    names = surface_forms(data["train"])
    results: dict[str, Any] = {}
    for use_kg, vocab in ((True, kg_vocab), (False, all_vocab))[:2 if baseline else 1]:
        torch.manual_seed(seed)
        model = VQAModel(default_config(kg, vocab.itos, use_kg=use_kg, image_dim=image_dim,
                                        graph=deployed_graph))
        t0 = time.perf_counter()
        tag = "kg" if use_kg else "no-kg"
        train_model(model, data["train"], epochs=epochs, seed=seed,
                    on_epoch=lambda e, m, tag=tag: log(f"{tag} epoch {e}: {m}"))
        train_s = time.perf_counter() - t0
        name = "kg" if use_kg else "no_kg"
        results[name] = {"train_seconds": train_s}
        for split in kg_splits if use_kg else splits[1:]:
            res = evaluate(model, data[split], kg, names)
            results[name][split] = {"accuracy": res.accuracy, "per_family": res.per_family,
                                    "questions": res.count}
            log(f"{name} {split}: {res.accuracy:.1f}")
        results[name]["model"] = model
    return results
