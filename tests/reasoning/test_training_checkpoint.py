"""Checkpoints: round trips, atomicity under a crash, verification, retention, no pickle."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from kgmm.graph.errors import KGMMError
from kgmm.reasoning.training import (
    CheckpointError,
    TrainConfig,
    best_checkpoint,
    build_scheduler,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from kgmm.reasoning.training import checkpoint as ckpt_mod
from kgmm.reasoning.training.checkpoint import flatten_state, unflatten_state


class Tied(nn.Module):
    """Embedding and output layer share one weight (safetensors refuses shared storage)."""

    def __init__(self, vocab: int = 11, dim: int = 6) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.mid = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, vocab, bias=False)
        self.out.weight = self.emb.weight
        self.register_buffer("count", torch.tensor(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.mid(self.emb(x))))


def _trained(seed: int = 0, steps: int = 3) -> tuple[Tied, torch.optim.Optimizer, object]:
    torch.manual_seed(seed)
    model = Tied()
    opt = torch.optim.Adam(model.parameters(), lr=0.01, betas=(0.8, 0.95))
    sched = build_scheduler(opt, TrainConfig(warmup_steps=2, epochs=1), total_steps=10)
    x = torch.randint(0, 11, (8,))
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), x).backward()
        opt.step()
        sched.step()
    return model, opt, sched


def _save(path: Path, seed: int = 0, **kwargs: object) -> Path:
    model, opt, sched = _trained(seed)
    return save_checkpoint(path, model=model, config={"vocab": 11}, optimizer=opt,
                           scheduler=sched, state={"epoch": seed, "best_metric": 0.5},
                           **kwargs)


def test_round_trip_model_optimizer_scheduler(tmp_path: Path) -> None:
    model, opt, sched = _trained()
    state = {"epoch": 2, "best": float("inf"), "history": [{"loss": 1.5}],
             "rng": torch.get_rng_state(), "pair": (1, 2)}
    out = save_checkpoint(tmp_path / "run" / "epoch-0002", model=model, config={"dim": 6},
                          optimizer=opt, scheduler=sched, state=state,
                          extra_files={"train_config.json": "{}", "tok/vocab.txt": b"a\nb\n"})
    names = set(json.loads((out / "manifest.json").read_text())["files"])
    assert {"model.safetensors", "optimizer.safetensors", "optimizer.json", "scheduler.json",
            "trainer_state.json", "config.json", "kgmm_version", "tok/vocab.txt"} <= names
    assert latest_checkpoint(tmp_path / "run") == out

    torch.manual_seed(99)
    model2 = Tied()
    opt2 = torch.optim.Adam(model2.parameters(), lr=0.5)
    sched2 = build_scheduler(opt2, TrainConfig(epochs=1), total_steps=3)
    ckpt = load_checkpoint(tmp_path / "run", model=model2, optimizer=opt2, scheduler=sched2)
    assert ckpt.path == out and ckpt.config == {"dim": 6}
    assert ckpt.read_file("tok/vocab.txt") == b"a\nb\n"
    for (n1, p1), (_, p2) in zip(model.state_dict().items(), model2.state_dict().items(),
                                 strict=True):
        assert torch.equal(p1, p2), n1
    assert model2.out.weight is model2.emb.weight  # tie survives
    # Adam moments and step counts identical; param_groups (tuple betas) identical
    s1, s2 = opt.state_dict(), opt2.state_dict()
    assert s1["param_groups"] == s2["param_groups"]
    assert s2["param_groups"][0]["betas"] == (0.8, 0.95)
    for key, per_param in s1["state"].items():
        for name, value in per_param.items():
            assert torch.equal(value, s2["state"][key][name]), (key, name)
    assert sched2.state_dict() == sched.state_dict()
    assert ckpt.state["best"] == math.inf and ckpt.state["pair"] == (1, 2)
    assert torch.equal(ckpt.state["rng"], state["rng"])
    # one more identical step keeps them identical
    x = torch.arange(8) % 11
    for m, o in ((model, opt), (model2, opt2)):
        o.zero_grad()
        nn.functional.cross_entropy(m(x), x).backward()
        o.step()
    for p1, p2 in zip(model.parameters(), model2.parameters(), strict=True):
        assert torch.equal(p1, p2)


def test_flatten_state_round_trip() -> None:
    state = {0: {"a": (1, 2.5, None), "t": torch.ones(2)}, "n": float("nan"),
             "arr": np.arange(3), "__tensor__": "tricky", "deep": [[-math.inf]]}
    tree, tensors = flatten_state(state)
    text = json.dumps(tree, allow_nan=False)
    back = unflatten_state(json.loads(text), tensors)
    assert back[0]["a"] == (1, 2.5, None) and torch.equal(back[0]["t"], torch.ones(2))
    assert math.isnan(back["n"]) and back["deep"] == [[-math.inf]]
    assert back["__tensor__"] == "tricky" and np.array_equal(back["arr"], np.arange(3))
    with pytest.raises(TypeError, match="object"):
        flatten_state({"x": object()})


def test_crash_during_save_keeps_previous_latest(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    run = tmp_path / "run"
    first = _save(run / "epoch-0001", seed=1)
    real_write = ckpt_mod._write_file
    calls = {"n": 0}

    def failing_write(path: Path, data: object) -> None:
        calls["n"] += 1
        if calls["n"] > 1:
            raise OSError("disk full (simulated)")
        real_write(path, data)  # type: ignore[arg-type]

    monkeypatch.setattr(ckpt_mod, "_write_file", failing_write)
    with pytest.raises(OSError, match="simulated"):
        _save(run / "epoch-0002", seed=2)
    monkeypatch.undo()
    assert calls["n"] == 2
    assert latest_checkpoint(run) == first
    assert not (run / "epoch-0002").exists()
    assert [p.name for p in run.iterdir() if p.name.startswith(".")] == []
    assert load_checkpoint(run).state["epoch"] == 1

    # a hard crash (no cleanup) leaves a hidden temp dir: never latest, never listed, and
    # removed by the next save
    stale = run / ".tmp-epoch-0003-dead"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"partial")
    assert latest_checkpoint(run) == first and list_checkpoints(run) == [first]
    second = _save(run / "epoch-0003", seed=3)
    assert not stale.exists() and latest_checkpoint(run) == second


@pytest.mark.parametrize("victim", ["optimizer.safetensors", "model.safetensors",
                                    "trainer_state.json"])
def test_corrupt_file_is_named(tmp_path: Path, victim: str) -> None:
    path = _save(tmp_path / "run" / "epoch-0001")
    data = bytearray((path / victim).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (path / victim).write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=victim) as info:
        load_checkpoint(path, model=Tied())
    assert info.value.path is not None and info.value.path.name == victim
    assert isinstance(info.value, KGMMError)


def test_missing_truncated_and_foreign_version(tmp_path: Path) -> None:
    path = _save(tmp_path / "run" / "epoch-0001")
    (path / "config.json").unlink()
    with pytest.raises(CheckpointError, match=r"config\.json.*missing"):
        load_checkpoint(path)

    path = _save(tmp_path / "run2" / "epoch-0001")
    model_file = path / "model.safetensors"
    model_file.write_bytes(model_file.read_bytes()[:-5])
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*truncated"):
        load_checkpoint(path)

    path = _save(tmp_path / "run3" / "epoch-0001")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["format_version"] = 99
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=r"manifest\.json.*version 99"):
        load_checkpoint(path)

    with pytest.raises(CheckpointError, match="no such"):
        load_checkpoint(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="LATEST"):
        load_checkpoint(tmp_path / "empty")


def test_model_mismatch_and_missing_optimizer(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "r" / "c", model=nn.Linear(2, 2), config={})
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*does not match"):
        load_checkpoint(path, model=nn.Linear(3, 2))
    model = nn.Linear(2, 2)
    with pytest.raises(CheckpointError, match=r"optimizer\.json"):
        load_checkpoint(path, model=model, optimizer=torch.optim.SGD(model.parameters(), 0.1))


def test_never_uses_torch_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _save(tmp_path / "run" / "epoch-0001")

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("torch.load must not be used")

    monkeypatch.setattr(torch, "load", forbidden)
    model, opt, sched = _trained(seed=5)
    load_checkpoint(path, model=model, optimizer=opt, scheduler=sched)
    for file in path.iterdir():
        assert not file.read_bytes().startswith(b"\x80"), f"{file.name} looks like a pickle"


def test_retention_keeps_last_n_and_best(tmp_path: Path) -> None:
    run = tmp_path / "run"
    for i in range(1, 6):
        _save(run / f"epoch-{i:04d}", seed=i, is_best=i == 2, keep_last=2)
    assert [p.name for p in list_checkpoints(run)] == ["epoch-0002", "epoch-0004",
                                                       "epoch-0005"]
    assert best_checkpoint(run) == run / "epoch-0002"
    assert latest_checkpoint(run) == run / "epoch-0005"
    with pytest.raises(ValueError, match="reserved"):
        _save(run / "epoch-0006", extra_files={"manifest.json": "{}"})
    with pytest.raises(ValueError, match="invalid"):
        _save(run / "epoch-0006", extra_files={"../evil": "x"})
