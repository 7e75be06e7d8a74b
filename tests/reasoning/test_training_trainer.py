"""Trainer on tiny CPU problems: learning, exact resume, early stopping, clipping, logging."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import torch
from rich.console import Console
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from kgmm.reasoning.training import (
    TrainConfig,
    Trainer,
    TrainTask,
    best_checkpoint,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    seed_everything,
)


def _data(n: int = 48, seed: int = 0) -> TensorDataset:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=gen)
    y = x @ torch.tensor([1.5, -2.0, 0.5, 1.0]) + 0.3 + 0.05 * torch.randn(n, generator=gen)
    return TensorDataset(x, y)


def _model(seed: int = 0, dropout: float = 0.0) -> nn.Module:
    seed_everything(seed)
    return nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Dropout(dropout), nn.Linear(16, 1))


def mse_step(model: nn.Module, batch: list[Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
    x, y = batch
    pred = model(x).squeeze(-1)
    loss = nn.functional.mse_loss(pred, y)
    return loss, {"mae": (pred - y).abs().mean()}


def _config(tmp: Path | None = None, **kw: Any) -> TrainConfig:
    base: dict[str, Any] = {"epochs": 4, "batch_size": 8, "lr": 0.02, "warmup_steps": 3,
                            "device": "cpu", "log_every": 2, "seed": 7}
    if tmp is not None:
        base["checkpoint_dir"] = str(tmp)
    base.update(kw)
    return TrainConfig(**base)


def test_loss_decreases_and_result(tmp_path: Path) -> None:
    trainer = Trainer(_model(), _config(tmp_path, epochs=6), _data(), _data(16, seed=1),
                      train_step=mse_step)
    result = trainer.fit()
    losses = [rec["train"]["loss"] for rec in result.history]
    assert losses[-1] < 0.25 * losses[0]
    assert result.history[-1]["val"]["loss"] < result.history[0]["val"]["loss"]
    assert set(result.history[0]["train"]) == {"loss", "mae", "grad_norm"}
    assert result.epochs_completed == 6 and result.global_step == 6 * 6
    assert result.samples_per_second > 0 and result.wall_time > 0
    assert result.best_checkpoint == best_checkpoint(tmp_path)
    assert result.last_checkpoint == latest_checkpoint(tmp_path) == tmp_path / "epoch-0006"
    lines = (tmp_path / "history.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3, 4, 5, 6]
    assert len(list_checkpoints(tmp_path)) <= 3  # keep_last=2 plus the best
    ckpt = load_checkpoint(tmp_path)
    assert TrainConfig.from_json(ckpt.read_file("train_config.json").decode()) == trainer.config
    json.dumps(result.to_dict())


class SimulatedCrash(Exception):
    """Raised by a callback to interrupt a run after its checkpoint was written."""


def test_resume_is_bit_identical(tmp_path: Path) -> None:
    """4 epochs straight == 2 epochs, crash, resume for the remaining 2 (dropout on)."""

    def run(run_dir: Path, interrupt_after: int | None = None, resume: bool = False,
            init_seed: int = 0) -> Trainer:
        def stop(trainer: Trainer, record: dict[str, Any]) -> None:
            if record["epoch"] == interrupt_after:
                raise SimulatedCrash

        trainer = Trainer(_model(init_seed, dropout=0.2), _config(run_dir),
                          _data(), _data(16, seed=1), train_step=mse_step, callbacks=[stop])
        with contextlib.suppress(SimulatedCrash):
            trainer.fit(resume=resume)
        return trainer

    straight = run(tmp_path / "a")
    interrupted = run(tmp_path / "b", interrupt_after=2)
    assert interrupted.epoch == 2
    # a different init proves the weights come from the checkpoint
    resumed = run(tmp_path / "b", resume=True, init_seed=123)
    assert resumed.epoch == 4 and resumed.global_step == straight.global_step
    for (name, p1), (_, p2) in zip(straight.model.state_dict().items(),
                                   resumed.model.state_dict().items(), strict=True):
        assert torch.equal(p1, p2), name
    strip = [{k: v for k, v in r.items() if k not in ("epoch_time", "samples_per_second")}
             for r in straight.history]
    assert strip == [{k: v for k, v in r.items() if k not in ("epoch_time",
                                                               "samples_per_second")}
                     for r in resumed.history]
    lines = (tmp_path / "b" / "history.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3, 4]
    # resuming a finished run trains nothing
    again = run(tmp_path / "b", resume=True)
    assert again.epoch == 4 and again.global_step == straight.global_step


class ScriptedTask:
    """A TrainTask whose validation metric follows a fixed script."""

    def __init__(self, script: list[float]) -> None:
        self.script = list(script)
        self.calls = 0

    def train_step(self, model: nn.Module, batch: list[Tensor]) -> Tensor:
        return mse_step(model, batch)[0]

    def evaluate(self, model: nn.Module, loader: Iterable[Any]) -> dict[str, float]:
        assert not model.training and not torch.is_grad_enabled()
        value = self.script[self.calls]
        self.calls += 1
        return {"acc": value}


@pytest.mark.parametrize(("mode", "script", "stop_epoch", "best_epoch"), [
    ("max", [0.5, 0.7, 0.6, 0.65, 0.9, 0.95], 4, 2),
    ("min", [1.0, 0.8, 0.7, 0.75, 0.71, 0.6], 5, 3),
])
def test_early_stopping(tmp_path: Path, mode: str, script: list[float], stop_epoch: int,
                        best_epoch: int) -> None:
    task = ScriptedTask(script)
    assert isinstance(task, TrainTask)
    config = _config(tmp_path, epochs=6, metric="acc", mode=mode, early_stopping_patience=2,
                     keep_last=1)
    result = Trainer(_model(), config, _data(16), _data(8), task=task).fit()
    assert result.stopped_early and result.epochs_completed == stop_epoch
    assert task.calls == stop_epoch
    assert result.best_epoch == best_epoch and result.best_metric == script[best_epoch - 1]
    assert result.best_checkpoint == tmp_path / f"epoch-{best_epoch:04d}"
    assert best_checkpoint(tmp_path) == result.best_checkpoint  # kept despite keep_last=1
    assert load_checkpoint(result.best_checkpoint).state["epoch"] == best_epoch


def test_eval_every_and_missing_metric(tmp_path: Path) -> None:
    task = ScriptedTask([1.0, 2.0])
    result = Trainer(_model(), _config(epochs=3, eval_every=2, metric="acc", mode="max"),
                     _data(16), _data(8), task=task).fit()
    assert [r["val"] is not None for r in result.history] == [False, True, True]
    with pytest.raises(KeyError, match="'f1' not among the validation metrics: acc"):
        Trainer(_model(), _config(epochs=1, metric="f1"), _data(16), _data(8),
                task=ScriptedTask([1.0])).fit()


def test_grad_clipping_bounds_global_norm() -> None:
    seen: list[float] = []

    class Recording(torch.optim.SGD):
        def step(self, closure: Any = None) -> Any:  # type: ignore[override]
            grads = [p.grad for g in self.param_groups for p in g["params"]
                     if p.grad is not None]
            seen.append(torch.linalg.vector_norm(torch.stack(
                [torch.linalg.vector_norm(g) for g in grads])).item())
            return super().step(closure)

    def big_step(model: nn.Module, batch: list[Tensor]) -> Tensor:
        return 1000.0 * mse_step(model, batch)[0]

    result = Trainer(_model(), _config(epochs=2, grad_clip=0.5, lr=1e-4), _data(16),
                     train_step=big_step,
                     optimizer=lambda groups: Recording(groups, lr=1e-4)).fit()
    assert len(seen) == 4 and max(seen) <= 0.5 + 1e-5
    assert result.history[0]["train"]["grad_norm"] > 0.5  # it did have to clip


def test_progress_bar_on_a_terminal_and_bf16_on_cpu() -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=150)
    result = Trainer(_model(), _config(epochs=1, amp="bf16"), _data(16), _data(8),
                     train_step=mse_step, console=console).fit()
    assert "samples/s" in buffer.getvalue() and "epoch 1/1" in buffer.getvalue()
    assert result.epochs_completed == 1
    silent = io.StringIO()
    Trainer(_model(), _config(epochs=1), _data(16), train_step=mse_step, progress=False,
            console=Console(file=silent, force_terminal=True)).fit()
    assert silent.getvalue() == ""


def test_configuration_errors(tmp_path: Path) -> None:
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            Trainer(_model(), _config(device="cuda"), _data(16), train_step=mse_step)
    with pytest.raises(ValueError, match="train_step"):
        Trainer(_model(), _config(), _data(16))
    with pytest.raises(ValueError, match="checkpoint_dir"):
        Trainer(_model(), _config(), _data(16), train_step=mse_step).fit(resume=True)
    # resume with an empty run directory starts from scratch
    result = Trainer(_model(), _config(tmp_path, epochs=1), _data(16),
                     train_step=mse_step).fit(resume=True)
    assert result.epochs_completed == 1


def test_batch_helpers() -> None:
    from collections import namedtuple
    from dataclasses import dataclass

    from kgmm.reasoning.training.trainer import batch_size_of, move_to_device

    @dataclass
    class Pair:
        x: Tensor
        note: str

    Item = namedtuple("Item", ["a", "b"])
    batch = {"p": Pair(torch.zeros(5, 2), "n"), "i": Item(torch.ones(3), [torch.ones(1)])}
    moved = move_to_device(batch, torch.device("cpu"))
    assert isinstance(moved["p"], Pair) and moved["p"].note == "n"
    assert isinstance(moved["i"], Item) and torch.equal(moved["i"].b[0], torch.ones(1))
    assert batch_size_of(batch) == 5 and batch_size_of([torch.zeros(())]) == 1
    assert batch_size_of(["a", "b"]) == 2 and batch_size_of(object()) is None
    pyg = pytest.importorskip("torch_geometric.data")
    graphs = pyg.Batch.from_data_list([pyg.Data(x=torch.zeros(4, 2)) for _ in range(3)])
    assert batch_size_of(graphs) == 3
    assert move_to_device(graphs, torch.device("cpu")).num_graphs == 3
