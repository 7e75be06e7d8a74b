r"""Visual entity linking: a scene parser from frozen image-grid features to KG entities.

:class:`SceneParser` reads the token grid of a frozen image encoder
(:class:`~kgmm.reasoning.encoders.ImageFeatures` ``tokens [B, P, D]``, ``P = h·w``, row-major)
and predicts for every cell :math:`c`

* an objectness logit :math:`o_c` — does the box centre of an object fall in this cell;
* a box :math:`\mathbf{b}_c = (\delta_x, \delta_y, \log w, \log h)` — the offset of the
  nearest object's centre from the cell centre (cell units) and its size (share of the image);
* an embedding :math:`\mathbf{z}_c \in \mathbb{R}^{E}`, L2-normalised, in the space of the
  text embeddings of KG nodes (``E = 384``, MiniLM), so that linking to ``K`` candidates is

.. math::
    s_{c,k} = e^{t}\, \mathbf{z}_c^\top \hat{\mathbf{e}}_k, \qquad
    \hat{\mathbf{e}}_k = \mathbf{e}_k / \lVert \mathbf{e}_k \rVert_2 .

The classifier weights are text embeddings of KG nodes (``CompiledKG.node_text`` through the
text encoder, :class:`EntityEmbeddingCache`), so the candidate set may change at test time:
synsets never seen in training are scored the same way (zero-shot linking).

Per cell, with :math:`\mathbf{x}_c` the frozen feature:

.. math::
    \mathbf{u}_c = W_u\,\mathrm{LN}(\mathbf{x}_c), \quad
    \mathbf{n}_c = \mathrm{GELU}\big(\mathrm{Conv}_{3\times3}(\mathbf{U})_c\big), \quad
    \mathbf{h}_c = [\mathbf{u}_c; \mathbf{n}_c; \mathbf{p}_c], \quad
    [o_c, \mathbf{b}_c] = \mathrm{MLP}_{det}(\mathbf{h}_c), \quad
    \mathbf{z}_c = \frac{\mathrm{MLP}_{emb}(\mathbf{h}_c)}
    {\lVert\mathrm{MLP}_{emb}(\mathbf{h}_c)\rVert}

where :math:`\mathbf{p}_c` is a learned position encoding (bilinearly resized when the grid
differs from ``config.grid_size``) and each MLP is Linear-GELU-Dropout-Linear (two heads:
sharing one MLP made objectness generalise worse).

**Two scales** (``config.detail_dim > 0``). With the encoder's finer map
:math:`\mathbf{d}` (``ImageFeatures.detail``, stride 16: 14×14 at 224 px) the cells are those
of the finer grid, and each reads its own detail feature plus the coarse token it lies in
(nearest upsampling :math:`\uparrow`, a feature-pyramid lateral connection):

.. math::
    \mathbf{u}_c = \big(\uparrow W_u\,\mathrm{LN}(\mathbf{x})\big)_c
    + W_d\,\mathrm{LN}_d(\mathbf{d}_c)

The coarse tokens carry what the object is, the fine map where it is: on the OpenMoji-scenes
benchmark the 14×14 grid finds 98 % of the test objects and links 94–97 % of them correctly
(over runs), against 81 % and 83 % from the 7×7 tokens alone (two neighbouring emoji often
share a 7×7 cell).

**Targets** (:func:`scene_parser_targets`, from the benchmark's scene graphs): the cell holding
an object's box centre is positive with the object's synset; box targets are given to that
cell and to every cell whose centre lies inside the object's box. **Loss**
(:func:`scene_parser_loss`):

.. math::
    \mathcal{L} = \mathrm{BCE}(o, y) + \lambda_{nce}\,\mathcal{L}_{InfoNCE}(\mathbf{z}_{pos},
    \mathbf{e}_{k}) + \lambda_{cand}\,\mathrm{CE}(s_{pos,\cdot}, k)
    + \lambda_{box}\,\lVert \mathbf{b} - \mathbf{b}^* \rVert_1

— the multi-positive symmetric InfoNCE of :class:`~kgmm.reasoning.alignment.InfoNCELoss`
between positive cells and their entities' text embeddings (cells of the same synset are
positives of each other, never negatives), plus cross-entropy over *all* training candidates.

**Parsing** (:meth:`SceneParser.parse`): a cell becomes a :class:`Detection` when
:math:`\sigma(o_c) \ge` ``objectness_threshold`` and no stronger cell in its
``(2r+1)²`` window suppresses it (``r = nms_radius``, 8 neighbours for ``r = 1``); a
stronger neighbour suppresses only when the two predicted boxes overlap with IoU
:math:`\ge` ``nms_iou`` (``nms_iou = 0``: plain local-maximum peak picking). At most
``max_objects`` per image.

**Resolution.** Encode the whole canvas (``crop_pct=1.0``, else the centre crop cuts off
objects). The final EfficientNet-Lite0 stage has stride 32, and its cells localise the small
emoji poorly: at 128 px (4×4) plain peak picking keeps at most ~60 % of the objects even
from a perfect objectness map (adjacent centre cells suppress each other), at 192 px (6×6)
~85 %, at 224 px (7×7, the benchmark's size) ~93 %; ``nms_iou > 0`` recovers adjacent
objects when the predicted boxes are good.

Checkpoints: ``save_pretrained(dir)`` writes ``kgmm_scene_parser.json`` (the config) and
``model.safetensors``; ``SceneParser.from_pretrained(dir)`` reads them.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
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
    "box_iou",
    "decode_boxes",
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
_MAX_LOG_SIZE = 0.5  # predicted sizes are clamped to exp(0.5) ≈ 1.65 image sides


# ------------------------------------------------------------------------------------------
# config and outputs


@dataclass
class SceneParserConfig:
    """Settings of a :class:`SceneParser`; ``to_json()`` / ``from_json()`` round-trip.

    Attributes:
        feature_dim: ``D`` of the image encoder's tokens (1280 for EfficientNet-Lite0).
        embed_dim: ``E``, the text embedding size (384 for MiniLM).
        cell_dim: size of the projected cell feature :math:`\\mathbf{u}_c`.
        context_dim: output channels of the 3×3 neighbourhood convolution.
        pos_dim: size of the learned position encoding.
        hidden: hidden width of the two 2-layer MLP heads (detection, embedding).
        grid_size: ``(h, w)`` the position encoding is learned at.
        temperature: initial :math:`\\tau`; the linking scale starts at :math:`1/\\tau`.
        learn_temperature: learn the scale (clamped to ``max_scale``).
        max_scale: upper bound on the linking scale.
        dropout: dropout inside the MLP heads.
        max_objects: most detections per image.
        objectness_threshold: least :math:`\\sigma(o_c)` of a detection.
        nms_radius: peak picking window radius ``r`` in cells (1 = 8 neighbours, 0 = off).
        nms_iou: a stronger neighbour suppresses a cell only if their boxes have at least
            this IoU (0 = always: plain local-maximum peak picking).
        top_k: entities listed per detection.
        detail_dim: channels of the encoder's finer map read as a second scale (0 = tokens
            only; see "Two scales" in the module docstring). ``grid_size`` is then the fine
            grid.
    """

    feature_dim: int = 1280
    embed_dim: int = 384
    cell_dim: int = 256
    context_dim: int = 128
    pos_dim: int = 32
    hidden: int = 512
    grid_size: tuple[int, int] = (7, 7)
    temperature: float = 0.07
    learn_temperature: bool = True
    max_scale: float = 100.0
    dropout: float = 0.1
    max_objects: int = 8
    objectness_threshold: float = 0.2
    nms_radius: int = 1
    nms_iou: float = 0.0
    top_k: int = 5
    detail_dim: int = 0

    def __post_init__(self) -> None:
        self.grid_size = (int(self.grid_size[0]), int(self.grid_size[1]))
        if min(self.grid_size) < 1 or self.max_objects < 1 or self.nms_radius < 0 \
                or self.detail_dim < 0:
            raise ValueError("grid_size and max_objects must be positive, nms_radius and "
                             "detail_dim >= 0")
        if not 0.0 <= self.objectness_threshold <= 1.0 or not 0.0 <= self.nms_iou <= 1.0:
            raise ValueError("objectness_threshold and nms_iou must be in [0, 1]")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["grid_size"] = list(self.grid_size)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SceneParserConfig:
        unknown = set(data) - {f.name for f in fields(cls)}
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
        boxes: ``[B, P, 4]`` raw :math:`(\\delta_x, \\delta_y, \\log w, \\log h)`
            (:func:`decode_boxes` turns them into centres and boxes).
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
        cell: row-major index of the cell it was read from.
        center: ``(x, y)`` in ``[0, 1]`` (shares of the image width and height).
        box: ``(x0, y0, x1, y1)`` in ``[0, 1]`` (clipped to the image).
        objectness: :math:`\\sigma(o_c)`.
        entities: ``[(entity_id, score), ...]``, best first; score = :math:`s_{c,k}`.
        embedding: the cell's :math:`\\mathbf{z}_c` ``[E]`` (not compared by ``==``).
    """

    cell: int
    center: tuple[float, float]
    box: tuple[float, float, float, float]
    objectness: float
    entities: list[tuple[str, float]] = field(default_factory=list)
    embedding: Tensor | None = field(default=None, compare=False, repr=False)

    @property
    def entity_id(self) -> str | None:
        """The top-1 entity, or None when no candidates were given."""
        return self.entities[0][0] if self.entities else None


# ------------------------------------------------------------------------------------------
# boxes and peak picking


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


def decode_boxes(raw: Tensor, grid_size: Sequence[int]) -> tuple[Tensor, Tensor]:
    r"""Raw box outputs ``[..., P, 4]`` -> centres ``[..., P, 2]`` and boxes ``[..., P, 4]``.

    .. math::
        c_x = \frac{\mathrm{col} + \tfrac12 + \delta_x}{w}, \quad
        c_y = \frac{\mathrm{row} + \tfrac12 + \delta_y}{h}, \quad
        \text{box} = (c_x \mp \tfrac{e^{\log w}}{2},\; c_y \mp \tfrac{e^{\log h}}{2})

    in image shares, centres and boxes clipped to ``[0, 1]``.
    """
    h, w = int(grid_size[0]), int(grid_size[1])
    cells = torch.arange(h * w, device=raw.device)
    col = (cells % w).to(raw.dtype)
    row = torch.div(cells, w, rounding_mode="floor").to(raw.dtype)
    cx = ((col + 0.5 + raw[..., 0]) / w).clamp(0.0, 1.0)
    cy = ((row + 0.5 + raw[..., 1]) / h).clamp(0.0, 1.0)
    size = raw[..., 2:].clamp(max=_MAX_LOG_SIZE).exp()
    boxes = torch.stack([cx - size[..., 0] / 2, cy - size[..., 1] / 2,
                         cx + size[..., 0] / 2, cy + size[..., 1] / 2], dim=-1).clamp(0.0, 1.0)
    return torch.stack([cx, cy], dim=-1), boxes


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """Element-wise IoU of ``[..., 4]`` boxes ``(x0, y0, x1, y1)`` (0 for empty unions)."""
    iw = (torch.minimum(a[..., 2], b[..., 2]) - torch.maximum(a[..., 0], b[..., 0])).clamp(min=0)
    ih = (torch.minimum(a[..., 3], b[..., 3]) - torch.maximum(a[..., 1], b[..., 1])).clamp(min=0)
    inter = iw * ih
    area = ((a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
            + (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1]))
    union = area - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))


def peak_mask(prob: Tensor, grid_size: Sequence[int], radius: int = 1,
              boxes: Tensor | None = None, iou: float = 0.0) -> Tensor:
    """``[B, P]`` bool: cells no stronger cell of their ``(2r+1)²`` window suppresses.

    Neighbour ``j`` is stronger than ``i`` when ``prob[j] > prob[i]``, or when equal and ``j``
    comes first in row-major order (so a plateau gives one peak). With ``boxes`` (``[B, P, 4]``)
    and ``iou > 0``, a stronger neighbour suppresses only if ``box_iou(i, j) >= iou``: two
    adjacent objects both survive, two responses to one object do not.
    """
    h, w = int(grid_size[0]), int(grid_size[1])
    b = prob.shape[0]
    if radius <= 0:
        return torch.ones(b, h * w, dtype=torch.bool, device=prob.device)
    k = 2 * radius + 1
    centre = k * k // 2  # window position of the cell itself; those before it come earlier
    p = prob.reshape(b, h, w)
    # every cell's window as a last dimension, row-major: [B, H, W, k·k]
    window = F.pad(p, (radius,) * 4, value=-math.inf).unfold(1, k, 1).unfold(2, k, 1)
    window = window.reshape(b, h, w, k * k)
    earlier = torch.arange(k * k, device=prob.device) < centre
    stronger = (window > p[..., None]) | ((window == p[..., None]) & earlier)
    stronger[..., centre] = False
    if boxes is not None and iou > 0.0:
        bx = boxes.reshape(b, h, w, 4)
        nb = F.pad(bx.permute(0, 3, 1, 2), (radius,) * 4).unfold(2, k, 1).unfold(3, k, 1)
        nb = nb.reshape(b, 4, h, w, k * k).permute(0, 2, 3, 4, 1)        # [B, H, W, k·k, 4]
        stronger &= box_iou(bx[..., None, :], nb) >= iou
    keep = ~stronger.any(dim=-1)
    return keep.reshape(b, h * w)


# ------------------------------------------------------------------------------------------
# the model


@contextlib.contextmanager
def _eval_mode(module: nn.Module) -> Iterator[None]:
    """Run the block with ``module`` in eval mode, then restore its mode."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


def _mlp(width: int, hidden: int, out: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Dropout(dropout),
                         nn.Linear(hidden, out))


class SceneParser(nn.Module):
    r"""Objectness, box and KG-entity embedding per grid cell (see the module docstring).

    Shapes: ``forward(tokens [B, P, D], grid_size=(h, w), detail=None)`` ->
    :class:`SceneParserOutput` (with ``detail [B, D_d, H, W]`` its grid is ``(H, W)``);
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
        self.detail_norm = nn.LayerNorm(c.detail_dim) if c.detail_dim else None
        self.detail_cell = nn.Linear(c.detail_dim, c.cell_dim) if c.detail_dim else None
        self.context = nn.Conv2d(c.cell_dim, c.context_dim, kernel_size=3, padding=1)
        self.position = nn.Parameter(torch.empty(c.pos_dim, *c.grid_size))
        width = c.cell_dim + c.context_dim + c.pos_dim
        self.detect = _mlp(width, c.hidden, 1 + _BOX_DIM, c.dropout)
        self.embed = _mlp(width, c.hidden, c.embed_dim, c.dropout)
        self.contrast = InfoNCELoss(c.temperature, max_scale=c.max_scale,
                                    learnable=c.learn_temperature, multi_positive="sum")
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.norm.reset_parameters()
        self.cell.reset_parameters()
        if self.detail_norm is not None and self.detail_cell is not None:
            self.detail_norm.reset_parameters()
            self.detail_cell.reset_parameters()
        self.context.reset_parameters()
        nn.init.normal_(self.position, std=0.02)
        for m in (*self.detect, *self.embed):
            if isinstance(m, nn.Linear):
                m.reset_parameters()
        self.contrast.reset_parameters()
        with torch.no_grad():  # objectness prior 0.1: few cells hold a centre
            self.detect[-1].bias[0].fill_(-math.log(9.0))

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

    def forward(self, tokens: Tensor, grid_size: Sequence[int] | None = None,
                detail: Tensor | None = None) -> SceneParserOutput:
        x, grid = self._cells(tokens, grid_size, detail)
        det = self.detect(x)
        z = F.normalize(self.embed(x), dim=-1)
        return SceneParserOutput(det[..., 0], det[..., 1:], z, grid)

    def _cells(self, tokens: Tensor, grid_size: Sequence[int] | None,
               detail: Tensor | None) -> tuple[Tensor, tuple[int, int]]:
        """The cell features :math:`\\mathbf{h}_c` ``[B, P, W]`` both heads read, and the
        grid."""
        if tokens.dim() != 3 or tokens.shape[-1] != self.config.feature_dim:
            raise ValueError(f"tokens must be [B, P, {self.config.feature_dim}], "
                             f"got {tuple(tokens.shape)}")
        b, p, _ = tokens.shape
        h, w = _grid(p, grid_size)
        dtype = self.cell.weight.dtype  # a reduced-precision copy reads its own dtype
        tokens = tokens.to(dtype)
        detail = None if detail is None else detail.to(dtype)
        u_map = self.cell(self.norm(tokens)).transpose(1, 2).reshape(b, -1, h, w)
        if self.detail_norm is not None and self.detail_cell is not None:
            d = self.config.detail_dim
            if detail is None or detail.dim() != 4 or detail.shape[:2] != (b, d):
                raise ValueError(f"this parser reads a detail map [{b}, {d}, H, W] besides the "
                                 f"tokens (ImageFeatures.detail), got "
                                 f"{None if detail is None else tuple(detail.shape)}")
            h, w = int(detail.shape[-2]), int(detail.shape[-1])
            fine = self.detail_cell(self.detail_norm(detail.flatten(2).transpose(1, 2)))
            u_map = F.interpolate(u_map, size=(h, w), mode="nearest") \
                + fine.transpose(1, 2).reshape(b, -1, h, w)
        u = u_map.flatten(2).transpose(1, 2)                               # [B, P, C]
        n = F.gelu(self.context(u_map))
        n = n.flatten(2).transpose(1, 2)                                   # [B, P, Cc]
        pos = self._position((h, w)).to(u.dtype).expand(b, -1, -1)
        return torch.cat([u, n, pos], dim=-1), (h, w)

    def link(self, z: Tensor, entity_embeddings: Tensor, bias: Tensor | None = None) -> Tensor:
        r"""Linking scores :math:`s_k = e^t\,\mathbf{z}^\top\hat{\mathbf{e}}_k + \beta_k`:
        ``z [..., E]``, ``entity_embeddings [K, E]``, optional ``bias [K]`` -> ``[..., K]``.

        ``bias`` is a per-candidate prior; a negative constant on the training synsets is the
        calibrated stacking of generalised zero-shot learning (seen classes otherwise win
        almost every novel object)."""
        e = F.normalize(entity_embeddings.to(device=z.device, dtype=z.dtype), dim=-1)
        scores = self.scale * (z @ e.T)
        return scores if bias is None else scores + bias.to(scores)

    @torch.no_grad()
    def parse(self, features: Any, entity_embeddings: Tensor | None = None,
              entity_ids: Sequence[str] | None = None, *, grid_size: Sequence[int] | None = None,
              threshold: float | None = None, max_objects: int | None = None,
              top_k: int | None = None, nms_iou: float | None = None,
              entity_bias: Tensor | None = None, detail: Tensor | None = None
              ) -> list[list[Detection]]:
        """Detections per image, each linked to its top candidate entities.

        Args:
            features: ``ImageFeatures`` (``tokens``, ``grid_size`` and ``detail`` are used),
                a ``[B, P, D]`` tensor, or a precomputed :class:`SceneParserOutput`.
            entity_embeddings: ``[K, E]`` text embeddings of the candidates (None: no linking).
            entity_ids: the ``K`` ids, in the same order (default ``"0"…"K-1"``).
            grid_size / threshold / max_objects / top_k / nms_iou: override the config.
            entity_bias: ``[K]`` added to the linking scores (see :meth:`link`).
            detail: the finer map for a tensor ``features`` (two-scale parsers).

        A parser whose weights are bfloat16 (:meth:`inference_copy`) runs its layers in
        bfloat16; boxes, peaks and linking are computed in float32 either way.

        Returns:
            For each image, its detections sorted by objectness (descending), each with its
            cell's embedding. From features (not a precomputed output) only the detected
            cells go through the embedding head and the linking.
        """
        cfg = self.config
        threshold = cfg.objectness_threshold if threshold is None else threshold
        max_objects = cfg.max_objects if max_objects is None else max_objects
        top_k = cfg.top_k if top_k is None else top_k
        nms_iou = cfg.nms_iou if nms_iou is None else nms_iou
        ids = list(entity_ids) if entity_ids is not None else None
        if entity_embeddings is not None and ids is not None \
                and len(ids) != entity_embeddings.shape[0]:
            raise ValueError(f"{len(ids)} entity ids for {entity_embeddings.shape[0]} embeddings")
        with _eval_mode(self):  # dropout off, whatever mode the caller left it in
            cell_features: Tensor | None = None
            if isinstance(features, SceneParserOutput):
                objectness, raw_boxes = features.objectness, features.boxes
                grid = features.grid_size
            else:
                tokens = getattr(features, "tokens", features)
                grid_size = grid_size or getattr(features, "grid_size", None)
                detail = getattr(features, "detail", None) if detail is None else detail
                cell_features, grid = self._cells(tokens, grid_size, detail)
                det = self.detect(cell_features).float()  # decoding is float32
                objectness, raw_boxes = det[..., 0], det[..., 1:]
            prob = objectness.sigmoid()
            centres, boxes = decode_boxes(raw_boxes, grid)
            keep = peak_mask(prob, grid, cfg.nms_radius, boxes, nms_iou) & (prob >= threshold)
            chosen = []  # (image, cell) of every detection, images in order, by objectness
            for i in range(prob.shape[0]):
                cells = keep[i].nonzero().flatten()
                cells = cells[prob[i, cells].argsort(descending=True, stable=True)][:max_objects]
                chosen += [(i, cell) for cell in cells.tolist()]
            rows = torch.tensor([i for i, _ in chosen], dtype=torch.long)
            cols = torch.tensor([c for _, c in chosen], dtype=torch.long)
            if cell_features is None:
                z = features.embeddings[rows, cols]
            else:
                z = F.normalize(self.embed(cell_features[rows, cols]).float(), dim=-1)
            top = None
            if entity_embeddings is not None and entity_embeddings.shape[0] > 0 and chosen:
                scores = self.link(z, entity_embeddings, entity_bias)
                top = scores.topk(min(top_k, scores.shape[-1]), dim=-1)
            results: list[list[Detection]] = [[] for _ in range(prob.shape[0])]
            for k, (i, cell) in enumerate(chosen):
                entities: list[tuple[str, float]] = []
                if top is not None:
                    vals, idx = top.values[k].tolist(), top.indices[k].tolist()
                    entities = [(ids[j] if ids is not None else str(j), float(v))
                                for v, j in zip(vals, idx, strict=True)]
                cx, cy = centres[i, cell].tolist()
                x0, y0, x1, y1 = boxes[i, cell].tolist()
                results[i].append(Detection(cell, (cx, cy), (x0, y0, x1, y1), float(prob[i, cell]),
                                            entities, z[k]))
            return results

    def inference_copy(self, dtype: torch.dtype) -> SceneParser:
        """This parser in eval mode with its weights in ``dtype`` (itself for float32), for
        :meth:`parse` where the hardware computes ``dtype`` natively; a copy, so training and
        checkpoints keep float32. Made on first use and again when the weights or ``dtype``
        change (as the image tower's inference network); not a submodule."""
        if dtype == torch.float32:
            return self.eval()
        import copy

        from .encoders.precision import weights_version

        key = (dtype, weights_version(self))
        cached = self.__dict__.get("_inference_copy")
        if cached is None or cached[0] != key:
            self.__dict__.pop("_inference_copy", None)  # not copied into the new copy
            cached = (key, copy.deepcopy(self).to(dtype).eval())
            self.__dict__["_inference_copy"] = cached
        return cached[1]

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


# ------------------------------------------------------------------------------------------
# targets from scene graphs


class SceneTargets(NamedTuple):
    """Training targets of one scene (``[P]``) or of a stack of scenes (``[N, P]``).

    Attributes:
        objectness: float; 1 at each cell holding an object's box centre (with ``sigma > 0``
            a Gaussian :math:`e^{-d^2/2\\sigma^2}` around it, ``d`` in cells, elsewhere).
        entity: long; index of the centred object's synset in the candidate index, ``-1`` in
            other cells and for synsets outside the index.
        boxes: float ``[..., 4]``: :math:`(\\delta_x, \\delta_y, \\log w, \\log h)` of the
            cell's object (see :func:`decode_boxes`), zeros where ``box_mask`` is False.
        box_mask: bool; cells with a box target — the centre cell of each object and every
            cell whose centre lies inside an object's box.
    """

    objectness: Tensor
    entity: Tensor
    boxes: Tensor
    box_mask: Tensor


def scene_parser_targets(scene: Mapping[str, Any], grid_size: Sequence[int],
                         canvas_size: Sequence[float] | None = None,
                         entity_index: Mapping[str, int] | None = None,
                         sigma: float = 0.0) -> SceneTargets:
    """Targets of one scene graph (an entry of the benchmark's ``scenes/*_scenes.json``:
    ``objects`` with ``box = [x0, y0, x1, y1]`` in pixels, ``x1``/``y1`` exclusive, and
    ``synset_id``; ``width`` / ``height``).

    The cell containing an object's box centre is positive with that object's synset. When
    two centres fall in one cell, it takes the object whose centre is nearer the cell centre
    (the other is lost to the grid). A cell covered by several boxes (boxes in the benchmark
    do not overlap, so only at box edges) regresses the object with the nearest centre; the
    centre cell always regresses its own object.

    Args:
        scene: the scene graph.
        grid_size: ``(h, w)`` of the feature grid.
        canvas_size: ``(width, height)`` in pixels (default: the scene's).
        entity_index: synset id -> candidate index (None: every ``entity`` is ``-1``).
        sigma: soft objectness targets (0 = hard 0/1).
    """
    h, w = int(grid_size[0]), int(grid_size[1])
    if canvas_size is None:
        canvas_size = (scene["width"], scene["height"])
    cw, ch = float(canvas_size[0]), float(canvas_size[1])
    p = h * w
    objectness = torch.zeros(h, w)
    entity = torch.full((p,), -1, dtype=torch.long)
    boxes = torch.zeros(p, _BOX_DIM)
    box_mask = torch.zeros(p, dtype=torch.bool)
    rank = [(2, math.inf)] * p  # (0 = centre cell / 1 = covered, squared distance)
    rows = torch.arange(h, dtype=torch.float32).view(h, 1)
    cols = torch.arange(w, dtype=torch.float32).view(1, w)
    for obj in scene["objects"]:
        x0, y0, x1, y1 = (float(v) for v in obj["box"])
        gx, gy = (x0 + x1) / 2 / cw * w, (y0 + y1) / 2 / ch * h       # centre, cell units
        row, col = min(max(int(gy), 0), h - 1), min(max(int(gx), 0), w - 1)
        size = (math.log(max(x1 - x0, 1.0) / cw), math.log(max(y1 - y0, 1.0) / ch))
        if sigma > 0:
            d2 = (rows - row) ** 2 + (cols - col) ** 2
            objectness = torch.maximum(objectness, torch.exp(-d2 / (2 * sigma * sigma)))
        objectness[row, col] = 1.0
        covered = [(r, c) for r in range(h) for c in range(w)
                   if x0 <= (c + 0.5) * cw / w < x1 and y0 <= (r + 0.5) * ch / h < y1]
        for r, c in [(row, col), *covered]:
            cell = r * w + c
            dx, dy = gx - (c + 0.5), gy - (r + 0.5)
            key = (0 if (r, c) == (row, col) else 1, dx * dx + dy * dy)
            if key < rank[cell]:
                rank[cell] = key
                boxes[cell] = torch.tensor([dx, dy, *size])
                box_mask[cell] = True
                if key[0] == 0 and entity_index is not None:
                    entity[cell] = entity_index.get(obj["synset_id"], -1)
    return SceneTargets(objectness.flatten(), entity, boxes, box_mask)


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
    r"""The training loss and its detached terms (``objectness``, ``box``, ``nce``,
    ``candidates``, ``loss``).

    * objectness: :math:`\frac{1}{BP}\sum_c \mathrm{BCE}(o_c, y_c)`;
    * box: mean :math:`|\mathbf{b}_c - \mathbf{b}^*_c|` over cells with a box target;
    * nce: :class:`InfoNCELoss` (multi-positive ``"sum"``) between the positive cells'
      :math:`\mathbf{z}_c` and :math:`\mathbf{e}_{k_c}` with targets :math:`k_c`;
    * candidates: :math:`\mathrm{CE}(e^t \mathbf{z}_c^\top \hat{\mathbf{E}}, k_c)` over all
      ``K`` rows of ``entity_embeddings``.
    """
    loss = F.binary_cross_entropy_with_logits(output.objectness, targets.objectness)
    terms = {"objectness": float(loss.detach())}
    if box_weight and bool(targets.box_mask.any()):
        raw, goal = output.boxes[targets.box_mask], targets.boxes[targets.box_mask]
        raw = torch.cat([raw[:, :2], raw[:, 2:].clamp(max=_MAX_LOG_SIZE)], dim=-1)
        box = F.l1_loss(raw, goal)
        loss = loss + box_weight * box
        terms["box"] = float(box.detach())
    linked = targets.entity >= 0
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
                       entity_embeddings: Tensor, epochs: int = 15, lr: float = 2e-3,
                       batch_size: int = 32, seed: int = 0, *, weight_decay: float = 0.01,
                       grid_size: Sequence[int] | None = None,
                       detail: Tensor | None = None,
                       callback: Callable[[dict[str, float]], None] | None = None,
                       **loss_weights: float) -> list[dict[str, float]]:
    """Train ``parser`` on cached frozen features: AdamW, one-cycle learning rate, shuffled
    mini-batches drawn from a generator seeded by ``seed``.

    Args:
        features: ``[N, P, D]`` grid tokens of ``N`` training images.
        targets: stacked :class:`SceneTargets` ``[N, P]`` (:func:`stack_targets`).
        entity_embeddings: ``[K, E]`` text embeddings of the training candidates
            (``targets.entity`` indexes its rows).
        epochs / lr / batch_size / seed / weight_decay: the optimisation.
        grid_size: ``(h, w)`` when ``P`` is not a square.
        detail: ``[N, D_d, H, W]`` finer maps for a two-scale parser; ``targets`` are then
            on the ``H×W`` grid.
        callback: called with each epoch's record.
        loss_weights: ``nce_weight``, ``candidate_weight``, ``box_weight``
            (:func:`scene_parser_loss`).

    Returns:
        One record per epoch: the mean of each loss term, ``epoch`` and ``seconds``.
    """
    n, p, _ = features.shape
    grid = _grid(p, grid_size)
    if detail is not None:
        p = int(detail.shape[-2]) * int(detail.shape[-1])
    if targets.objectness.shape != (n, p):
        raise ValueError(f"targets must be [{n}, {p}], got {tuple(targets.objectness.shape)}")
    if bool((targets.entity >= entity_embeddings.shape[0]).any()):
        raise ValueError("targets.entity indexes past entity_embeddings")
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    device = next(parser.parameters()).device
    entity_embeddings = entity_embeddings.to(device)
    optimizer = torch.optim.AdamW(parser.parameters(), lr=lr, weight_decay=weight_decay)
    steps = max(1, epochs * math.ceil(n / batch_size))
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps,
                                                   pct_start=0.15)
    history: list[dict[str, float]] = []
    parser.train()
    for epoch in range(epochs):
        start = time.perf_counter()
        sums: dict[str, float] = {}
        batches = 0
        for idx in torch.randperm(n, generator=generator).split(batch_size):
            batch = SceneTargets(*(v[idx].to(device) for v in targets))
            out = parser(features[idx].to(device), grid,
                         None if detail is None
                         else detail[idx].to(device=device, dtype=features.dtype))
            loss, terms = scene_parser_loss(parser, out, batch, entity_embeddings,
                                            **loss_weights)
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
        if callback is not None:
            callback(record)
    parser.eval()
    return history


# ------------------------------------------------------------------------------------------
# entity embeddings


class EntityEmbeddingCache:
    """Text embeddings of KG nodes, ``text_encoder.embed([kg.node_text(i)])``, cached by id.

    >>> cache = EntityEmbeddingCache(kg, build_text_encoder("minilm"))
    >>> E = cache(["wn:dog.n.01", "wn:cat.n.01"])     # [2, 384]
    """

    def __init__(self, kg: Any, text_encoder: Any) -> None:
        self.kg = kg
        self.text_encoder = text_encoder
        self._cache: dict[str, Tensor] = {}

    def text(self, entity_id: str) -> str:
        """``kg.node_text`` of the entity: ``label (aliases): description``."""
        return str(self.kg.node_text(self.kg.index_of(entity_id)))

    def __call__(self, entity_ids: Sequence[str]) -> Tensor:
        ids = list(entity_ids)
        missing = [e for e in dict.fromkeys(ids) if e not in self._cache]
        if missing:
            with torch.no_grad():
                vectors = self.text_encoder.embed([self.text(e) for e in missing])
            self._cache.update(zip(missing, vectors.detach().float().cpu(), strict=True))
        if not ids:
            return torch.zeros(0, int(getattr(self.text_encoder, "dim", 384)))
        return torch.stack([self._cache[e] for e in ids])

    def __len__(self) -> int:
        return len(self._cache)


# ------------------------------------------------------------------------------------------
# evaluation


def match_detections(detections: Sequence[Detection], scene: Mapping[str, Any],
                     canvas_size: Sequence[float] | None = None, margin: float = 0.0
                     ) -> list[tuple[int, int]]:
    """One-to-one matching of detections to the scene's objects.

    A detection may match an object whose box, grown by ``margin`` (a share of the image) on
    every side, contains the detection's centre. Detections are taken by objectness (highest
    first), each matching the free candidate object with the nearest box centre.
    Returns ``[(detection index, object index)]``.
    """
    if canvas_size is None:
        canvas_size = (scene["width"], scene["height"])
    cw, ch = float(canvas_size[0]), float(canvas_size[1])
    boxes = [(o["box"][0] / cw, o["box"][1] / ch, o["box"][2] / cw, o["box"][3] / ch)
             for o in scene["objects"]]
    used: set[int] = set()
    pairs: list[tuple[int, int]] = []
    for i in sorted(range(len(detections)), key=lambda i: -detections[i].objectness):
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
                          entity_embeddings: Tensor, *,
                          scenes: Sequence[Mapping[str, Any]] | None = None,
                          entity_ids: Sequence[str] | None = None,
                          eval_entities: Sequence[str] | None = None, margin: float = 0.0,
                          grid_size: Sequence[int] | None = None,
                          entity_bias: Tensor | None = None,
                          detail: Tensor | None = None,
                          batch_size: int = 256) -> dict[str, float]:
    """Accuracy of a parser on cached features.

    Cell level (from ``targets``): ``cell_precision`` / ``cell_recall`` of the cells peak
    picking keeps (threshold and suppression, as in :meth:`SceneParser.parse`) against the
    centre cells, and
    ``link_top1``: top-1 linking accuracy of the labelled centre cells over all ``K``
    candidates (only cells whose entity is in ``eval_entities`` when given, e.g. the novel
    synsets; ``link_cells`` counts them).

    Detection level (``scenes`` and ``entity_ids`` given): :meth:`SceneParser.parse`, then
    :func:`match_detections`: ``det_precision`` (matched / detections), ``det_recall``
    (matched / objects) and ``det_link_top1`` (matched detections whose top entity is the
    object's synset, over matched objects in ``eval_entities``; ``det_linked`` counts them).
    ``entity_bias`` is passed to :meth:`SceneParser.link`; ``detail`` ``[N, D_d, H, W]``
    feeds a two-scale parser.
    """
    parser.eval()
    chunks = [parser(features[i:i + batch_size], grid_size,
                     None if detail is None
                     else detail[i:i + batch_size].to(features.dtype))
              for i in range(0, features.shape[0], batch_size)]
    out = SceneParserOutput(torch.cat([c.objectness for c in chunks]),
                            torch.cat([c.boxes for c in chunks]),
                            torch.cat([c.embeddings for c in chunks]), chunks[0].grid_size)
    prob = out.objectness.sigmoid()
    cfg = parser.config
    _, boxes = decode_boxes(out.boxes, out.grid_size)
    pred = (prob >= cfg.objectness_threshold) & peak_mask(prob, out.grid_size, cfg.nms_radius,
                                                          boxes, cfg.nms_iou)
    gold = targets.objectness >= 1.0
    tp = int((pred & gold).sum())
    res = {"cell_precision": tp / max(int(pred.sum()), 1),
           "cell_recall": tp / max(int(gold.sum()), 1)}
    mask = targets.entity >= 0
    if eval_entities is not None:
        if entity_ids is None:
            raise ValueError("eval_entities needs entity_ids")
        position = {e: i for i, e in enumerate(entity_ids)}
        wanted = torch.tensor([position[e] for e in eval_entities], dtype=torch.long)
        mask &= torch.isin(targets.entity, wanted.to(targets.entity.device))
    if bool(mask.any()):
        scores = parser.link(out.embeddings[mask], entity_embeddings, entity_bias)
        res["link_top1"] = float((scores.argmax(-1) == targets.entity[mask]).float().mean())
    res["link_cells"] = float(mask.sum())
    if scenes is not None and entity_ids is not None:
        dets = parser.parse(out, entity_embeddings, entity_ids, entity_bias=entity_bias)
        keep = set(eval_entities) if eval_entities is not None else None
        n_det = n_obj = n_tp = n_link = n_ok = 0
        for found, scene in zip(dets, scenes, strict=True):
            pairs = match_detections(found, scene, margin=margin)
            n_det += len(found)
            n_obj += len(scene["objects"])
            n_tp += len(pairs)
            for i, j in pairs:
                synset = scene["objects"][j]["synset_id"]
                if keep is None or synset in keep:
                    n_link += 1
                    n_ok += int(found[i].entity_id == synset)
        res.update(det_precision=n_tp / max(n_det, 1), det_recall=n_tp / max(n_obj, 1),
                   det_link_top1=n_ok / max(n_link, 1), det_linked=float(n_link))
    return res
