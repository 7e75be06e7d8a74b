"""Retrieval benchmark: the metrics table of a retriever on a benchmark folder, and the
latency of re-ranking 100 candidates on CPU.

    python benchmarks/retrieval.py --model DIR --data /path/to/om2k \\
        --split test --split test-novel-answers --split test-novel-objects \\
        --out docs/retrieval_om2k.json

Latency (per query, median and 95th percentile over the split's text queries, the dual
tower's top ``--candidates`` images with the concepts the index stored for them):

* ``kg_rerank`` — :func:`kgmm.reasoning.retrieval.rerank.rerank_candidates` with
  ``method="kg"``: query linking (lexicon + sense re-scoring with the query vector the first
  stage computed), KG features of every candidate, the combiner, evidence of the top 10;
  ``warm`` is the steady state, ``cold`` the first query with empty KG caches;
* ``cross_additive`` / ``cross_transformer`` — scoring the 100 (query, image) pairs from
  frozen features (the image features come from the index side, as for the first stage);
* ``first_stage`` — encoding the query (MiniLM) and the exact index search, for reference.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch


def _percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"median_ms": round(statistics.median(ordered), 2), "p95_ms": round(p95, 2),
            "n": len(ordered)}


def latency(model: Any, data: Any, *, candidates: int = 100, queries: int = 60) -> dict:
    """The latencies of the module docstring on one prepared split."""
    from kgmm.reasoning.retrieval.cross import score_pairs
    from kgmm.reasoning.retrieval.index import EmbeddingIndex
    from kgmm.reasoning.retrieval.kg_features import ConceptGraph
    from kgmm.reasoning.retrieval.rerank import encode_query, rerank_candidates

    split = data.split
    with torch.no_grad():
        z = model.dual.encode_image(data.images.pooled)
    payload = [{"concepts": [g.to_json(model.kg) for g in groups]}
               for groups in data.image_groups]
    index = EmbeddingIndex(z, list(range(len(split.image_ids))), kind="image", payload=payload)
    every = max(1, len(split.queries) // max(queries, 1))  # both query kinds
    texts = [q.text for q in split.queries][::every][:queries]
    out: dict[str, Any] = {"candidates": min(candidates, len(index)), "queries": len(texts)}
    model._graph = ConceptGraph(model.kg, model.node_embeddings)  # cold caches
    first, cold, warm = [], [], []
    prepared = []
    for text in texts:
        t0 = time.perf_counter()
        vec, _, feats = encode_query(model, text)
        scores, pos = index.search(vec, candidates)
        first.append(1e3 * (time.perf_counter() - t0))
        cands = [{"id": int(p), "score": float(s), **index.payload[p]}
                 for s, p in zip(scores[0], pos[0], strict=True)]
        prepared.append((text, cands, feats, pos[0]))
    for timings in (cold, warm):
        for text, cands, feats, _ in prepared:
            t0 = time.perf_counter()
            rerank_candidates(model, text, cands, k=10, method="kg", evidence=True,
                              query_features=feats)
            timings.append(1e3 * (time.perf_counter() - t0))
    out["first_stage"] = _percentiles(first)
    out["kg_rerank_cold"] = _percentiles(cold)
    out["kg_rerank_warm"] = _percentiles(warm)
    texts_rows, images_rows = data.rows()
    for kind, scorer in model.cross.items():
        timings = []
        for text, _, _, pos in prepared:
            row = data.text_row(text)
            t0 = time.perf_counter()
            score_pairs(scorer, texts_rows, images_rows, [row] * len(pos), pos)
            timings.append(1e3 * (time.perf_counter() - t0))
        out[f"cross_{kind}"] = _percentiles(timings)
    return out


def main() -> None:
    from kgmm.reasoning.retrieval.data import load_retrieval_split
    from kgmm.reasoning.retrieval.engine import evaluate, prepare_split
    from kgmm.reasoning.retrieval.features import FeatureTable
    from kgmm.reasoning.retrieval.report import markdown_table
    from kgmm.retrieval import Retriever

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="retriever directory")
    parser.add_argument("--data", required=True, help="benchmark folder (COCO captions)")
    parser.add_argument("--split", action="append", default=None, help="repeatable")
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--latency-queries", type=int, default=60)
    parser.add_argument("--no-eval", action="store_true", help="latency only")
    parser.add_argument("--feature-cache", default=None,
                        help="folder of <split>_text/_image.safetensors feature tables")
    parser.add_argument("--data-dir", default=None, help="kgmm data directory")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    splits = args.split or ["test"]
    retriever = Retriever.load(args.model, data_dir=args.data_dir)
    model = retriever.model
    results: dict[str, Any] = {"model": args.model, "data": args.data,
                               "candidates": args.candidates, "splits": {},
                               "threads": args.threads, "torch": torch.__version__}
    prepared = {}
    for split in splits:
        s = load_retrieval_split(args.data, split)
        texts = images = None
        if args.feature_cache:
            cache = Path(args.feature_cache)
            if (cache / f"{split}_text.safetensors").is_file():
                texts = FeatureTable.load(cache / f"{split}_text.safetensors", model.text_key)
                images = FeatureTable.load(cache / f"{split}_image.safetensors",
                                           model.image_key)
        prepared[split] = prepare_split(model, s, texts=texts, images=images)
        if not args.no_eval:
            t0 = time.perf_counter()
            results["splits"][split] = evaluate(model, prepared[split], k=args.candidates)
            print(f"{split}: evaluated in {time.perf_counter() - t0:.0f} s", flush=True)
    if not args.no_eval:
        print(markdown_table(results))
    results["latency"] = latency(model, prepared[splits[0]], candidates=args.candidates,
                                 queries=args.latency_queries)
    print(json.dumps(results["latency"], indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
