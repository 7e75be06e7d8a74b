r"""Learning-rate schedules: linear warm-up, then cosine / linear decay or constant.

For optimizer step :math:`s` (0-based; step :math:`s` runs with this multiplier),
:math:`W` warm-up steps, :math:`T` total steps and floor :math:`m` (``min_lr_ratio``):

.. math::
    f(s) = \begin{cases}
        \frac{s + 1}{W} & s < W \\
        m + (1 - m)\,\tfrac12\bigl(1 + \cos(\pi p)\bigr) & \text{cosine} \\
        m + (1 - m)\,(1 - p) & \text{linear} \\
        1 & \text{constant}
    \end{cases}
    \qquad p = \min\!\Bigl(1, \frac{s - W}{\max(1, T - W)}\Bigr)

and the learning rate of each parameter group is ``base_lr * f(s)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from .config import TrainConfig

__all__ = ["WarmupSchedule", "build_scheduler", "lr_multiplier", "warmup_steps_for"]


def lr_multiplier(step: int, *, total_steps: int, warmup_steps: int = 0,
                  schedule: str = "cosine", min_lr_ratio: float = 0.0) -> float:
    """The factor :math:`f(s)` of the module docstring for optimizer step ``step``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    if schedule == "cosine":
        decay = 0.5 * (1.0 + math.cos(math.pi * progress))
    elif schedule == "linear":
        decay = 1.0 - progress
    else:
        raise ValueError(f"unknown schedule {schedule!r}; valid: 'cosine', 'linear', 'constant'")
    return min_lr_ratio + (1.0 - min_lr_ratio) * decay


@dataclass
class WarmupSchedule:
    """Picklable, JSON-serialisable ``lr_lambda`` for :class:`~torch.optim.lr_scheduler.LambdaLR`.

    ``LambdaLR.state_dict()`` stores its ``__dict__`` (plain numbers and a string), so a
    scheduler built on it checkpoints without pickle.
    """

    total_steps: int
    warmup_steps: int = 0
    schedule: str = "cosine"
    min_lr_ratio: float = 0.0

    def __call__(self, step: int) -> float:
        return lr_multiplier(step, total_steps=self.total_steps, warmup_steps=self.warmup_steps,
                             schedule=self.schedule, min_lr_ratio=self.min_lr_ratio)


def warmup_steps_for(config: TrainConfig, total_steps: int) -> int:
    """``config.warmup_steps`` if set, else ``round(config.warmup_ratio * total_steps)``."""
    if config.warmup_steps > 0:
        return config.warmup_steps
    return round(config.warmup_ratio * total_steps)


def build_scheduler(optimizer: Optimizer, config: TrainConfig, total_steps: int) -> LambdaLR:
    """A per-step :class:`LambdaLR` following ``config`` over ``total_steps`` optimizer steps.

    Call ``scheduler.step()`` after every ``optimizer.step()``.
    """
    fn = WarmupSchedule(total_steps=max(1, total_steps),
                        warmup_steps=warmup_steps_for(config, total_steps),
                        schedule=config.schedule, min_lr_ratio=config.min_lr_ratio)
    return LambdaLR(optimizer, fn)
