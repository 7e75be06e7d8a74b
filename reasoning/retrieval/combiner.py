r"""A small learned model that fuses a first-stage score with re-ranking features.

For a candidate list with first-stage scores :math:`s_j` and feature vectors
:math:`\mathbf{x}_j` (KG features, a cross-attention score …):

.. math::
    z_j = \frac{s_j - \mathrm{mean}(s)}{\mathrm{std}(s) + \epsilon}, \qquad
    \mathbf{u}_j = [z_j; \mathbf{x}_j], \qquad
    r_j = \mathbf{a}^\top \mathbf{u}_j + \mathbf{v}^\top \tanh(W \mathbf{u}_j + \mathbf{b})

(``hidden = 0`` keeps only the linear term). Standardising the first-stage score within the
list makes the model indifferent to the scale of whichever retriever produced it; without
scores, :math:`s_j = -\log(1 + \mathrm{rank}_j)`. Training is listwise:
:math:`\mathcal{L} = -\log \sum_{j \in \mathcal{P}} \mathrm{softmax}(r)_j + \lambda
\lVert\theta\rVert^2`, over lists that hold a relevant item.

Saved as JSON (``names``, sizes and the weights as lists): a few dozen numbers.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn


def standardize(scores: np.ndarray | None, n: int) -> np.ndarray:
    """:math:`z_j` of the module docstring (rank-based when ``scores`` is None)."""
    if scores is None:
        scores = -np.log1p(np.arange(n, dtype=np.float64))
    s = np.asarray(scores, dtype=np.float64)
    if s.size == 0:
        return s.astype(np.float32)
    std = s.std()
    return ((s - s.mean()) / (std + 1e-6)).astype(np.float32)


class ScoreCombiner(nn.Module):
    """:math:`r = \\mathbf{a}^\\top \\mathbf{u} + \\mathbf{v}^\\top \\tanh(W\\mathbf{u} +
    \\mathbf{b})`: ``[..., 1 + len(names)] -> [...]`` (``u[..., 0]`` is the standardised
    first-stage score)."""

    def __init__(self, names: Sequence[str], hidden: int = 0) -> None:
        super().__init__()
        self.names = list(names)
        self.hidden = int(hidden)
        width = 1 + len(self.names)
        self.linear = nn.Linear(width, 1, bias=False)
        with torch.no_grad():
            self.linear.weight.zero_()
            self.linear.weight[0, 0] = 1.0  # start as the first stage alone
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.Tanh(), nn.Linear(hidden, 1,
                                                                                bias=False)) \
            if hidden > 0 else None
        if self.mlp is not None:
            nn.init.zeros_(self.mlp[2].weight)

    def forward(self, u: Tensor) -> Tensor:
        out = self.linear(u).squeeze(-1)
        if self.mlp is not None:
            out = out + self.mlp(u).squeeze(-1)
        return out

    def score(self, first_stage: np.ndarray | None, features: np.ndarray) -> np.ndarray:
        """Scores of one list (numpy in, numpy out)."""
        u = np.concatenate([standardize(first_stage, len(features))[:, None],
                            np.asarray(features, dtype=np.float32).reshape(len(features), -1)],
                           axis=1)
        with torch.no_grad():
            return self(torch.from_numpy(u)).numpy()

    def weights(self) -> dict[str, float]:
        """The linear weights by input name (for reports)."""
        w = self.linear.weight[0].tolist()
        return dict(zip(["first_stage", *self.names], (round(x, 4) for x in w), strict=True))

    def to_json(self) -> dict[str, Any]:
        return {"names": self.names, "hidden": self.hidden,
                "state": {k: v.tolist() for k, v in self.state_dict().items()}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ScoreCombiner:
        model = cls(data["names"], data.get("hidden", 0))
        model.load_state_dict({k: torch.tensor(v) for k, v in data["state"].items()})
        return model.eval()

    def save(self, path: str | os.PathLike[str]) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_json()), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ScoreCombiner:
        return cls.from_json(json.loads(Path(path).read_text(encoding="utf-8")))


def train_combiner(model: ScoreCombiner,
                   lists: Sequence[tuple[np.ndarray | None, np.ndarray, np.ndarray]], *,
                   epochs: int = 100, lr: float = 1.0, l2: float = 1e-3, seed: int = 0,
                   log: Callable[[str], None] | None = None) -> float:
    """Fit on ``(first-stage scores [K] or None, features [K, F], relevant [K] bool)`` lists
    (full-batch L-BFGS, ``epochs`` iterations at most); returns the final loss."""
    torch.manual_seed(seed)
    us, pos = [], []
    for scores, feats, rel in lists:
        rel = np.asarray(rel, dtype=bool)
        if not rel.any() or rel.all():
            continue
        u = np.concatenate([standardize(scores, len(feats))[:, None],
                            np.asarray(feats, dtype=np.float32).reshape(len(feats), -1)], 1)
        us.append(torch.from_numpy(u))
        pos.append(torch.from_numpy(rel))
    if not us:
        raise ValueError("no training list has both a relevant and an irrelevant candidate")
    width = max(len(u) for u in us)
    u_pad = torch.zeros(len(us), width, us[0].shape[1])
    valid = torch.zeros(len(us), width, dtype=torch.bool)
    p_pad = torch.zeros(len(us), width, dtype=torch.bool)
    for i, (u, p) in enumerate(zip(us, pos, strict=True)):
        u_pad[i, :len(u)], valid[i, :len(u)], p_pad[i, :len(u)] = u, True, p
    opt = torch.optim.LBFGS(model.parameters(), lr=lr, max_iter=epochs,
                            line_search_fn="strong_wolfe")
    model.train()

    def closure() -> Tensor:
        r = model(u_pad).masked_fill(~valid, float("-inf"))
        log_p = F.log_softmax(r, dim=1)
        nll = -log_p.masked_fill(~p_pad, float("-inf")).logsumexp(1).mean()
        total = nll + l2 * sum((w ** 2).sum() for w in model.parameters())
        opt.zero_grad()
        total.backward()
        return total

    loss = opt.step(closure)
    model.eval()
    if log is not None:
        log(f"combiner({', '.join(model.names)}): loss {float(loss.detach()):.4f}")
    return float(loss.detach())
