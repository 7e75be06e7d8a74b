"""VQA training on a GPU: samples/s, time to a target accuracy, CPU-vs-GPU agreement.

Two steps, so that the GPU host needs only torch, torch-geometric and safetensors:

    # here (CPU; needs the benchmark, the compiled WordNet, MiniLM): prepare the examples
    python benchmarks/gpu_train.py pack --data om2k --out gpu_pack [--train 3000]
    # on the GPU host (kgmm installed with --no-deps, or the repository on PYTHONPATH)
    python benchmarks/gpu_train.py run --pack gpu_pack [--epochs 30] [--target 80] [--json F]

``pack`` writes ground-truth-perception examples (the ``benchmarks/vqa_oracle.py`` setting) of
train / val / test as a :mod:`kgmm.reasoning.example_pack` (float16, shared node rows; about
60 MiB for 3,000 + 500 + 500 questions) with the model configuration and node labels.
``run`` then

1. trains the KG model on CUDA (bf16 autocast, as ``kgmm train`` does there) and times every
   epoch: samples/s, and the time until val accuracy first reaches ``--target``;
2. measures CPU training samples/s on the same host for ``--cpu-epochs`` epochs (same seed);
3. evaluates the GPU-trained model on test on the GPU and, copied, on the CPU: accuracy on
   each, the share of identical answers and the largest node-logit difference.

Prints a table; ``--json`` writes every number.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any


def pack(args: argparse.Namespace) -> None:
    import torch

    from kgmm.data import load_vqa
    from kgmm.data.openmoji.build import load_default_kg
    from kgmm.reasoning.encoders import build_image_encoder, build_text_encoder
    from kgmm.reasoning.example_pack import write_pack
    from kgmm.reasoning.node_embeddings import NodeEmbeddingCache
    from kgmm.reasoning.vqa_data import build_vocabularies
    from kgmm.reasoning.vqa_train import (
        answer_space_configs,
        default_config,
        default_graph_config,
        image_vectors,
        prepare,
        surface_forms,
        training_answer_space,
    )

    torch.set_num_threads(args.threads)
    kg = load_default_kg(args.data_dir)
    text = build_text_encoder("minilm")
    image = build_image_encoder("efficientnet-lite0", image_size=224)
    cache = NodeEmbeddingCache(kg, text, encoder_key="minilm")
    splits = ["train", "val", "test"]
    pooled = image_vectors(args.data, splits, image)
    limits = {"train": args.train, "val": args.val, "test": args.test}
    graph, _ = answer_space_configs(default_graph_config(),
                                    training_answer_space(load_vqa(args.data, "train"), kg))
    data = prepare(args.data, splits, kg, text.embed, cache, graph,
                   image_vectors=lambda record: pooled[record.image_id],
                   text_tokens=text.token_embeddings, limit=max(limits.values()))
    cache.save()
    data = {split: examples[:limits[split]] for split, examples in data.items()}
    kg_vocab, _ = build_vocabularies(data["train"])
    config = default_config(kg, kg_vocab.itos, use_kg=True, image_dim=image.dim, graph=graph)
    names = surface_forms(data["train"])
    nodes = {int(i) for examples in data.values() for ex in examples
             for i in ex.graph.kg_index.tolist() if i >= 0}
    labels = {str(i): names.get(i) or kg.label(i).lower() for i in sorted(nodes)}
    path = write_pack(args.out, data, meta={"config": config.to_dict(), "labels": labels,
                                            "benchmark": str(args.data)})
    size = sum(f.stat().st_size for f in path.iterdir()) / 2**20
    print(f"pack {path}: {', '.join(f'{k} {len(v)}' for k, v in data.items())} questions, "
          f"{size:.1f} MiB")


def _accuracy(model: Any, examples: list[Any], labels: dict[str, str], device: Any
              ) -> tuple[float, list[str], Any]:
    """VQA accuracy, the answers, and the concatenated node logits (CPU float32)."""
    import torch

    from kgmm.data.vqa_eval import vqa_accuracy
    from kgmm.reasoning.vqa_data import collate, forward_inputs
    from kgmm.reasoning.vqa_train import batch_to

    model.eval()
    answers, logits, score = [], [], 0.0
    for start in range(0, len(examples), 64):
        chunk = examples[start:start + 64]
        batch = batch_to(collate(chunk, model.vocab, True), device)
        with torch.no_grad():
            result = model(**forward_inputs(batch))
        decoded = model.decode(result, [e.graph for e in chunk],
                               lambda i: labels.get(str(i), str(i)), k=1)
        for ex, top in zip(chunk, decoded, strict=True):
            text = top[0][0] if top else ""
            answers.append(text)
            score += vqa_accuracy(text, list(ex.answers))
        logits.append(result["output"].node_logits.float().cpu())
    return 100.0 * score / max(len(examples), 1), answers, torch.cat(logits)


def run(args: argparse.Namespace) -> None:
    import torch

    from kgmm.reasoning.example_pack import read_pack
    from kgmm.reasoning.vqa_model import VQAConfig, VQAModel
    from kgmm.reasoning.vqa_train import train_model

    splits, meta = read_pack(args.pack)
    labels = meta["labels"]
    config = VQAConfig.from_dict(meta["config"])
    train, val, test = splits["train"], splits["val"], splits["test"]
    device = torch.device(args.device if args.device != "auto" else
                          ("cuda" if torch.cuda.is_available() else "cpu"))
    out: dict[str, Any] = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__, "host": platform.node(), "cpu_threads":
        torch.get_num_threads(), "questions": {k: len(v) for k, v in splits.items()},
        "epochs": args.epochs, "target_val_accuracy": args.target}

    def timed_training(on: Any, epochs: int, record_val: bool) -> tuple[Any, list[dict]]:
        torch.manual_seed(0)
        model = VQAModel(config)
        history: list[dict[str, float]] = []
        clock = [time.perf_counter()]

        def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
            if on.type == "cuda":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - clock[0]
            row = {"epoch": epoch + 1, "loss": metrics["loss"], "seconds": seconds,
                   "samples_per_s": len(train) / seconds}
            if record_val:
                row["val_accuracy"] = _accuracy(model, val, labels, on)[0]
            history.append(row)
            print(f"{on.type} epoch {epoch + 1}: " + ", ".join(
                f"{k} {v:.3f}" for k, v in row.items() if k != "epoch"), flush=True)
            clock[0] = time.perf_counter()  # validation is not training time

        train_model(model, train, epochs=epochs, on_epoch=on_epoch, device=on)
        return model, history

    model, history = timed_training(device, args.epochs, record_val=True)
    elapsed, reached = 0.0, None
    for row in history:
        elapsed += row["seconds"]
        if reached is None and row["val_accuracy"] >= args.target:
            reached = {"epoch": row["epoch"], "training_seconds": round(elapsed, 2)}
    out["gpu_training"] = history
    out["samples_per_s"] = len(train) * len(history) / max(elapsed, 1e-9)
    out["time_to_target"] = reached
    if args.cpu_epochs:
        _, cpu_history = timed_training(torch.device("cpu"), args.cpu_epochs, record_val=False)
        out["cpu_training"] = cpu_history
        out["cpu_samples_per_s"] = len(train) * len(cpu_history) / sum(
            r["seconds"] for r in cpu_history)
    acc_dev, answers_dev, logits_dev = _accuracy(model, test, labels, device)
    model.to("cpu")
    acc_cpu, answers_cpu, logits_cpu = _accuracy(model, test, labels, torch.device("cpu"))
    same = sum(a == b for a, b in zip(answers_dev, answers_cpu, strict=True))
    out["agreement"] = {"test_accuracy_device": acc_dev, "test_accuracy_cpu": acc_cpu,
                        "same_answers": same, "questions": len(test),
                        "max_node_logit_difference": float((logits_dev - logits_cpu).abs().max())}
    print(f"\n{'device':<10}{out['device']}")
    print(f"{'train':<10}{out['samples_per_s']:.0f} samples/s on {device.type}"
          + (f", {out['cpu_samples_per_s']:.0f} on the CPU" if args.cpu_epochs else ""))
    print(f"{'target':<10}val ≥ {args.target}: "
          + (f"epoch {reached['epoch']}, {reached['training_seconds']} s of training"
             if reached else "not reached"))
    print(f"{'test':<10}{acc_dev:.2f} on {device.type}, {acc_cpu:.2f} on the CPU, "
          f"{same}/{len(test)} identical answers, max |Δ logit| "
          f"{out['agreement']['max_node_logit_difference']:.2e}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack", help="prepare the examples here (CPU)")
    p.add_argument("--data", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--data-dir", default=None, help="KGMM_HOME holding the compiled KG")
    p.add_argument("--train", type=int, default=3000)
    p.add_argument("--val", type=int, default=500)
    p.add_argument("--test", type=int, default=500)
    p.add_argument("--threads", type=int, default=2)
    r = sub.add_parser("run", help="train and measure (on the GPU host)")
    r.add_argument("--pack", required=True, type=Path)
    r.add_argument("--epochs", type=int, default=30)
    r.add_argument("--cpu-epochs", type=int, default=2)
    r.add_argument("--target", type=float, default=80.0, help="val VQA accuracy to reach")
    r.add_argument("--device", default="auto")
    r.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    (pack if args.command == "pack" else run)(args)


if __name__ == "__main__":
    main()
