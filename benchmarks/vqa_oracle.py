"""VQA accuracy with ground-truth perception: the reasoning alone, KG model vs no-KG baseline.

    python benchmarks/vqa_oracle.py --data BENCH [--epochs 30] [--data-dir DIR] [--json OUT]
                                    [--declare-answers manifest|none]

The benchmark's stored scene graphs stand in for the scene parser (boxes, synsets); both
models get the same EfficientNet-Lite0 pooled image vector and MiniLM question features and
train with the same loop (:func:`kgmm.reasoning.vqa_train.run`). Prints accuracy per split and
per family; ``--json`` writes them (the README's results table comes from this file). The
benchmark's category list (``manifest.json``) joins the answer space of the evaluated splits
unless ``--declare-answers none``; test-novel-answers is then also scored with the training
answers alone.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

SPLITS = ("val", "test", "test-novel-answers", "test-novel-objects")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--data-dir", default=None, help="KGMM_HOME holding the compiled KG")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None, help="questions per split")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--declare-answers", choices=("manifest", "none"), default="manifest")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import torch

    from kgmm.data.openmoji.build import load_default_kg
    from kgmm.reasoning import vqa_train
    from kgmm.reasoning.encoders import build_image_encoder, build_text_encoder
    from kgmm.reasoning.node_embeddings import NodeEmbeddingCache
    from kgmm.reasoning.train_pipeline import manifest_categories

    torch.set_num_threads(args.threads)
    kg = load_default_kg(args.data_dir)
    text = build_text_encoder("minilm")
    image = build_image_encoder("efficientnet-lite0", image_size=224)
    cache = NodeEmbeddingCache(kg, text, encoder_key="minilm")
    started = time.perf_counter()
    declared = (manifest_categories(json.loads((args.data / "manifest.json").read_text()))
                if args.declare_answers == "manifest" else [])
    results = vqa_train.run(args.data, kg, text, cache, epochs=args.epochs, limit=args.limit,
                            image_encoder=image, declared_answers=declared, seed=args.seed,
                            log=lambda m: print(m, flush=True))
    cache.save()
    out = {"machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
           "epochs": args.epochs, "seconds": round(time.perf_counter() - started, 1),
           "declared_answers": len(declared), "seed": args.seed}
    for name, result in results.items():
        result.pop("model", None)
        out[name] = result
    families = sorted({f for r in out["kg"].values() if isinstance(r, dict)
                       for f in r.get("per_family", {})})
    print(f"\n{'split':<22}{'KG':>8}{'no-KG':>8}")
    for split in SPLITS:
        print(f"{split:<22}{out['kg'][split]['accuracy']:>8.1f}"
              f"{out['no_kg'][split]['accuracy']:>8.1f}")
    if vqa_train.UNDECLARED_SPLIT in out["kg"]:
        print(f"{'  training answers only':<22}"
              f"{out['kg'][vqa_train.UNDECLARED_SPLIT]['accuracy']:>8.1f}{'—':>8}")
    print(f"\n{'family':<22}" + "".join(f"{s[:14]:>16}" for s in SPLITS))
    for family in families:
        cells = [out["kg"][s]["per_family"].get(family) for s in SPLITS]
        print(f"{family:<22}" + "".join(f"{c:>16.1f}" if c is not None else f"{'—':>16}"
                                        for c in cells))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
