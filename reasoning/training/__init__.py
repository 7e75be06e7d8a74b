"""Training: a generic trainer, its configuration and LR schedule, atomic safetensors
checkpoints, and DDP helpers.

Plugging a model in::

    from kgmm.reasoning.training import Trainer, TrainConfig, seed_everything

    seed_everything(0)
    model = MyModel()
    def train_step(model, batch):
        logits = model(batch["x"])
        loss = F.cross_entropy(logits, batch["y"])
        return loss, {"acc": (logits.argmax(-1) == batch["y"]).float().mean()}
    result = Trainer(model, TrainConfig(epochs=5, checkpoint_dir="runs/a"), train_set, val_set,
                     train_step=train_step).fit(resume=True)
"""

from __future__ import annotations

from .checkpoint import (
    Checkpoint,
    CheckpointError,
    best_checkpoint,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
    verify_checkpoint,
)
from .config import TrainConfig
from .distributed import DistributedContext, init_distributed
from .schedule import WarmupSchedule, build_scheduler, lr_multiplier
from .trainer import (
    Trainer,
    TrainResult,
    TrainTask,
    batch_size_of,
    capture_rng_state,
    default_evaluate,
    move_to_device,
    restore_rng_state,
    seed_everything,
    unwrap_model,
)

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "DistributedContext",
    "TrainConfig",
    "TrainResult",
    "TrainTask",
    "Trainer",
    "WarmupSchedule",
    "batch_size_of",
    "best_checkpoint",
    "build_scheduler",
    "capture_rng_state",
    "default_evaluate",
    "init_distributed",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "lr_multiplier",
    "move_to_device",
    "prune_checkpoints",
    "restore_rng_state",
    "save_checkpoint",
    "seed_everything",
    "unwrap_model",
    "verify_checkpoint",
]
