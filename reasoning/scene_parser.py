r"""Visual entity linking: a scene parser from frozen image-grid features to KG entities.

:class:`SceneParser` reads the token grid of a frozen image encoder
(:class:`~kgmm.reasoning.encoders.ImageFeatures` ``tokens [B, P, D]``, ``P = h·w``, row-major)
and predicts, for every cell :math:`c`,

* an objectness logit :math:`o_c` — does the centre of an object fall in this cell;
* a box :math:`(\delta_x, \delta_y, \log w, \log h)` — the centre's offset inside the cell and
  the box size as a share of the canvas;
* an embedding :math:`\mathbf{z}_c \in \mathbb{R}^{E}` (L2-normalised), comparable with the
  text embeddings of KG nodes (``E = 384``, MiniLM), so that linking is

.. math::
    s_{c,k} = e^{t}\, \mathbf{z}_c^\top \hat{\mathbf{e}}_k, \qquad
    \hat{\mathbf{e}}_k = \mathbf{e}_k / \lVert \mathbf{e}_k \rVert_2 .

Because the classifier weights are text embeddings of KG nodes (``CompiledKG.node_text``),
the candidate set can change at test time — synsets never seen in training are scored the
same way (zero-shot linking).

Per cell (``u`` = the cell feature projected to ``cell_dim``):

.. math::
    \mathbf{u}_c = W_u\,\mathrm{LN}(\mathbf{x}_c), \quad
    \mathbf{n}_c = \mathrm{GELU}\big(\mathrm{Conv}_{3\times3}(\mathbf{U})_c\big), \quad
    [o_c, \mathbf{b}_c, \tilde{\mathbf{z}}_c] = \mathrm{MLP}_2([\mathbf{u}_c; \mathbf{n}_c;
    \mathbf{p}_c]), \quad \mathbf{z}_c = \tilde{\mathbf{z}}_c / \lVert\tilde{\mathbf{z}}_c\rVert

with :math:`\mathbf{p}_c` a learned position encoding (bilinearly resized when the grid
differs from ``config.grid_size``).

Training targets come from the benchmark's scene graphs (:func:`scene_parser_targets`):
the cell holding an object's box centre is positive, labelled with the object's synset. The
loss (:func:`scene_parser_loss`) is

.. math::
    \mathcal{L} = \mathrm{BCE}(o, y) + \lambda_{nce}\,\mathcal{L}_{InfoNCE}
    + \lambda_{cand}\,\mathrm{CE}(s_{c,\cdot}, k_c) + \lambda_{box}\, \lVert \mathbf{b}_c -
    \mathbf{b}^*_c \rVert_1

over the positive cells: the symmetric multi-positive InfoNCE of
:class:`~kgmm.reasoning.alignment.InfoNCELoss` between cell embeddings and their entities'
text embeddings (cells showing the same synset are positives of each other), plus
cross-entropy against *all* training candidates.

:meth:`SceneParser.parse` turns the grid into :class:`Detection` lists by peak picking: a
cell is kept when :math:`\sigma(o_c) \ge` ``objectness_threshold`` and it is a maximum of its
``(2r+1)²`` neighbourhood, at most ``max_objects`` per image.

Checkpoints: ``save_pretrained(dir)`` writes ``kgmm_scene_parser.json`` and
``model.safetensors``.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .alignment import InfoNCELoss

__all__ = [
    "CONFIG_NAME",
    "WEIGHTS_NAME",
    "Detection",
    "EntityEmbeddingCache",
    "SceneParser",
    "SceneParserConfig",
    "SceneParserOutput",
    "SceneTargets",
    "evaluate_scene_parser",
    "match_detections",
    "peak_mask",
    "scene_parser_loss",
    "scene_parser_targets",
    "stack_targets",
    "train_scene_parser",
]

CONFIG_NAME = "kgmm_scene_parser.json"
WEIGHTS_NAME = "model.safetensors"
_BOX_DIM = 4


# ------------------------------------------------------------------------------------------
# config and outputs


@dataclass
class SceneParserConfig:
    """Settings of a :class:`SceneParser`; ``to_json()`` / ``from_json()`` round-trip.

    Attributes:
        feature_dim: ``D`` of the image encoder's tokens (1280 for EfficientNet-Lite0).
        embed_dim: ``E``, the text embedding size (384 for MiniLM).
        cell_dim: size of the projected cell feature :math:`\\mathbf{u}_c`.
        context_dim: channels of the 3×3 neighbourhood convolution.
        pos_dim: size of the learned position encoding.
        hidden: hidden width of the 2-layer MLP.
        grid_size: ``(h, w)`` the position encoding is learned at.
        temperature: initial :math:`\\tau`, linking scale :math:`e^t = 1/\\tau`.
        learn_temperature: learn :math:`t` (clamped to ``max_scale``).
        max_scale: upper bound on the linking scale.
        dropout: dropout inside the MLP.
        max_objects: most detections per image.
        objectness_threshold: least :math:`\\sigma(o_c)` of a detection.
        nms_radius: peak picking window radius ``r`` in cells (1 = 8 neighbours, 0 = off).
        top_k: entities listed per detection.
    """

    feature_dim: int = 1280
    embed_dim: int = 384
    cell_dim: int = 256
    context_dim: int = 128
    pos_dim: int = 32
    hidden: int = 512
    grid_size: tuple[int, int] = (4, 4)
    temperature: float = 0.07
    learn_temperature: bool = True
    max_scale: float = 100.0
    dropout: float = 0.1
    max_objects: int = 8
    objectness_threshold: float = 0.5
    nms_radius: int = 1
    top_k: int = 5

    def __post_init__(self) -> None:
        self.grid_size = (int(self.grid_size[0]), int(self.grid_size[1]))
        if min(self.grid_size) < 1 or self.max_objects < 1 or self.nms_radius < 0:
            raise ValueError("grid_size and max_objects must be positive, nms_radius >= 0")
        if not 0.0 <= self.objectness_threshold <= 1.0:
            raise ValueError("objectness_threshold must be in [0, 1]")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["grid_size"] = list(self.grid_size)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SceneParserConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown SceneParserConfig fields: {sorted(unknown)}")
        kwargs = dict(data)
        if "grid_size" in kwargs:
            kwargs["grid_size"] = tuple(kwargs["grid_size"])
        return cls(**kwargs)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> SceneParserConfig:
        return cls.from_dict(json.loads(text))


class SceneParserOutput(NamedTuple):
    """Per-cell predictions for ``B`` images of ``P = h·w`` cells.

    Attributes:
        objectness: ``[B, P]`` logits :math:`o_c`.
        boxes: ``[B, P, 4]`` raw box outputs :math:`(\\delta_x, \\delta_y, \\log w, \\log h)`
            (offsets are logits: the centre is ``(col + σ(δx)) / w``; sizes are shares of the
            canvas).
        embeddings: ``[B, P, E]`` L2-normalised :math:`\\mathbf{z}_c`.
        grid_size: ``(h, w)``.
    """

    objectness: Tensor
    boxes: Tensor
    embeddings: Tensor
    grid_size: tuple[int, int]


@dataclass
class Detection:
    """One parsed object.

    Attributes:
        cell: row-major cell index.
        center: ``(x, y)`` in ``[0, 1]`` (fractions of the image width and height).
        box: ``(x0, y0, x1, y1)`` in ``[0, 1]``, from the box head (clipped to the image).
        objectness: :math:`\\sigma(o_c)`.
        entities: ``[(entity_id, score), ...]``, best first, scores = scaled cosine.
    """

    cell: int
    center: tuple[float, float]
    box: tuple[float, float, float, float]
    objectness: float
    entities: list[tuple[str, float]] = field(default_factory=list)

    @property
    def entity_id(self) -> str | None:
        """The top-1 entity, or None if no candidates were given."""
        return self.entities[0][0] if self.entities else None


# ------------------------------------------------------------------------------------------
# the model


class SceneParser(nn.Module):
    r"""Objectness, box and KG-entity embedding per grid cell (see the module docstring).

    Shapes: ``forward(tokens [B, P, D], grid_size=(h, w))`` -> :class:`SceneParserOutput`;
    ``link(z [..., E], entity_embeddings [K, E]) -> [..., K]``.
    """

    def __init__(self, config: SceneParserConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        config = config or SceneParserConfig()
        if overrides:
            config = SceneParserConfig.from_dict({**config.to_dict(), **overrides})
        self.config = c = config
        self.norm = nn.LayerNorm(c.feature_dim)
        self.cell = nn.Linear(c.feature_dim, c.cell_dim)
        self.context = nn.Conv2d(c.cell_dim, c.context_dim, kernel_size=3, padding=1)
        h, w = c.grid_size
        self.position = nn.Parameter(torch.empty(c.pos_dim, h, w))
        self.mlp = nn.Sequential(
            nn.Linear(c.cell_dim + c.context_dim + c.pos_dim, c.hidden), nn.GELU(),
            nn.Dropout(c.dropout), nn.Linear(c.hidden, 1 + _BOX_DIM + c.embed_dim))
        self.contrast = InfoNCELoss(c.temperature, max_scale=c.max_scale,
                                    learnable=c.learn_temperature, multi_positive="sum")
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.norm.reset_parameters()
        self.cell.reset_parameters()
        self.context.reset_parameters()
        nn.init.normal_(self.position, std=0.02)
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                m.reset_parameters()
        self.contrast.reset_parameters()
        with torch.no_grad():  # start with few objects predicted (prior 0.1)
            self.mlp[-1].bias[0].fill_(-math.log(9.0))

    @property
    def scale(self) -> Tensor:
        r"""The linking scale :math:`e^{t}` (0-d tensor)."""
        return self.contrast.scale

    def _position(self, grid_size: tuple[int, int]) -> Tensor:
        pos = self.position
        if tuple(pos.shape[1:]) != tuple(grid_size):
            pos = F.interpolate(pos[None], size=grid_size, mode="bilinear",
                                align_corners=False)[0]
        return pos.flatten(1).T  # [P, pos_dim]

    def forward(self, tokens: Tensor, grid_size: Sequence[int] | None = None
                ) -> SceneParserOutput:
        if tokens.dim() != 3 or tokens.shape[-1] != self.config.feature_dim:
            raise ValueError(f"tokens must be [B, P, {self.config.feature_dim}], "
                             f"got {tuple(tokens.shape)}")
        b, p, _ = tokens.shape
        h, w = _grid(p, grid_size)
        u = self.cell(self.norm(tokens))                                   # [B, P, C]
        grid = u.transpose(1, 2).reshape(b, -1, h, w)
        n = F.gelu(self.context(grid)).flatten(2).transpose(1, 2)          # [B, P, Cc]
        pos = self._position((h, w)).to(u.dtype).expand(b, -1, -1)
        out = self.mlp(torch.cat([u, n, pos], dim=-1))
        z = F.normalize(out[..., 1 + _BOX_DIM:], dim=-1)
        return SceneParserOutput(out[..., 0], out[..., 1:1 + _BOX_DIM], z, (h, w))

    def link(self, z: Tensor, entity_embeddings: Tensor) -> Tensor:
        r"""Linking scores :math:`s = e^t\,\mathbf{z}\,\hat{\mathbf{E}}^\top`:
        ``z [..., E]``, ``entity_embeddings [K, E]`` -> ``[..., K]``."""
        e = F.normalize(entity_embeddings.to(z.dtype), dim=-1)
        return self.scale * (z @ e.T)

    @torch.no_grad()
    def parse(self, features: Any, entity_embeddings: Tensor | None = None,
              entity_ids: Sequence[str] | None = None, *, grid_size: Sequence[int] | None = None,
              threshold: float | None = None, max_objects: int | None = None,
              top_k: int | None = None) -> list[list[Detection]]:
        """Detections per image, linked to the candidate entities.

        Args:
            features: ``ImageFeatures`` (its ``tokens`` and ``grid_size`` are used), a
                ``[B, P, D]`` tensor, or a :class:`SceneParserOutput`.
            entity_embeddings: ``[K, E]`` text embeddings of the candidates (None: no linking).
            entity_ids: the ``K`` ids, in the same order.
            grid_size / threshold / max_objects / top_k: override the config.

        Returns:
            For each image, detections sorted by objectness (descending).
        """
        cfg = self.config
        threshold = cfg.objectness_threshold if threshold is None else threshold
        max_objects = cfg.max_objects if max_objects is None else max_objects
        top_k = cfg.top_k if top_k is None else top_k
        if isinstance(features, SceneParserOutput):
            out = features
        else:
            tokens = getattr(features, "tokens", features)
            grid_size = grid_size or getattr(features, "grid_size", None)
            was_training = self.training
            self.eval()
            try:
                out = self(tokens, grid_size)
            finally:
                self.train(was_training)
        if entity_embeddings is not None and entity_ids is not None \
                and len(entity_ids) != entity_embeddings.shape[0]:
            raise ValueError(f"{len(entity_ids)} entity ids for "
                             f"{entity_embeddings.shape[0]} embeddings")
        h, w = out.grid_size
        prob = out.objectness.sigmoid()
        keep = peak_mask(prob, (h, w), cfg.nms_radius) & (prob >= threshold)
        scores = top = None
        if entity_embeddings is not None and entity_embeddings.shape[0] > 0:
            scores = self.link(out.embeddings, entity_embeddings)
            k = min(top_k, scores.shape[-1])
            top = scores.topk(k, dim=-1)
        ids = list(entity_ids) if entity_ids is not None else None
        results: list[list[Detection]] = []
        for i in range(prob.shape[0]):
            cells = keep[i].nonzero().flatten()
            cells = cells[prob[i, cells].argsort(descending=True)][:max_objects]
            dets = []
            for cell in cells.tolist():
                center, box = _decode_box(out.boxes[i, cell], cell, (h, w))
                entities: list[tuple[str, float]] = []
                if top is not None:
                    vals, idx = top.values[i, cell].tolist(), top.indices[i, cell].tolist()
                    entities = [(ids[j] if ids is not None else str(j), float(v))
                                for v, j in zip(vals, idx, strict=True)]
                dets.append(Detection(cell, center, box, float(prob[i, cell]), entities))
            results.append(dets)
        return results

    # -- checkpoints -------------------------------------------------------------------------

    def save_pretrained(self, save_directory: str | os.PathLike[str]) -> Path:
        """Write ``kgmm_scene_parser.json`` and ``model.safetensors`` into the directory."""
        from safetensors.torch import save_file

        path = Path(save_directory)
        path.mkdir(parents=True, exist_ok=True)
        (path / CONFIG_NAME).write_text(self.config.to_json() + "\n", encoding="utf-8")
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(state, str(path / WEIGHTS_NAME), metadata={"format": "pt"})
        return path

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike[str]) -> SceneParser:
        """Load a parser written by :meth:`save_pretrained` (in eval mode)."""
        from safetensors.torch import load_file

        path = Path(directory)
        config = SceneParserConfig.from_json((path / CONFIG_NAME).read_text(encoding="utf-8"))
        model = cls(config)
        model.load_state_dict(load_file(str(path / WEIGHTS_NAME)))
        return model.eval()


def _grid(p: int, grid_size: Sequence[int] | None) -> tuple[int, int]:
    if grid_size is None:
        side = math.isqrt(p)
        if side * side != p:
            raise ValueError(f"{p} tokens are not a square grid; pass grid_size")
        return side, side
    h, w = int(grid_size[0]), int(grid_size[1])
    if h * w != p:
        raise ValueError(f"grid_size {(h, w)} does not match {p} tokens")
    return h, w


def _decode_box(raw: Tensor, cell: int, grid_size: tuple[int, int]
                ) -> tuple[tuple[float, float], tuple[float, float, float, float]]:
    """Centre ``((col + σ(δx))/w, (row + σ(δy))/h)`` and box ``centre ± exp(log size)/2``."""
    h, w = grid_size
    row, col = divmod(cell, w)
    dx, dy, lw, lh = raw.tolist()
    cx = (col + 1.0 / (1.0 + math.exp(-dx))) / w
    cy = (row + 1.0 / (1.0 + math.exp(-dy))) / h
    bw, bh = math.exp(min(lw, 0.0)), math.exp(min(lh, 0.0))
    box = (max(0.0, cx - bw / 2), max(0.0, cy - bh / 2), min(1.0, cx + bw / 2),
           min(1.0, cy + bh / 2))
    return (cx, cy), box


def peak_mask(prob: Tensor, grid_size: Sequence[int], radius: int = 1) -> Tensor:
    """``[B, P]`` bool: cells whose value is the maximum of their ``(2r+1)²`` window
    (ties keep the first cell in row-major order, so a plateau gives one peak)."""
    h, w = int(grid_size[0]), int(grid_size[1])
    if radius <= 0:
        return torch.ones_like(prob, dtype=torch.bool)
    b = prob.shape[0]
    grid = prob.reshape(b, 1, h, w)
    k = 2 * radius + 1
    pooled = F.max_pool2d(grid, k, stride=1, padding=radius)
    peak = grid >= pooled
    # ties: a cell loses to an equal neighbour that comes earlier in row-major order
    index = torch.arange(h * w, device=prob.device, dtype=prob.dtype).reshape(1, 1, h, w)
    tied = torch.where(grid >= pooled, -index, torch.full_like(index, -float(h * w))
                       .expand_as(grid))
    first = F.max_pool2d(tied, k, stride=1, padding=radius)
    peak &= -first == index
    return peak.reshape(b, h * w)


# ------------------------------------------------------------------------------------------
# targets from scene graphs


class SceneTargets(NamedTuple):
    """Training targets of one scene (``[P]``) or a stack of scenes (``[N, P]``).

    Attributes:
        objectness: float, 1 at the cell holding an object's box centre (with ``sigma > 0``,
            a Gaussian bump :math:`e^{-d^2/2\\sigma^2}` around it, ``d`` in cells).
        entity: long, the entity index of the object centred in the cell, ``-1`` elsewhere
            (and for objects whose synset is not in the candidate index).
        boxes: float ``[..., 4]``: centre offset in the cell (``[0, 1]``) and box size as a
            share of the canvas, for positive cells (zeros elsewhere).
    """

    objectness: Tensor
    entity: Tensor
    boxes: Tensor


def _object_cell(box: Sequence[float], grid_size: tuple[int, int],
                 canvas_size: tuple[float, float]) -> tuple[int, int, float, float]:
    """Row, column and in-cell offsets of a box centre."""
    h, w = grid_size
    cw, ch = canvas_size
    x0, y0, x1, y1 = (float(v) for v in box)
    gx, gy = (x0 + x1) / 2 / cw * w, (y0 + y1) / 2 / ch * h
    col, row = min(max(int(gx), 0), w - 1), min(max(int(gy), 0), h - 1)
    return row, col, gx - col, gy - row


def scene_parser_targets(scene: Mapping[str, Any], grid_size: Sequence[int],
                         canvas_size: Sequence[float] | None = None,
                         entity_index: Mapping[str, int] | None = None,
                         sigma: float = 0.0) -> SceneTargets:
    """Targets of one scene graph (the benchmark's ``scenes/*.json`` entries: ``objects`` with
    ``box = [x0, y0, x1, y1]`` in pixels and ``synset_id``; ``width``/``height``).

    The cell containing an object's box centre is positive with that object's synset. When
    two centres fall in one cell, the cell takes the object whose centre is nearer the cell
    centre.

    Args:
        scene: the scene graph.
        grid_size: ``(h, w)`` of the feature grid.
        canvas_size: ``(width, height)`` in pixels (default: the scene's own).
        entity_index: synset id -> candidate index (None: every entity is ``-1``).
        sigma: soft objectness targets, ``exp(-d²/2σ²)`` at cell distance ``d`` (0 = hard).
    """
    h, w = int(grid_size[0]), int(grid_size[1])
    if canvas_size is None:
        canvas_size = (scene["width"], scene["height"])
    cw, ch = float(canvas_size[0]), float(canvas_size[1])
    objectness = torch.zeros(h, w)
    entity = torch.full((h * w,), -1, dtype=torch.long)
    boxes = torch.zeros(h * w, _BOX_DIM)
    nearest = [math.inf] * (h * w)
    rows = torch.arange(h, dtype=torch.float32).view(h, 1)
    cols = torch.arange(w, dtype=torch.float32).view(1, w)
    for obj in scene["objects"]:
        row, col, ox, oy = _object_cell(obj["box"], (h, w), (cw, ch))
        cell = row * w + col
        if sigma > 0:
            d2 = (rows - row) ** 2 + (cols - col) ** 2
            objectness = torch.maximum(objectness, torch.exp(-d2 / (2 * sigma * sigma)))
        objectness[row, col] = 1.0
        dist = (ox - 0.5) ** 2 + (oy - 0.5) ** 2
        if dist < nearest[cell]:
            nearest[cell] = dist
            x0, y0, x1, y1 = (float(v) for v in obj["box"])
            boxes[cell] = torch.tensor([ox, oy, (x1 - x0) / cw, (y1 - y0) / ch])
            idx = entity_index.get(obj["synset_id"], -1) if entity_index is not None else -1
            entity[cell] = idx
    return SceneTargets(objectness.flatten(), entity, boxes)


def stack_targets(targets: Sequence[SceneTargets]) -> SceneTargets:
    """Stack per-scene targets into ``[N, P]`` tensors."""
    return SceneTargets(*(torch.stack([getattr(t, name) for t in targets])
                          for name in SceneTargets._fields))


# ------------------------------------------------------------------------------------------
# loss and training


def scene_parser_loss(parser: SceneParser, output: SceneParserOutput, targets: SceneTargets,
                      entity_embeddings: Tensor, *, nce_weight: float = 1.0,
                      candidate_weight: float = 1.0, box_weight: float = 1.0
                      ) -> tuple[Tensor, dict[str, float]]:
    r"""The training loss (module docstring) and its detached terms.

    * ``objectness``: :math:`\frac{1}{BP}\sum \mathrm{BCE}(o_c, y_c)`;
    * ``nce``: :class:`InfoNCELoss` (multi-positive, ``sum``) between the positive cells'
      :math:`\mathbf{z}_c` and :math:`\mathbf{e}_{k_c}`, targets :math:`k_c` (duplicates of a
      synset are positives of each other, never negatives);
    * ``candidates``: :math:`\mathrm{CE}(e^t \mathbf{z}_c^\top \hat{\mathbf{E}}, k_c)` over
      all ``K`` candidates;
    * ``box``: L1 between :math:`(\sigma(\delta_x), \sigma(\delta_y), e^{\log w},
      e^{\log h})` and the targets, on positive cells.
    """
    obj_loss = F.binary_cross_entropy_with_logits(output.objectness, targets.objectness)
    pos = targets.objectness >= 1.0
    linked = targets.entity >= 0
    terms = {"objectness": float(obj_loss.detach())}
    loss = obj_loss
    if bool(pos.any()):
        raw = output.boxes[pos]
        pred = torch.cat([raw[:, :2].sigmoid(), raw[:, 2:].clamp(max=2.0).exp()], dim=-1)
        box_loss = F.l1_loss(pred, targets.boxes[pos])
        loss = loss + box_weight * box_loss
        terms["box"] = float(box_loss.detach())
    if bool(linked.any()):
        z, k = output.embeddings[linked], targets.entity[linked]
        if nce_weight:
            nce = parser.contrast(z, entity_embeddings[k].to(z.dtype), k)
            loss = loss + nce_weight * nce
            terms["nce"] = float(nce.detach())
        if candidate_weight:
            cand = F.cross_entropy(parser.link(z, entity_embeddings), k)
            loss = loss + candidate_weight * cand
            terms["candidates"] = float(cand.detach())
    terms["loss"] = float(loss.detach())
    return loss, terms


def train_scene_parser(parser: SceneParser, features: Tensor, targets: SceneTargets,
                       entity_embeddings: Tensor, epochs: int = 10, lr: float = 1e-3,
                       batch_size: int = 32, seed: int = 0, *, weight_decay: float = 0.01,
                       grid_size: Sequence[int] | None = None, flip: bool = False,
                       **loss_weights: float) -> list[dict[str, float]]:
    """Train ``parser`` with AdamW on cached frozen features (a simple loop).

    Args:
        features: ``[N, P, D]`` grid tokens of ``N`` training images.
        targets: stacked :class:`SceneTargets` (``[N, P]``; :func:`stack_targets`).
        entity_embeddings: ``[K, E]`` text embeddings of the training candidates
            (``targets.entity`` indexes them).
        epochs / lr / batch_size / seed / weight_decay: the optimisation.
        grid_size: ``(h, w)`` when ``P`` is not a square.
        flip: augment with random horizontal flips of the grid (features, targets and
            box offsets mirrored).
        loss_weights: ``nce_weight``, ``candidate_weight``, ``box_weight``
            (:func:`scene_parser_loss`).

    Returns:
        One dict per epoch: mean of each loss term, ``seconds`` (wall time of the epoch).
    """
    n, p, _ = features.shape
    h, w = _grid(p, grid_size)
    if targets.objectness.shape != (n, p):
        raise ValueError(f"targets must be [{n}, {p}], got {tuple(targets.objectness.shape)}")
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    random.seed(seed)
    device = next(parser.parameters()).device
    entity_embeddings = entity_embeddings.to(device)
    optimizer = torch.optim.AdamW(parser.parameters(), lr=lr, weight_decay=weight_decay)
    steps = max(1, epochs * math.ceil(n / batch_size))
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps,
                                                   pct_start=0.1)
    history: list[dict[str, float]] = []
    parser.train()
    for epoch in range(epochs):
        start = time.perf_counter()
        sums: dict[str, float] = {}
        batches = 0
        for idx in torch.randperm(n, generator=generator).split(batch_size):
            x = features[idx].to(device)
            t = SceneTargets(*(v[idx].to(device) for v in targets))
            if flip and bool(torch.rand((), generator=generator) < 0.5):
                x, t = _hflip(x, t, (h, w))
            out = parser(x, (h, w))
            loss, terms = scene_parser_loss(parser, out, t, entity_embeddings, **loss_weights)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            for key, value in terms.items():
                sums[key] = sums.get(key, 0.0) + value
            batches += 1
        record = {key: value / batches for key, value in sums.items()}
        record.update(epoch=float(epoch), seconds=time.perf_counter() - start)
        history.append(record)
    parser.eval()
    return history


def _hflip(x: Tensor, t: SceneTargets, grid_size: tuple[int, int]) -> tuple[Tensor, SceneTargets]:
    h, w = grid_size
    b = x.shape[0]

    def flip(v: Tensor) -> Tensor:
        return v.reshape(b, h, w, *v.shape[2:]).flip(2).reshape(v.shape)

    boxes = flip(t.boxes).clone()
    pos = flip(t.objectness) >= 1.0
    boxes[..., 0] = torch.where(pos, 1.0 - boxes[..., 0], boxes[..., 0])
    return flip(x), SceneTargets(flip(t.objectness), flip(t.entity), boxes)


# ------------------------------------------------------------------------------------------
# entity embeddings


class EntityEmbeddingCache:
    """Text embeddings of KG nodes, ``text_encoder.embed([kg.node_text(i)])``, cached by id.

    >>> cache = EntityEmbeddingCache(kg, build_text_encoder("minilm"))
    >>> E = cache(["wn:dog.n.01", "wn:cat.n.01"])     # [2, 384], L2-normalised
    """

    def __init__(self, kg: Any, text_encoder: Any) -> None:
        self.kg = kg
        self.text_encoder = text_encoder
        self._cache: dict[str, Tensor] = {}

    def text(self, entity_id: str) -> str:
        return str(self.kg.node_text(self.kg.index_of(entity_id)))

    def __call__(self, entity_ids: Sequence[str]) -> Tensor:
        missing = [e for e in dict.fromkeys(entity_ids) if e not in self._cache]
        if missing:
            with torch.no_grad():
                vectors = self.text_encoder.embed([self.text(e) for e in missing])
            self._cache.update(zip(missing, vectors.detach().float().cpu(), strict=True))
        if not entity_ids:
            return torch.zeros(0, int(getattr(self.text_encoder, "dim", 384)))
        return torch.stack([self._cache[e] for e in entity_ids])

    def __len__(self) -> int:
        return len(self._cache)


# ------------------------------------------------------------------------------------------
# evaluation


def match_detections(detections: Sequence[Detection], scene: Mapping[str, Any],
                     canvas_size: Sequence[float] | None = None, margin: float = 0.0
                     ) -> list[tuple[int, int]]:
    """One-to-one matching of detections to scene objects: a detection can match an object
    whose box (grown by ``margin``, a share of the canvas, on every side) contains the
    detection's centre. Detections are taken by objectness, each matching the free object
    with the nearest box centre. Returns ``[(detection index, object index)]``."""
    if canvas_size is None:
        canvas_size = (scene["width"], scene["height"])
    cw, ch = float(canvas_size[0]), float(canvas_size[1])
    boxes = [(o["box"][0] / cw, o["box"][1] / ch, o["box"][2] / cw, o["box"][3] / ch)
             for o in scene["objects"]]
    used: set[int] = set()
    pairs: list[tuple[int, int]] = []
    order = sorted(range(len(detections)), key=lambda i: -detections[i].objectness)
    for i in order:
        cx, cy = detections[i].center
        best, best_d = -1, math.inf
        for j, (x0, y0, x1, y1) in enumerate(boxes):
            if j in used or not (x0 - margin <= cx <= x1 + margin
                                 and y0 - margin <= cy <= y1 + margin):
                continue
            d = (cx - (x0 + x1) / 2) ** 2 + (cy - (y0 + y1) / 2) ** 2
            if d < best_d:
                best, best_d = j, d
        if best >= 0:
            used.add(best)
            pairs.append((i, best))
    return pairs


@torch.no_grad()
def evaluate_scene_parser(parser: SceneParser, features: Tensor, targets: SceneTargets,
                          entity_embeddings: Tensor, *, scenes: Sequence[Mapping[str, Any]]
                          | None = None, entity_ids: Sequence[str] | None = None,
                          eval_entities: Tensor | None = None, margin: float = 0.0,
                          grid_size: Sequence[int] | None = None) -> dict[str, float]:
    """Accuracy of a parser on cached features.

    Cell level (``targets``): ``cell_precision`` / ``cell_recall`` of
    :math:`\\sigma(o_c) \\ge` threshold against centre cells; ``link_top1``: top-1 linking
    accuracy over the labelled centre cells against all ``K`` candidates (restricted to
    cells whose entity is in ``eval_entities`` when given — e.g. only novel synsets).

    Detection level (``scenes`` and ``entity_ids`` given): :meth:`SceneParser.parse`, then
    :func:`match_detections`; ``det_precision`` / ``det_recall`` and ``det_link_top1`` (matched
    detections whose top entity is the object's synset, over matched objects that count).
    """
    parser.eval()
    out = parser(features, grid_size)
    thr = parser.config.objectness_threshold
    pred = out.objectness.sigmoid() >= thr
    gold = targets.objectness >= 1.0
    tp = int((pred & gold).sum())
    res = {"cell_precision": tp / max(int(pred.sum()), 1),
           "cell_recall": tp / max(int(gold.sum()), 1)}
    mask = targets.entity >= 0
    if eval_entities is not None:
        mask &= torch.isin(targets.entity, eval_entities.to(targets.entity.device))
    if bool(mask.any()):
        scores = parser.link(out.embeddings[mask], entity_embeddings)
        res["link_top1"] = float((scores.argmax(-1) == targets.entity[mask]).float().mean())
    res["link_cells"] = float(mask.sum())
    if scenes is not None and entity_ids is not None:
        dets = parser.parse(out, entity_embeddings, entity_ids)
        wanted = ({entity_ids[i] for i in eval_entities.tolist()}
                  if eval_entities is not None else None)
        n_det = n_obj = n_tp = n_link = n_link_ok = 0
        for d, scene in zip(dets, scenes, strict=True):
            pairs = match_detections(d, scene, margin=margin)
            n_det += len(d)
            n_obj += len(scene["objects"])
            n_tp += len(pairs)
            for i, j in pairs:
                synset = scene["objects"][j]["synset_id"]
                if wanted is None or synset in wanted:
                    n_link += 1
                    n_link_ok += int(d[i].entity_id == synset)
        res.update(det_precision=n_tp / max(n_det, 1), det_recall=n_tp / max(n_obj, 1),
                   det_link_top1=n_link_ok / max(n_link, 1), det_linked=float(n_link))
    return res
