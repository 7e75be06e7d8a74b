"""Training a retriever from a captioned benchmark folder (COCO captions layout).

1. Frozen features of every text and image of the splits used (cached as safetensors when a
   ``feature_cache`` folder is given).
2. The dual tower on the training split's (caption, image) pairs (InfoNCE + triplet).
3. The cross-attention scorers on listwise hard negatives of the dual tower (training split:
   every distinct caption and query against the images, every image against the captions).
4. Image-side entity linking: a given scene parser (e.g. the VQA model's), else one trained
   here on the benchmark's scene graphs when the folder has them.
5. The combiners of the ``cross``, ``kg`` and ``cross+kg`` rankers on the validation split's
   candidate lists (data the dual tower never saw, so its score is weighted as it will be on
   new data).
6. Metrics on the evaluation splits; embedding indices of one split's images and captions
   (so that ``kgmm retrieve`` works out of the box); the model directory.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .cross import CrossScorerConfig, TrainList, build_cross_scorer, train_cross_scorer
from .data import RetrievalSplit, load_retrieval_split
from .dual import DualTower, DualTowerConfig, train_dual_tower
from .engine import SplitData, collect, evaluate_collected, fit_combiners
from .features import FeatureTable, cached, encode_images, encode_texts
from .index import EmbeddingIndex
from .linking import ImageLinker
from .model import RetrievalModel

Log = Callable[[str], None]


def _features(split: RetrievalSplit, text_encoder: Any, image_encoder: Any, text_key: str,
              image_key: str, cache_dir: Path | None, progress: Any) -> tuple[FeatureTable,
                                                                              FeatureTable]:
    from .engine import split_texts

    texts = split_texts(split)
    keys = [str(i) for i in split.image_ids]
    tfile = cache_dir / f"{split.split}_text.safetensors" if cache_dir else None
    ifile = cache_dir / f"{split.split}_image.safetensors" if cache_dir else None
    t = cached(tfile, text_key, lambda: encode_texts(text_encoder, texts,
                                                     encoder_key=text_key), texts)
    i = cached(ifile, image_key, lambda: encode_images(image_encoder, list(split.image_paths),
                                                       keys, encoder_key=image_key,
                                                       progress=progress), keys)
    return t, i


def cross_training_lists(model: RetrievalModel, data: SplitData, *, negatives: int = 15,
                         max_lists: int = 6000, seed: int = 0) -> list[TrainList]:
    """Hard-negative lists of the dual tower on a (training) split (module docstring, 3)."""
    rng = np.random.default_rng(seed)
    split = data.split
    with torch.no_grad():
        z_img = model.dual.encode_image(data.images.pooled)
        z_txt = model.dual.encode_text(data.texts.pooled)
    pos = {i: n for n, i in enumerate(split.image_ids)}
    relevant: dict[int, set[int]] = {}
    for n, caps in enumerate(split.captions):
        for caption, _ in caps:
            relevant.setdefault(data.text_row(caption), set()).add(n)
    for q in split.queries:
        relevant.setdefault(data.text_row(q.text), set()).update(pos[i] for i in q.relevant)
    lists = []
    rows = list(relevant)
    scores = (z_txt[rows] @ z_img.T).numpy()
    for row, s in zip(rows, scores, strict=True):
        rel = relevant[row]
        order = np.argsort(-s)
        cands = [int(c) for c in order[:negatives + 1]]
        if not rel & set(cands):
            cands[-1] = int(rng.choice(sorted(rel)))
        lists.append(TrainList(row, cands, [c in rel for c in cands], True))
    text_rel: dict[int, set[int]] = {}
    for row, rel in relevant.items():
        for n in rel:
            text_rel.setdefault(n, set()).add(row)
    caption_rows = np.array(sorted({data.text_row(c) for caps in split.captions
                                    for c, _ in caps}))
    scores = (z_img @ z_txt[caption_rows].T).numpy()
    for n, s in enumerate(scores):
        rel = text_rel.get(n, set()) & set(caption_rows.tolist())
        if not rel:
            continue
        cands = [int(caption_rows[j]) for j in np.argsort(-s)[:negatives + 1]]
        if not rel & set(cands):
            cands[-1] = int(rng.choice(sorted(rel)))
        lists.append(TrainList(n, cands, [c in rel for c in cands], False))
    if len(lists) > max_lists:
        keep = rng.choice(len(lists), max_lists, replace=False)
        lists = [lists[i] for i in sorted(keep)]
    return lists


def train_parser_from_scenes(root: Path, split: RetrievalSplit, images: FeatureTable, kg: Any,
                             node_embeddings: Any, *, epochs: int = 15,
                             splits: Sequence[str] = ()) -> tuple[Any, list[int]] | None:
    """A scene parser trained on ``scenes/<sub>_scenes.json`` of the training split, and the
    entity vocabulary it links to (every object synset in the given splits' scenes)."""
    from kgmm.reasoning.scene_parser import (
        SceneParser,
        SceneParserConfig,
        scene_parser_targets,
        stack_targets,
        train_scene_parser,
    )

    from .data import split_file_stem

    def scenes_of(name: str) -> dict[Any, Any] | None:
        file = root / "scenes" / f"{split_file_stem(root, name)}_scenes.json"
        if not file.is_file():
            return None
        return {s["image_id"]: s for s in json.loads(file.read_text("utf-8"))["scenes"]}

    train = scenes_of(split.split)
    if not train or images.tokens is None:
        return None
    objects = sorted({o["synset_id"] for s in train.values() for o in s["objects"]
                      if kg.find_index(o["synset_id"]) is not None})
    vocab = set(objects)
    for name in splits:
        for s in (scenes_of(name) or {}).values():
            vocab.update(o["synset_id"] for o in s["objects"]
                         if kg.find_index(o["synset_id"]) is not None)
    p = images.tokens.shape[1]
    side = round(p ** 0.5)
    grid = (side, side)
    index = {e: i for i, e in enumerate(objects)}
    ids = [i for i in split.image_ids if i in train]
    table = images.select([str(i) for i in ids])
    targets = stack_targets([scene_parser_targets(train[i], grid, entity_index=index)
                             for i in ids])
    assert table.tokens is not None
    parser = SceneParser(SceneParserConfig(feature_dim=table.tokens.shape[-1],
                                           embed_dim=node_embeddings.dim, grid_size=grid))
    train_scene_parser(parser, table.tokens.float(), targets,
                       node_embeddings([kg.index_of(e) for e in objects]), epochs=epochs,
                       grid_size=grid)
    return parser.eval(), [kg.index_of(e) for e in sorted(vocab)]


def build_indices(model: RetrievalModel, data: SplitData) -> dict[str, EmbeddingIndex]:
    """An image index (payload: path, captions, linked concepts) and a caption index."""
    kg = model.kg
    split = data.split
    with torch.no_grad():
        z_img = model.dual.encode_image(data.images.pooled)
        captions = list(dict.fromkeys(c for caps in split.captions for c, _ in caps))
        z_cap = model.dual.encode_text(data.texts.select(captions).pooled)
    payload = [{"path": str(p) if p is not None else None,
                "captions": [c for c, _ in caps],
                "concepts": [g.to_json(kg) for g in groups]}
               for p, caps, groups in zip(split.image_paths, split.captions, data.image_groups,
                                          strict=True)]
    image_index = EmbeddingIndex(z_img, list(split.image_ids), kind="image",
                                 model=model.dual.fingerprint(), encoder=model.image_key,
                                 payload=payload)
    caption_index = EmbeddingIndex(z_cap, list(range(len(captions))), kind="text",
                                   model=model.dual.fingerprint(), encoder=model.text_key,
                                   payload=[{"text": c} for c in captions])
    return {"index": image_index, "caption_index": caption_index}


def train_retriever(bench: str | Path, out: str | Path | None, *, kg: Any,
                    text_encoder: Any = None, image_encoder: Any = None, parser: Any = None,
                    linker_entities: Sequence[str] | None = None, node_embeddings: Any = None,
                    data_dir: str | Path | None = None, image_size: int = 224,
                    image_encoder_name: str = "efficientnet-lite0", crop_pct: float = 1.0,
                    epochs: int = 40, cross_epochs: int = 2, max_cross_lists: int = 3000,
                    cross_kinds: Sequence[str] = ("additive", "transformer"), k: int = 100,
                    train_split: str = "train", fit_split: str = "val",
                    eval_splits: Sequence[str] = ("test",), index_split: str | None = "test",
                    parser_epochs: int = 15, feature_cache: str | Path | None = None,
                    seed: int = 0, log: Log = print, progress: Any = None
                    ) -> tuple[RetrievalModel, dict[str, Any]]:
    """Steps 1–6 of the module docstring; returns the model and its metrics (saved in the
    directory ``out`` too, unless ``out`` is None)."""
    from kgmm.graph.home import kgmm_home
    from kgmm.reasoning.encoders import build_image_encoder, build_text_encoder
    from kgmm.reasoning.node_embeddings import NodeEmbeddingCache
    from kgmm.reasoning.training import seed_everything

    started = time.perf_counter()
    seed_everything(seed)
    bench = Path(bench)
    cache_dir = Path(feature_cache) if feature_cache is not None else None
    text_encoder = text_encoder or build_text_encoder("minilm")
    image_encoder = image_encoder or build_image_encoder(image_encoder_name,
                                                         image_size=image_size,
                                                         crop_pct=crop_pct)
    node_embeddings = node_embeddings or NodeEmbeddingCache(
        kg, text_encoder, encoder_key="minilm", cache_dir=kgmm_home(data_dir) / "cache")
    manifest = {"text_encoder": "minilm", "image_encoder": image_encoder_name,
                "image_size": image_size, "crop_pct": crop_pct, "benchmark": str(bench)}
    model = RetrievalModel(kg, text_encoder, image_encoder, DualTower(), {}, {}, None,
                           node_embeddings, manifest)
    names = list(dict.fromkeys([train_split, fit_split, *eval_splits,
                                *([index_split] if index_split else [])]))
    splits = {n: load_retrieval_split(bench, n) for n in names}
    feats = {n: _features(splits[n], text_encoder, image_encoder, model.text_key,
                          model.image_key, cache_dir, progress) for n in names}
    log(f"features of {', '.join(names)} in {time.perf_counter() - started:.0f} s")

    train_t, train_i = feats[train_split]
    cfg = DualTowerConfig(text_dim=train_t.pooled.shape[1], image_dim=train_i.pooled.shape[1])
    model.dual = DualTower(cfg)
    t_pos = train_t.index()
    pairs = [(t_pos[c], n) for n, caps in enumerate(splits[train_split].captions)
             for c, _ in caps]
    t0 = time.perf_counter()
    train_dual_tower(model.dual, train_t.pooled, train_i.pooled, pairs, epochs=epochs, seed=seed)
    log(f"dual tower: {len(pairs)} pairs, {epochs} epochs in {time.perf_counter() - t0:.0f} s")

    if parser is None:
        trained = train_parser_from_scenes(bench, splits[train_split], train_i, kg,
                                           node_embeddings, epochs=parser_epochs,
                                           splits=names)
        if trained is not None:
            parser, vocab = trained
            model.linker = ImageLinker(parser, vocab, node_embeddings)
            log(f"scene parser trained on {train_split} scenes ({len(vocab)} entities)")
        else:
            log("no scene parser and no scene graphs: the KG re-ranker will have no image "
                "concepts")
    else:
        vocab = [kg.index_of(e) for e in (linker_entities or []) if kg.find_index(e) is not None]
        model.linker = ImageLinker(parser, vocab, node_embeddings)

    data = {n: SplitData(splits[n], *feats[n], model.image_concepts(feats[n][1]))
            for n in names}
    t0 = time.perf_counter()
    lists = cross_training_lists(model, data[train_split], max_lists=max_cross_lists, seed=seed)
    texts, images = data[train_split].rows()
    for kind in cross_kinds:
        scorer = build_cross_scorer(CrossScorerConfig(
            kind=kind, text_dim=cfg.text_dim, image_dim=cfg.image_dim,
            hidden=256 if kind == "additive" else 128,
            patches=int(train_i.tokens.shape[1]) if train_i.tokens is not None else 49))
        train_cross_scorer(scorer, texts, images, lists, epochs=cross_epochs, seed=seed)
        model.cross[kind] = scorer
    log(f"cross scorers {list(cross_kinds)}: {len(lists)} lists in "
        f"{time.perf_counter() - t0:.0f} s")

    t0 = time.perf_counter()
    fit_combiners(model, collect(model, data[fit_split], k=k))
    log(f"combiners fitted on {fit_split} in {time.perf_counter() - t0:.0f} s: " + "; ".join(
        f"{r}/{d}: {c.weights()}" for r, by in model.combiners.items() for d, c in by.items()))

    metrics: dict[str, Any] = {"k": k, "splits": {}}
    for name in eval_splits:
        t0 = time.perf_counter()
        metrics["splits"][name] = evaluate_collected(model, collect(model, data[name], k=k),
                                                     model.rankers())
        log(f"evaluated {name} in {time.perf_counter() - t0:.0f} s")
    metrics["train_seconds"] = round(time.perf_counter() - started, 1)
    model.manifest["metrics"] = metrics
    model.manifest["training"] = {"train_split": train_split, "fit_split": fit_split,
                                  "epochs": epochs, "cross_epochs": cross_epochs,
                                  "cross_lists": len(lists), "candidates": k, "seed": seed}
    if out is not None:
        indices = build_indices(model, data[index_split]) if index_split else None
        model.save(out, indices=indices)
        log(f"retriever saved to {out} ({time.perf_counter() - started:.0f} s in all)")
    return model, metrics
