r"""The dual-tower first stage: two projection heads over frozen encoders.

.. math::
    f_q(q) = \frac{g_q(\mathbf{t}_q)}{\lVert g_q(\mathbf{t}_q)\rVert_2},\quad
    f_c(c) = \frac{g_c(\mathbf{v}_c)}{\lVert g_c(\mathbf{v}_c)\rVert_2},\quad
    s(q, c) = \cos\big(f_q(q), f_c(c)\big) = f_q(q)^\top f_c(c)

where :math:`\mathbf{t}` is the frozen sentence vector (MiniLM, 384-d), :math:`\mathbf{v}` the
frozen pooled image vector (EfficientNet-Lite0, 1280-d) and each head is a residual MLP
:math:`g(\mathbf{x}) = W_2\,\mathrm{GELU}(W_1\,\mathrm{LN}(\mathbf{x})) + P\mathbf{x}`.

Training (:func:`train_dual_tower`) minimises the project's alignment losses on (caption,
image) pairs, :math:`\mathcal{L} = \mathcal{L}_{InfoNCE} + \lambda\,\mathcal{L}_{triplet}`
(:class:`~kgmm.reasoning.alignment.CombinedAlignment`), with multi-positive targets: captions
of the same image are positives of each other, never negatives.

Checkpoints: ``save_pretrained(dir)`` writes ``kgmm_dual_tower.json`` + ``model.safetensors``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

CONFIG_NAME = "kgmm_dual_tower.json"
WEIGHTS_NAME = "model.safetensors"


@dataclass
class DualTowerConfig:
    """Sizes and training loss weights of a :class:`DualTower` (JSON round-trip)."""

    text_dim: int = 384
    image_dim: int = 1280
    dim: int = 256
    hidden: int = 512
    dropout: float = 0.1
    temperature: float = 0.05
    triplet_weight: float = 0.5
    triplet_margin: float = 0.2

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DualTowerConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


class Projection(nn.Module):
    r""":math:`g(\mathbf{x}) = W_2\,\mathrm{GELU}(W_1\,\mathrm{LN}(\mathbf{x})) + P\mathbf{x}`,
    L2-normalised. ``[..., in_dim] -> [..., out_dim]``."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(in_dim)
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, out_dim))
        self.skip = nn.Linear(in_dim, out_dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(self.mlp(self.norm(x)) + self.skip(x), dim=-1)


class DualTower(nn.Module):
    """Text and image heads; ``score(q, c)`` is the cosine of their outputs."""

    def __init__(self, config: DualTowerConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        self.config = config or DualTowerConfig(**overrides)
        c = self.config
        self.text_head = Projection(c.text_dim, c.dim, c.hidden, c.dropout)
        self.image_head = Projection(c.image_dim, c.dim, c.hidden, c.dropout)

    def encode_text(self, pooled: Tensor) -> Tensor:
        """:math:`f_q`: ``[B, text_dim] -> [B, dim]`` (unit norm)."""
        return self.text_head(pooled.float())

    def encode_image(self, pooled: Tensor) -> Tensor:
        """:math:`f_c`: ``[B, image_dim] -> [B, dim]`` (unit norm)."""
        return self.image_head(pooled.float())

    def score(self, text_pooled: Tensor, image_pooled: Tensor) -> Tensor:
        """All-pairs :math:`s = \\cos(f_q, f_c)`: ``[Bt, Dt], [Bi, Di] -> [Bt, Bi]``."""
        return self.encode_text(text_pooled) @ self.encode_image(image_pooled).T

    def fingerprint(self) -> str:
        """A short hash of the weights: indices record it so that a different model is refused."""
        digest = hashlib.sha256(json.dumps(self.config.to_dict(), sort_keys=True).encode())
        for name, value in sorted(self.state_dict().items()):
            digest.update(name.encode())
            digest.update(value.detach().float().cpu().numpy().tobytes())
        return digest.hexdigest()[:16]

    def save_pretrained(self, directory: str | os.PathLike[str]) -> Path:
        from safetensors.torch import save_file

        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        (path / CONFIG_NAME).write_text(json.dumps(self.config.to_dict(), indent=1),
                                        encoding="utf-8")
        save_file({k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()},
                  str(path / WEIGHTS_NAME))
        return path

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike[str]) -> DualTower:
        from safetensors.torch import load_file

        path = Path(directory)
        config = DualTowerConfig.from_dict(json.loads((path / CONFIG_NAME).read_text("utf-8")))
        model = cls(config)
        model.load_state_dict(load_file(str(path / WEIGHTS_NAME)))
        return model.eval()


def train_dual_tower(model: DualTower, text_pooled: Tensor, image_pooled: Tensor,
                     pairs: Sequence[tuple[int, int]], *, epochs: int = 30, batch_size: int = 256,
                     lr: float = 2e-3, weight_decay: float = 1e-4, seed: int = 0,
                     log: Callable[[str], None] | None = None) -> list[float]:
    """Fit ``model`` on ``(text row, image row)`` pairs (see the module docstring).

    Returns the mean loss of every epoch."""
    from kgmm.reasoning.alignment import CombinedAlignment

    cfg = model.config
    loss_fn = CombinedAlignment.from_weights(
        {"info_nce": 1.0, "triplet": cfg.triplet_weight}, cfg.dim,
        {"info_nce": {"temperature": cfg.temperature},
         "triplet": {"margin": cfg.triplet_margin}})
    params = [*model.parameters(), *loss_fn.parameters()]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    pair_t = torch.tensor(list(pairs), dtype=torch.long)
    if pair_t.numel() == 0:
        raise ValueError("no training pairs")
    steps = epochs * max(1, -(-len(pair_t) // batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps,
                                                pct_start=0.1)
    gen = torch.Generator().manual_seed(seed)
    history = []
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(pair_t), generator=gen)
        total, count = 0.0, 0
        for start in range(0, len(order), batch_size):
            batch = pair_t[order[start:start + batch_size]]
            if len(batch) < 2:
                continue
            zt = model.encode_text(text_pooled[batch[:, 0]])
            zi = model.encode_image(image_pooled[batch[:, 1]])
            loss, _ = loss_fn(zt, zi, batch[:, 1])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(batch)
            count += len(batch)
        history.append(total / max(count, 1))
        if log is not None:
            log(f"dual tower epoch {epoch}: loss {history[-1]:.4f}")
    model.eval()
    return history
