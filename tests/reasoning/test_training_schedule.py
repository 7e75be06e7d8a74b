"""LR schedule values and TrainConfig JSON round trip."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from kgmm.reasoning.training import TrainConfig, build_scheduler, lr_multiplier


def _lrs(config: TrainConfig, total: int) -> list[float]:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=config.lr)
    sched = build_scheduler(opt, config, total)
    values = []
    for _ in range(total):
        values.append(opt.param_groups[0]["lr"])  # the lr this optimizer step uses
        opt.step()
        sched.step()
    return values


def test_warmup_then_cosine_matches_formula() -> None:
    base, warmup, total = 0.1, 10, 110
    lrs = _lrs(TrainConfig(lr=base, warmup_steps=warmup, schedule="cosine"), total)
    for step in (0, 4, 9):  # linear warm-up reaching the peak on the last warm-up step
        assert lrs[step] == pytest.approx(base * (step + 1) / warmup)
    for step in (10, 35, 60, 85, 109):
        progress = (step - warmup) / (total - warmup)
        assert lrs[step] == pytest.approx(base * 0.5 * (1 + math.cos(math.pi * progress)))
    assert lrs[9] == pytest.approx(base) and lrs[10] == pytest.approx(base)
    assert lrs[60] == pytest.approx(base / 2)


def test_linear_constant_ratio_and_floor() -> None:
    assert lr_multiplier(15, total_steps=20, warmup_steps=10, schedule="linear") == \
        pytest.approx(0.5)
    assert lr_multiplier(500, total_steps=20, schedule="constant") == 1.0
    assert lr_multiplier(20, total_steps=20, schedule="cosine", min_lr_ratio=0.1) == \
        pytest.approx(0.1)
    lrs = _lrs(TrainConfig(lr=1.0, warmup_ratio=0.25, schedule="linear", min_lr_ratio=0.2),
               total=8)
    assert lrs[:2] == pytest.approx([0.5, 1.0])  # 2 warm-up steps
    assert lrs[2:] == pytest.approx([0.2 + 0.8 * (1 - k / 6) for k in range(6)])
    with pytest.raises(ValueError, match="schedule"):
        lr_multiplier(0, total_steps=1, schedule="step")


def test_config_json_round_trip(tmp_path: Path) -> None:
    config = TrainConfig(epochs=3, lr=2e-4, schedule="linear", grad_clip=None,
                         early_stopping_patience=4, metric="acc", mode="max",
                         checkpoint_dir=str(tmp_path), amp="off")
    assert TrainConfig.from_json(config.to_json()) == config
    config.to_json(tmp_path / "c.json")
    assert TrainConfig.from_json(tmp_path / "c.json") == config
    assert TrainConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown TrainConfig field"):
        TrainConfig.from_dict({"epochz": 3})
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(schedule="step")
    with pytest.raises(ValueError, match="mode"):
        config.replace(mode="up")
    with pytest.raises(ValueError, match="device"):
        TrainConfig(device="tpu")
