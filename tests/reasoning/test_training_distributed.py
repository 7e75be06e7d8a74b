"""DDP on CPU: ``torchrun --nproc_per_node 2`` with gloo on a tiny regression model.

Verified: both ranks end with identical parameters, and those equal (to float rounding) the
parameters of a single process trained with the doubled batch size on the same data order;
the all-reduced epoch metrics match the single-process ones; only rank 0 wrote the
checkpoints, which hold the RNG states of both ranks.
"""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from kgmm.reasoning.training import load_checkpoint

WORKER = r'''
import json
import sys

import torch
from safetensors.torch import save_file
from torch import nn
from torch.utils.data import TensorDataset

from kgmm.reasoning.training import TrainConfig, Trainer, seed_everything


def data(n, seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=gen)
    y = x @ torch.tensor([1.5, -2.0, 0.5, 1.0]) + 0.05 * torch.randn(n, generator=gen)
    return TensorDataset(x, y)


def step(model, batch):
    x, y = batch
    pred = model(x).squeeze(-1)
    return nn.functional.mse_loss(pred, y), {"mae": (pred - y).abs().mean()}


def make_trainer(run_dir, batch_size):
    seed_everything(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1))
    config = TrainConfig(epochs=3, batch_size=batch_size, lr=0.02, warmup_steps=2,
                         device="cpu", seed=7, log_every=1, checkpoint_dir=run_dir)
    return Trainer(model, config, data(32, 0), data(8, 1), train_step=step)


if __name__ == "__main__":
    torch.set_num_threads(1)
    out = sys.argv[1]
    trainer = make_trainer(out + "/run", batch_size=4)
    assert trainer.ctx.world_size == 2 and trainer.ctx.backend == "gloo", trainer.ctx
    result = trainer.fit()
    rank = trainer.ctx.rank
    state = {k: v.contiguous() for k, v in trainer.model.state_dict().items()}
    save_file(state, f"{out}/rank{rank}.safetensors")
    with open(f"{out}/rank{rank}.json", "w") as handle:
        json.dump(result.history, handle)
'''


def test_ddp_two_gloo_processes_match_single_process(tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
         "2", str(script), str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    rank0 = load_file(tmp_path / "rank0.safetensors")
    rank1 = load_file(tmp_path / "rank1.safetensors")
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name
    hist0 = json.loads((tmp_path / "rank0.json").read_text())
    hist1 = json.loads((tmp_path / "rank1.json").read_text())
    assert hist0 == [{**r, "epoch_time": h["epoch_time"],
                      "samples_per_second": h["samples_per_second"]}
                     for r, h in zip(hist1, hist0, strict=True)]
    assert hist0[-1]["train"]["loss"] < hist0[0]["train"]["loss"]

    # one process, doubled batch, same data order -> the same training
    worker = runpy.run_path(str(script))
    single = worker["make_trainer"](None, batch_size=8)
    assert single.ctx.world_size == 1
    result = single.fit()
    for name, value in single.model.state_dict().items():
        torch.testing.assert_close(value, rank0[name], rtol=1e-5, atol=1e-6)
    for ddp_rec, one_rec in zip(hist0, result.history, strict=True):
        assert ddp_rec["step"] == one_rec["step"]
        for split in ("train", "val"):
            for key, value in one_rec[split].items():
                assert ddp_rec[split][key] == pytest.approx(value, rel=1e-5, abs=1e-7), key

    ckpt = load_checkpoint(tmp_path / "run")
    assert ckpt.state["epoch"] == 3 and ckpt.state["world_size"] == 2
    assert set(ckpt.state["rng"]) == {"0", "1"}
    assert ckpt.state["rng"]["0"]["torch"] != ckpt.state["rng"]["1"]["torch"]
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [
        "BEST", "LATEST", "epoch-0002", "epoch-0003", "history.jsonl"]
