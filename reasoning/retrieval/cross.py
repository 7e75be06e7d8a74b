r"""Cross-attention re-rankers: score a (text, image) pair jointly instead of as two vectors.

:class:`AdditiveCrossScorer` (additive attention scoring over the pooled features):

.. math::
    s(q, c) = \mathbf{w}^\top \tanh\big(W_q f_q(q) + W_c f_c(c) + \mathbf{b}\big)

with :math:`f_q` the frozen sentence vector and :math:`f_c` the frozen pooled image vector
(each layer-normalised first).

:class:`TransformerCrossScorer` (over tokens and patches): the text's token states
:math:`T \in \mathbb{R}^{L \times D_t}` and the image's grid cells
:math:`V \in \mathbb{R}^{P \times D_v}` are projected to width :math:`d`
(:math:`\tilde T = \mathrm{LN}(T W_t)`, :math:`\tilde V = \mathrm{LN}(V W_v) + E_{pos}`), then
``layers`` Transformer decoder layers let every token attend to the other tokens and to the
patches:

.. math::
    H = \mathrm{Decoder}(\tilde T, \tilde V), \qquad
    s(q, c) = \mathbf{w}_2^\top \mathrm{GELU}\big(W_1\, \mathrm{mean}_{\text{mask}}(H)\big)

Both are trained listwise (:func:`train_cross_scorer`): for a text and its candidate images
(hard negatives from the dual tower), or an image and its candidate texts,
:math:`\mathcal{L} = -\log \sum_{j \in \mathcal{P}} \mathrm{softmax}(s)_j` over the list
(:math:`\mathcal{P}` its relevant items). The scorer is symmetric in the task: it always reads
(text, image), so one model re-ranks text→image and image→text lists.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

CONFIG_NAME = "kgmm_cross_scorer.json"
WEIGHTS_NAME = "model.safetensors"
KINDS = ("additive", "transformer")


@dataclass
class CrossScorerConfig:
    """Which scorer and its sizes (JSON round-trip)."""

    kind: str = "additive"
    text_dim: int = 384
    image_dim: int = 1280
    hidden: int = 256
    layers: int = 1
    heads: int = 4
    patches: int = 49
    dropout: float = 0.1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CrossScorerConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class PairBatch:
    """Paired inputs (row ``i`` of each is one (text, image) pair)."""

    text_pooled: Tensor  # [B, Dt]
    image_pooled: Tensor  # [B, Dv]
    text_tokens: Tensor | None = None  # [B, L, Dt]
    text_mask: Tensor | None = None  # [B, L]
    image_tokens: Tensor | None = None  # [B, P, Dv]


class AdditiveCrossScorer(nn.Module):
    r""":math:`s = \mathbf{w}^\top \tanh(W_q \mathbf{t} + W_c \mathbf{v} + \mathbf{b})` on
    paired pooled features: ``[B, Dt], [B, Dv] -> [B]``."""

    needs_tokens = False

    def __init__(self, config: CrossScorerConfig) -> None:
        super().__init__()
        self.config = config
        self.norm_q = nn.LayerNorm(config.text_dim)
        self.norm_c = nn.LayerNorm(config.image_dim)
        self.w_q = nn.Linear(config.text_dim, config.hidden, bias=False)
        self.w_c = nn.Linear(config.image_dim, config.hidden, bias=True)  # carries b
        self.w = nn.Linear(config.hidden, 1, bias=False)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, batch: PairBatch) -> Tensor:
        h = torch.tanh(self.w_q(self.norm_q(batch.text_pooled.float()))
                       + self.w_c(self.norm_c(batch.image_pooled.float())))
        return self.w(self.dropout(h)).squeeze(-1)


class TransformerCrossScorer(nn.Module):
    """Text tokens attend to image patches (module docstring): paired ``PairBatch`` -> ``[B]``."""

    needs_tokens = True

    def __init__(self, config: CrossScorerConfig) -> None:
        super().__init__()
        self.config = config
        d = config.hidden
        self.text_in = nn.Sequential(nn.Linear(config.text_dim, d), nn.LayerNorm(d))
        self.image_in = nn.Sequential(nn.Linear(config.image_dim, d), nn.LayerNorm(d))
        self.pos = nn.Parameter(torch.zeros(config.patches, d))
        nn.init.normal_(self.pos, std=0.02)
        layer = nn.TransformerDecoderLayer(d, config.heads, dim_feedforward=2 * d,
                                           dropout=config.dropout, batch_first=True,
                                           norm_first=True)
        self.decoder = nn.TransformerDecoder(layer, config.layers)
        self.head = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, d), nn.GELU(), nn.Linear(d, 1))

    def forward(self, batch: PairBatch) -> Tensor:
        if batch.text_tokens is None or batch.text_mask is None or batch.image_tokens is None:
            raise ValueError("the transformer cross scorer needs text tokens and image patches")
        if batch.image_tokens.shape[1] != self.config.patches:
            raise ValueError(f"the scorer was trained on {self.config.patches} image patches, "
                             f"got {batch.image_tokens.shape[1]} (another image size?)")
        q = self.text_in(batch.text_tokens.float())
        m = self.image_in(batch.image_tokens.float()) + self.pos
        mask = batch.text_mask.bool()
        h = self.decoder(q, m, tgt_key_padding_mask=~mask)
        w = mask.unsqueeze(-1).float()
        pooled = (h * w).sum(1) / w.sum(1).clamp_min(1.0)
        return self.head(pooled).squeeze(-1)


def build_cross_scorer(config: CrossScorerConfig | None = None, **overrides: Any) -> nn.Module:
    """An :class:`AdditiveCrossScorer` or :class:`TransformerCrossScorer` by ``kind``."""
    config = config or CrossScorerConfig(**overrides)
    if config.kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {config.kind!r}")
    cls = AdditiveCrossScorer if config.kind == "additive" else TransformerCrossScorer
    return cls(config)


def save_cross_scorer(model: nn.Module, directory: str | os.PathLike[str]) -> Path:
    from safetensors.torch import save_file

    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    (path / CONFIG_NAME).write_text(json.dumps(model.config.to_dict(), indent=1),
                                    encoding="utf-8")
    save_file({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()},
              str(path / WEIGHTS_NAME))
    return path


def load_cross_scorer(directory: str | os.PathLike[str]) -> nn.Module:
    from safetensors.torch import load_file

    path = Path(directory)
    config = CrossScorerConfig.from_dict(json.loads((path / CONFIG_NAME).read_text("utf-8")))
    model = build_cross_scorer(config)
    model.load_state_dict(load_file(str(path / WEIGHTS_NAME)))
    return model.eval()


@dataclass
class FeatureRows:
    """Frozen features looked up by row: pooled ``[N, D]``, optional tokens ``[N, L, D]``."""

    pooled: Tensor
    tokens: Tensor | None = None
    mask: Tensor | None = None


def pair_batch(texts: FeatureRows, images: FeatureRows, text_rows: Tensor,
               image_rows: Tensor, tokens: bool) -> PairBatch:
    """Gather paired rows into a :class:`PairBatch` (tokens only when ``tokens``)."""
    if not tokens:
        return PairBatch(texts.pooled[text_rows], images.pooled[image_rows])
    if texts.tokens is None or texts.mask is None or images.tokens is None:
        raise ValueError("token features are needed for this scorer")
    mask = texts.mask[text_rows]
    length = max(int(mask.sum(1).max()), 1) if mask.numel() else 1
    return PairBatch(texts.pooled[text_rows], images.pooled[image_rows],
                     texts.tokens[text_rows, :length], mask[:, :length],
                     images.tokens[image_rows])


def score_pairs(model: nn.Module, texts: FeatureRows, images: FeatureRows,
                text_rows: Sequence[int] | Tensor, image_rows: Sequence[int] | Tensor,
                batch_size: int = 512) -> Tensor:
    """Scores of paired rows ``[n]`` in eval mode, without gradients."""
    tr = torch.as_tensor(text_rows, dtype=torch.long)
    ir = torch.as_tensor(image_rows, dtype=torch.long)
    out = []
    was = model.training
    model.eval()
    with torch.no_grad():
        for start in range(0, len(tr), batch_size):
            out.append(model(pair_batch(texts, images, tr[start:start + batch_size],
                                        ir[start:start + batch_size], model.needs_tokens)))
    model.train(was)
    return torch.cat(out) if out else torch.zeros(0)


@dataclass
class TrainList:
    """One training list: ``anchor`` is a text row (t2i) or an image row (i2t)."""

    anchor: int
    candidates: list[int]
    positive: list[bool]
    anchor_is_text: bool = True


def train_cross_scorer(model: nn.Module, texts: FeatureRows, images: FeatureRows,
                       lists: Sequence[TrainList], *, epochs: int = 4, lists_per_step: int = 16,
                       lr: float = 1e-3, weight_decay: float = 1e-4, seed: int = 0,
                       log: Callable[[str], None] | None = None) -> list[float]:
    """Listwise training (module docstring); returns the mean loss per epoch."""
    lists = [x for x in lists if any(x.positive) and not all(x.positive)]
    if not lists:
        raise ValueError("no training list has both a relevant and an irrelevant candidate")
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(seed)
    history = []
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(lists), generator=gen).tolist()
        total = 0.0
        for start in range(0, len(order), lists_per_step):
            chunk = [lists[i] for i in order[start:start + lists_per_step]]
            t_rows, i_rows, sizes = [], [], []
            for item in chunk:
                for c in item.candidates:
                    t_rows.append(item.anchor if item.anchor_is_text else c)
                    i_rows.append(c if item.anchor_is_text else item.anchor)
                sizes.append(len(item.candidates))
            scores = model(pair_batch(texts, images, torch.tensor(t_rows), torch.tensor(i_rows),
                                      model.needs_tokens))
            loss = scores.new_zeros(())
            for part, item in zip(scores.split(sizes), chunk, strict=True):
                pos = torch.tensor(item.positive)
                log_p = F.log_softmax(part, dim=0)
                loss = loss - log_p[pos].logsumexp(0)
            loss = loss / len(chunk)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(chunk)
        history.append(total / len(lists))
        if log is not None:
            log(f"{model.config.kind} cross scorer epoch {epoch}: loss {history[-1]:.4f}")
    model.eval()
    return history
