import io

import numpy as np
import pytest
from PIL import Image

from kgmm.graph.errors import InputError
from kgmm.reasoning.inputs import (
    ImageInputError,
    QuestionInputError,
    check_question,
    load_image,
)


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_every_input_form_gives_the_same_rgb_image(tmp_path) -> None:
    rgb = Image.new("RGB", (8, 6), (10, 200, 30))
    path = tmp_path / "x.png"
    rgb.save(path)
    array = np.asarray(rgb)
    for form in (rgb, path, str(path), _png(rgb), array, array.astype(np.float32) / 255.0):
        out = load_image(form)
        assert out.mode == "RGB" and out.size == (8, 6)
        assert out.getpixel((3, 3)) == (10, 200, 30)


def test_modes_are_converted_with_the_right_values() -> None:
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))  # fully transparent → white
    assert load_image(rgba).getpixel((0, 0)) == (255, 255, 255)
    gray16 = Image.fromarray(np.full((4, 4), 65535, dtype=np.uint16))
    assert load_image(gray16).getpixel((0, 0)) == (255, 255, 255)
    assert load_image(np.full((4, 4), 32768, dtype=np.uint16)).getpixel((0, 0)) == (128,) * 3
    assert load_image(Image.new("L", (4, 4), 7)).getpixel((1, 1)) == (7, 7, 7)
    assert load_image(Image.new("1", (4, 4), 1)).getpixel((1, 1)) == (255, 255, 255)
    assert load_image(Image.new("CMYK", (4, 4), (0, 0, 0, 0))).getpixel((1, 1)) == (255,) * 3
    palette = Image.new("P", (4, 4), 0)
    palette.putpalette([0, 0, 255] * 256)
    assert load_image(palette).getpixel((0, 0)) == (0, 0, 255)


def test_bad_images_raise_typed_errors_naming_the_input(tmp_path) -> None:
    with pytest.raises(ImageInputError, match="no such image file") as info:
        load_image(tmp_path / "missing.png")
    assert info.value.source == str(tmp_path / "missing.png")
    assert isinstance(info.value, InputError)
    good = _png(Image.new("RGB", (64, 64), (1, 2, 3)))
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good[: len(good) // 2])
    with pytest.raises(ImageInputError, match=r"truncated\.png.*(truncated|corrupt)"):
        load_image(truncated)
    with pytest.raises(ImageInputError, match="not an image"):
        load_image(b"definitely not an image")
    with pytest.raises(ImageInputError, match="empty"):
        load_image(b"")
    with pytest.raises(ImageInputError, match="more than the 100 allowed"):
        load_image(good, max_pixels=100)
    with pytest.raises(ImageInputError, match="shape"):
        load_image(np.zeros((4, 4, 2), dtype=np.uint8))
    with pytest.raises(ImageInputError, match="NaN"):
        load_image(np.full((4, 4), np.nan, dtype=np.float32))
    with pytest.raises(ImageInputError, match="unsupported image type"):
        load_image(42)


def test_questions_are_checked() -> None:
    assert check_question("  What   is\tthis? ") == "What is this?"
    with pytest.raises(QuestionInputError, match="empty"):
        check_question("   ")
    with pytest.raises(QuestionInputError, match="10,000 characters"):
        check_question("x" * 10_000)
    with pytest.raises(QuestionInputError, match="string"):
        check_question(None)
