"""Scenes: 1–6 OpenMoji objects on a coloured, noisy canvas, with their scene graph.

A scene is sampled from its own random generator, seeded by ``(seed, split, index)``
(:func:`scene_rng`), so any scene can be made again alone — that is what makes builds
reproducible and resumable. Sampling gives everything the picture needs (objects, their
size, rotation and place, the background colour, the noise); :func:`render_scene` draws it.

* **Objects** are sprites from :mod:`.assets`, scaled so their longer side is a share of the
  canvas (larger when there are fewer objects), rotated by up to ±15°, and placed at random
  so that no two boxes overlap (a 2-pixel gap at least). Two objects whose synsets are the
  same or one a kind of the other (``dog`` and ``poodle``) are never in one scene, so
  counting and naming stay well defined; the same object may appear several times.
* **Boxes** are ``[x0, y0, x1, y1]`` in pixels, ``x1``/``y1`` exclusive: the opaque pixels
  of the rotated sprite.
* **Relations** between two objects ``a`` and ``b`` (``[a, relation, b]``, indices into
  ``objects``): ``left_of`` when ``a``'s box ends at or before ``b``'s begins
  (``a.x1 <= b.x0``), ``right_of`` the converse, ``above`` when ``a.y1 <= b.y0``, ``below``
  the converse, and ``next_to`` when the gap between the boxes — the larger of the horizontal
  and vertical gaps — is at most :data:`NEXT_TO` of the canvas size.
* **Background**: a light colour (random hue, saturation 0.05–0.35, value 0.75–1) and
  Gaussian noise of a random strength (σ 0–10 grey levels) over the whole picture, cut from
  a fixed noise tile at a random offset.
"""

from __future__ import annotations

import colorsys
import math
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image

__all__ = [
    "MAX_ANGLE",
    "NEXT_TO",
    "RELATIONS",
    "SceneConfig",
    "SceneObjectType",
    "box_gap",
    "conflicting_pairs",
    "relations_of",
    "render_scene",
    "sample_scene",
    "scene_rng",
    "transform_sprite",
]

#: The spatial relations of the scene graph, and their converses.
RELATIONS: dict[str, str] = {
    "left_of": "right_of", "right_of": "left_of", "above": "below", "below": "above",
    "next_to": "next_to",
}
#: Two boxes are ``next_to`` when their gap is at most this share of the canvas size.
NEXT_TO = 0.1
#: Largest rotation, degrees.
MAX_ANGLE = 15.0
_GAP = 2
_PLACE_TRIES = 40
_NOISE_PAD = 128
_NOISE_SEED = 20240229


@dataclass(frozen=True)
class SceneObjectType:
    """An object the scenes can show: an emoji and the synset it is linked to."""

    codepoints: str
    emoji: str
    synset_id: str
    name: str


@dataclass
class SceneConfig:
    """What the sampler draws from.

    Attributes:
        size: canvas side, pixels.
        min_objects / max_objects: objects per scene (uniform).
        repeat: probability that a further object repeats a type already in the scene.
        conflicts: pairs of synset ids that may not share a scene (same or ancestor).
    """

    size: int = 224
    min_objects: int = 1
    max_objects: int = 6
    repeat: float = 0.25
    conflicts: frozenset[tuple[str, str]] = field(default_factory=frozenset)

    def compatible(self, a: str, b: str) -> bool:
        return a != b and (a, b) not in self.conflicts and (b, a) not in self.conflicts


def scene_rng(seed: int, split: str, index: int) -> random.Random:
    """The generator of one scene: a function of the build seed, the split and the index."""
    return random.Random(f"kgmm-openmoji/{seed}/{split}/{index}")


def transform_sprite(sprite: Image.Image, target: int, angle: float) -> Image.Image:
    """Scale a sprite so its longer side is ``target`` pixels, rotate it by ``angle``
    degrees (counter-clockwise), and crop it to its opaque pixels — one bilinear affine
    resampling of the base sprite (scaling down by at most ~3, so no visible aliasing)."""
    scale = target / max(sprite.width, sprite.height)
    width, height = sprite.width * scale, sprite.height * scale
    cos, sin = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    out_w = max(1, math.ceil(abs(width * cos) + abs(height * sin)))
    out_h = max(1, math.ceil(abs(width * sin) + abs(height * cos)))
    # output pixel (x, y) → input pixel: undo the rotation about the centres, then the scale
    a, b = cos / scale, -sin / scale
    d, e = sin / scale, cos / scale
    cx, cy = out_w / 2, out_h / 2
    c = sprite.width / 2 - a * cx - b * cy
    f = sprite.height / 2 - d * cx - e * cy
    image = sprite.transform((out_w, out_h), Image.Transform.AFFINE, (a, b, c, d, e, f),
                             resample=Image.Resampling.BILINEAR)
    box = image.getchannel("A").getbbox()
    return image.crop(box) if box else image


def _size_range(count: int) -> tuple[float, float]:
    if count <= 2:
        return 0.26, 0.42
    if count <= 4:
        return 0.2, 0.32
    return 0.16, 0.26


def sample_scene(
    rng: random.Random,
    config: SceneConfig,
    pool: Sequence[SceneObjectType],
    sprites: Mapping[str, Image.Image],
    *,
    required: Sequence[Sequence[SceneObjectType]] = (),
    fill: Sequence[SceneObjectType] | None = None,
    second: float = 0.0,
    images: list[Image.Image] | None = None,
) -> dict[str, Any]:
    """Sample one scene: its objects (with render parameters and boxes), background,
    noise and relations, as a JSON-ready dict (without ids and file names).

    Args:
        rng: the scene's generator (:func:`scene_rng`).
        config: sizes and constraints.
        pool: object types to draw from.
        sprites: the base sprite of every type, by codepoints.
        required: groups of types; one type of one group is placed first (novel-object or
            held-out-category scenes), and with probability ``second`` another of the same
            group next.
        fill: types for the other objects (default ``pool``).
        images: when given, receives each placed object's transformed sprite, so that
            :func:`render_scene` need not transform it again.
    """
    size = config.size
    count = rng.randint(config.min_objects, config.max_objects)
    fill = pool if fill is None else fill
    chosen: list[SceneObjectType] = []
    if required:
        group = required[rng.randrange(len(required))]
        chosen.append(group[rng.randrange(len(group))])
        if count > 1 and len(group) > 1 and rng.random() < second:
            for _ in range(10):
                candidate = group[rng.randrange(len(group))]
                if config.compatible(candidate.synset_id, chosen[0].synset_id):
                    chosen.append(candidate)
                    break
    while len(chosen) < count:
        kinds = list(dict.fromkeys(chosen))
        if kinds and rng.random() < config.repeat:
            chosen.append(kinds[rng.randrange(len(kinds))])
            continue
        for _ in range(20):
            candidate = fill[rng.randrange(len(fill))]
            if all(config.compatible(candidate.synset_id, k.synset_id) for k in kinds):
                chosen.append(candidate)
                break
        else:
            break
    low, high = _size_range(count)
    objects: list[dict[str, Any]] = []
    boxes: list[tuple[int, int, int, int]] = []
    for kind in chosen:
        target = max(8, round(size * rng.uniform(low, high)))
        angle = round(rng.uniform(-MAX_ANGLE, MAX_ANGLE), 1)
        image = transform_sprite(sprites[kind.codepoints], target, angle)
        width, height = image.size
        if width > size or height > size:
            continue
        for _ in range(_PLACE_TRIES):
            x, y = rng.randint(0, size - width), rng.randint(0, size - height)
            box = (x, y, x + width, y + height)
            if all(_apart(box, other) for other in boxes):
                break
        else:
            continue  # no room left: the object is dropped
        boxes.append(box)
        if images is not None:
            images.append(image)
        objects.append({
            "codepoints": kind.codepoints, "emoji": kind.emoji, "synset_id": kind.synset_id,
            "name": kind.name, "box": list(box), "target": target, "angle": angle,
        })
    for k, obj in enumerate(objects):
        obj["id"] = k
    hue, sat, val = rng.random(), rng.uniform(0.05, 0.35), rng.uniform(0.75, 1.0)
    background = [round(c * 255) for c in colorsys.hsv_to_rgb(hue, sat, val)]
    noise = round(rng.uniform(0.0, 10.0), 1)
    offset = [rng.randrange(_NOISE_PAD), rng.randrange(_NOISE_PAD)]
    return {
        "width": size, "height": size, "background": background, "noise": noise,
        "noise_offset": offset, "objects": objects,
        "relations": relations_of([o["box"] for o in objects], size),
    }


def _apart(a: Sequence[int], b: Sequence[int]) -> bool:
    """True when two boxes are at least :data:`_GAP` pixels apart on some axis."""
    return (a[2] + _GAP <= b[0] or b[2] + _GAP <= a[0]
            or a[3] + _GAP <= b[1] or b[3] + _GAP <= a[1])


def box_gap(a: Sequence[int], b: Sequence[int]) -> int:
    """The gap between two boxes: the larger of the horizontal and vertical gaps (0 when
    they overlap on both axes)."""
    return max(b[0] - a[2], a[0] - b[2], b[1] - a[3], a[1] - b[3], 0)


def relations_of(boxes: Sequence[Sequence[int]], size: int) -> list[list[Any]]:
    """The relations between every ordered pair of boxes (see the module docstring)."""
    out: list[list[Any]] = []
    near = NEXT_TO * size
    for i, a in enumerate(boxes):
        for j, b in enumerate(boxes):
            if i == j:
                continue
            if a[2] <= b[0]:
                out.append([i, "left_of", j])
            if b[2] <= a[0]:
                out.append([i, "right_of", j])
            if a[3] <= b[1]:
                out.append([i, "above", j])
            if b[3] <= a[1]:
                out.append([i, "below", j])
            if box_gap(a, b) <= near:
                out.append([i, "next_to", j])
    return out


@lru_cache(maxsize=8)
def _noise_tile(size: int) -> np.ndarray:
    side = size + _NOISE_PAD
    rng = np.random.default_rng(_NOISE_SEED)
    return rng.standard_normal((side, side, 3), dtype=np.float32)


def render_scene(scene: Mapping[str, Any], sprites: Mapping[str, Image.Image],
                 images: Sequence[Image.Image] | None = None) -> Image.Image:
    """Draw a sampled scene as an RGB image (the same scene always gives the same pixels);
    ``images`` are the transformed sprites :func:`sample_scene` collected, if at hand."""
    size = int(scene["width"])
    canvas = Image.new("RGB", (size, size), tuple(scene["background"]))
    for k, obj in enumerate(scene["objects"]):
        image = (images[k] if images is not None else
                 transform_sprite(sprites[obj["codepoints"]], obj["target"], obj["angle"]))
        canvas.paste(image, (obj["box"][0], obj["box"][1]), image)
    sigma = float(scene["noise"])
    if sigma > 0:
        ox, oy = scene["noise_offset"]
        pixels = np.asarray(canvas, dtype=np.float32)
        pixels += sigma * _noise_tile(size)[oy:oy + size, ox:ox + size]
        np.clip(pixels, 0, 255, out=pixels)
        canvas = Image.fromarray(pixels.astype(np.uint8))
    return canvas


def conflicting_pairs(types: Iterable[SceneObjectType],
                      ancestors: Callable[[str], Iterable[str]]) -> frozenset[tuple[str, str]]:
    """Pairs of synset ids where one is a kind of the other (``ancestors(synset)`` gives every
    synset above one), which :class:`SceneConfig` keeps out of a single scene."""
    synsets = sorted({t.synset_id for t in types})
    present = set(synsets)
    pairs = set()
    for lower in synsets:
        for upper in set(ancestors(lower)) & present:
            if upper != lower:
                pairs.add((min(lower, upper), max(lower, upper)))
    return frozenset(pairs)
