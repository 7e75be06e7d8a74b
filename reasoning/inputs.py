"""Reading user inputs: images in any common form, and questions, with clear typed errors.

Accepted images: a path (``str``/``os.PathLike``), ``bytes``, a ``PIL.Image.Image`` or a
``numpy`` array (``H×W``, ``H×W×1``, ``H×W×3``, ``H×W×4``; ``uint8``, ``uint16`` or float in
[0, 1]). Every image comes back as an RGB ``PIL.Image`` — transparency is composited onto
white, 16-bit and float data are rescaled, palette/CMYK/… are converted — and images larger
than ``max_pixels`` are refused before they are decoded (a decompression bomb is an error,
not an out-of-memory).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from kgmm.graph.errors import InputError

#: Default caps; the HTTP service uses the same ones.
MAX_IMAGE_PIXELS = 40_000_000
MAX_IMAGE_BYTES = 32 * 1024 * 1024
MAX_QUESTION_CHARS = 1000


class ImageInputError(InputError):
    """An image that cannot be read: missing, truncated, not an image, or too large."""


class QuestionInputError(InputError):
    """A question that is empty or too long."""


def load_image(image: Any, *, max_pixels: int = MAX_IMAGE_PIXELS,
               max_bytes: int = MAX_IMAGE_BYTES, name: str | None = None) -> Any:
    """Return ``image`` as an RGB ``PIL.Image`` (see the module docstring)."""
    from PIL import Image

    source = name or _describe(image)
    if isinstance(image, Image.Image):
        return _to_rgb(image, source, max_pixels)
    if isinstance(image, str | os.PathLike):
        path = Path(image)
        if not path.is_file():
            raise ImageInputError("no such image file", source=path)
        if path.stat().st_size > max_bytes:
            raise ImageInputError(f"image file is larger than {max_bytes:,} bytes", source=path)
        data = path.read_bytes()
        return _decode(data, str(path), max_pixels)
    if isinstance(image, bytes | bytearray | memoryview):
        if len(image) > max_bytes:
            raise ImageInputError(f"image is larger than {max_bytes:,} bytes", source=source)
        return _decode(bytes(image), source, max_pixels)
    if type(image).__module__ == "numpy":
        return _from_array(image, source, max_pixels)
    raise ImageInputError(f"unsupported image type {type(image).__name__}; pass a path, bytes, "
                          "a PIL image or a numpy array", source=source)


def _describe(image: Any) -> str:
    if isinstance(image, str | os.PathLike):
        return str(image)
    return f"<{type(image).__name__}>"


def _decode(data: bytes, source: str, max_pixels: int) -> Any:
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise ImageInputError("empty image data", source=source)
    try:
        with Image.open(io.BytesIO(data)) as probe:
            width, height = probe.size
            if width * height > max_pixels:
                raise ImageInputError(f"image has {width}×{height} pixels, more than the "
                                      f"{max_pixels:,} allowed", source=source)
            probe.load()
            return _to_rgb(probe, source, max_pixels)
    except ImageInputError:
        raise
    except UnidentifiedImageError:
        raise ImageInputError("not an image file Pillow can read", source=source) from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageInputError(f"truncated or corrupt image ({exc})", source=source) from None


def _to_rgb(image: Any, source: str, max_pixels: int) -> Any:
    from PIL import Image, ImageOps

    width, height = image.size
    if width * height > max_pixels:
        raise ImageInputError(f"image has {width}×{height} pixels, more than the "
                              f"{max_pixels:,} allowed", source=source)
    if width == 0 or height == 0:
        raise ImageInputError("image has no pixels", source=source)
    image = ImageOps.exif_transpose(image)
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        import numpy as np

        array = np.asarray(image, dtype=np.float64)
        scale = 255.0 / 65535.0 if (mode.startswith("I;16") or array.max() > 255) else 1.0
        image = Image.fromarray(np.clip(array * scale, 0, 255).astype("uint8"), "L")
    elif mode == "F":
        import numpy as np

        array = np.asarray(image, dtype=np.float64)
        scale = 255.0 if array.max() <= 1.0 else 1.0
        image = Image.fromarray(np.clip(array * scale, 0, 255).astype("uint8"), "L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _from_array(array: Any, source: str, max_pixels: int) -> Any:
    import numpy as np
    from PIL import Image

    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ImageInputError(f"array of shape {tuple(array.shape)} is not an image (H×W, "
                              "H×W×3 or H×W×4)", source=source)
    if array.shape[0] * array.shape[1] > max_pixels:
        raise ImageInputError(f"image has {array.shape[1]}×{array.shape[0]} pixels, more than "
                              f"the {max_pixels:,} allowed", source=source)
    if array.dtype == np.uint8:
        data = array
    elif array.dtype == np.uint16:
        data = (array.astype(np.float64) * (255.0 / 65535.0)).round().astype(np.uint8)
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ImageInputError("float image has NaN or infinite values", source=source)
        data = (np.clip(array, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    else:
        raise ImageInputError(f"unsupported array dtype {array.dtype}", source=source)
    mode = "L" if data.ndim == 2 else ("RGB" if data.shape[2] == 3 else "RGBA")
    return _to_rgb(Image.fromarray(np.ascontiguousarray(data), mode), source, max_pixels)


def check_question(question: Any, *, max_chars: int = MAX_QUESTION_CHARS) -> str:
    """Return the question stripped; raise :class:`QuestionInputError` if empty or too long."""
    if not isinstance(question, str):
        raise QuestionInputError(f"the question must be a string, got {type(question).__name__}",
                                 field="question")
    text = " ".join(question.split())
    if not text:
        raise QuestionInputError("the question is empty", field="question")
    if len(text) > max_chars:
        raise QuestionInputError(f"the question has {len(text):,} characters; at most "
                                 f"{max_chars:,} are accepted", field="question")
    return text
