"""``kgmm.answer`` latency and ``answer_batch`` throughput on CPU, with the full WordNet KG.

    python benchmarks/answer_latency.py --model DIR --data BENCH [--split test] [--threads 2]
        [--image-dtype auto|float32|bfloat16]

Three measurements on the questions of one split (model loaded and warmed up first):

* ``answer`` with a **new image** for every question (encoder + parser + graph + reasoner);
* ``answer`` on an image whose features are **cached** (VQA asks several questions of one
  image; the image tower runs once per image);
* ``answer_batch`` over batches of questions in file order (several questions per image, as
  in VQA; the uncached images of a call are encoded as one batch).

Prints a table and optionally writes JSON (``--json``).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--split", default="test")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--image-dtype", default="auto",
                        help="image tower precision: auto (bf16 where native), float32, bfloat16")
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    import torch

    from kgmm.data import load_vqa
    from kgmm.pipeline import KGMM
    from kgmm.reasoning.encoders.precision import cpu_has_native_bf16

    torch.set_num_threads(args.threads)
    records = [r for r in load_vqa(args.data, args.split) if r.image_path is not None]
    by_image: dict[object, list] = {}
    for record in records:
        by_image.setdefault(record.image_id, []).append(record)
    firsts = [group[0] for group in by_image.values()]
    model = KGMM.load(args.model, data_dir=args.data_dir)
    encoder = model.parts.image_encoder
    if hasattr(encoder.config, "inference_dtype"):
        encoder.config.inference_dtype = args.image_dtype
    # warm-up: lazy caches (taxonomy, fused image net, and the node text embeddings of every
    # KG node these questions touch, which a deployed model has computed long before)
    limit = 4 * args.batch_size * 4
    warm = [(r.image_path, r.question) for r in records[:max(limit, args.questions * 6)]]
    for start in range(0, len(warm), args.batch_size):
        model.answer_batch(warm[start:start + args.batch_size])
    for image, question in warm[:20]:  # and the evidence search, which answer_batch skips
        model.answer(image, question)

    def fresh_cache() -> None:
        model._features = type(model._features)(256)

    fresh_cache()
    new_image = []
    for record in firsts[8:8 + args.questions]:
        t = time.perf_counter()
        model.answer(record.image_path, record.question)
        new_image.append((time.perf_counter() - t) * 1000)

    cached = []
    for group in list(by_image.values())[8:8 + args.questions]:
        model.answer(group[0].image_path, group[0].question)  # encodes the image
        for record in group[1:]:
            t = time.perf_counter()
            model.answer(record.image_path, record.question)
            cached.append((time.perf_counter() - t) * 1000)

    fresh_cache()
    pairs = [(r.image_path, r.question) for r in records]
    answered, started = 0, time.perf_counter()
    for start in range(0, min(len(pairs), limit), args.batch_size):
        batch = pairs[start:start + args.batch_size]
        model.answer_batch(batch)
        answered += len(batch)
    batch_qps = answered / (time.perf_counter() - started)
    started = time.perf_counter()
    for start in range(0, answered, args.batch_size):  # the same questions, images cached
        model.answer_batch(pairs[start:start + args.batch_size])
    cached_qps = answered / (time.perf_counter() - started)

    rows = {
        "answer, new image": new_image,
        "answer, cached image": cached,
    }
    result = {"machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
              "threads": args.threads, "model": str(args.model),
              "image_dtype": args.image_dtype, "cpu_native_bf16": cpu_has_native_bf16(),
              "kg_nodes": model.parts.kg.num_nodes}
    print(f"{'measurement':24s} {'n':>5s} {'p50 ms':>8s} {'p99 ms':>8s} {'mean ms':>8s}")
    for name, values in rows.items():
        p50, p99, mean = percentile(values, 50), percentile(values, 99), statistics.mean(values)
        print(f"{name:24s} {len(values):5d} {p50:8.1f} {p99:8.1f} {mean:8.1f}")
        result[name] = {"n": len(values), "p50_ms": round(p50, 2), "p99_ms": round(p99, 2),
                        "mean_ms": round(mean, 2)}
    print(f"answer_batch ({args.batch_size} questions per call, in file order, images "
          f"not cached): {batch_qps:.1f} q/s "
          f"over {answered} questions")
    print(f"answer_batch, images cached: {cached_qps:.1f} q/s")
    result["answer_batch_qps"] = round(batch_qps, 1)
    result["answer_batch_cached_images_qps"] = round(cached_qps, 1)
    result["answer_batch_size"] = args.batch_size
    if args.json:
        args.json.write_text(json.dumps(result, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
