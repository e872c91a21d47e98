"""Pixel modes of an image file read as RGB or grey (`data.images.open_image` / `as_mode`): each converts by value
or is refused with one line. A float TIFF (mode "F") of 0..1 came out black (0..1 of 255) and one of 0..1000 white,
with no word; a 32-bit grey over 65535 saturated; LAB had no grey conversion, La none at all."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from polymodal.data.images import ImageFileError, as_mode, open_image


def save(tmp_path, arr: np.ndarray, mode: str | None = None, suffix: str = "tif"):
    path = tmp_path / f"img.{suffix}"
    Image.fromarray(arr, mode=mode).save(path)
    return path


def test_a_float_tiff_of_0_to_1_is_scaled_to_255(tmp_path):
    values = np.array([[0.0, 0.25, 0.5, 1.0, 1.0004]], np.float32)  # the last: float rounding past 1
    path = save(tmp_path, values, "F")
    assert Image.open(path).mode == "F"
    rgb = np.asarray(open_image(path)[0])
    assert rgb[..., 0].tolist() == [[0, 64, 128, 255, 255]]  # round(v * 255), written by hand
    assert bool((rgb == rgb[..., :1]).all())  # grey in all three channels
    assert np.asarray(open_image(path, mode="L")[0]).tolist() == [[0, 64, 128, 255, 255]]


@pytest.mark.parametrize("values, found", [
    ([[0.0, 500.0, 1000.0]], "has float pixel values from 0 to 1000"),
    ([[-0.5, 0.0, 0.5]], "has float pixel values from -0.5 to 0.5"),
    ([[0.0, np.nan, 0.5]], "has float pixels that are NaN"),
])
def test_a_float_tiff_out_of_0_to_1_is_refused_naming_the_range(tmp_path, values, found):
    path = save(tmp_path, np.array(values, np.float32), "F")
    with pytest.raises(ImageFileError) as e:
        open_image(path)
    assert str(e.value) == (f"image file {str(path)!r} {found}; float images are read as 0 to 1: scale it to 0..1 "
                            "or save it as an 8- or 16-bit image")


def test_sixteen_and_thirty_two_bit_greys(tmp_path):
    deep = np.array([[0, 257, 32768, 65535]], np.uint16)
    path = save(tmp_path, deep, suffix="png")
    assert Image.open(path).mode == "I;16"
    assert np.asarray(open_image(path)[0])[..., 1].tolist() == [[0, 1, 128, 255]]  # v * 255 / 65535, rounded
    wide = Image.fromarray(np.array([[0, 65535]], np.int32), mode="I")
    assert np.asarray(as_mode(wide, "L")).tolist() == [[0, 255]]
    over = Image.fromarray(np.array([[0, 70000]], np.int32), mode="I")
    with pytest.raises(ImageFileError, match=r"^the image has 32-bit grey values from 0 to 70000; only 0 to 65535"):
        as_mode(over, "RGB")


def test_a_32_bit_grey_of_8_bit_values_is_read_as_8_bit(tmp_path):
    """A 32-bit grey TIFF (mode "I", how Pillow saves an int32 array) of 0..255 was read as 16-bit: 255 -> 1."""
    path = save(tmp_path, np.array([[0, 1, 128, 255]], np.int32))
    assert Image.open(path).mode == "I"
    assert np.asarray(open_image(path, mode="L")[0]).tolist() == [[0, 1, 128, 255]]
    assert np.asarray(open_image(path)[0])[..., 2].tolist() == [[0, 1, 128, 255]]
    assert np.asarray(as_mode(Image.fromarray(np.array([[7, 200]], np.int32)), "L")).tolist() == [[7, 200]]
    # one value over 255: its scale is 16-bit
    path = save(tmp_path, np.array([[0, 255, 257, 65535]], np.int32))
    assert np.asarray(open_image(path, mode="L")[0]).tolist() == [[0, 1, 1, 255]]
    with pytest.raises(ImageFileError, match=r"has 32-bit grey values from -1 to 255; only 0 to 65535"):
        open_image(save(tmp_path, np.array([[-1, 255]], np.int32)))


def test_a_16_bit_png_of_low_values_stays_16_bit(tmp_path, monkeypatch):
    """A real 16-bit PNG is 16-bit whatever its values (0..255 of 65535 is nearly black), opened as "I;16" (Pillow
    13) or as "I" (older Pillows: the raw mode says 16 bits), and its full range maps to 0..255."""
    from PIL import PngImagePlugin

    low, full = tmp_path / "low.png", tmp_path / "full.png"
    Image.fromarray(np.array([[0, 128, 255]], np.uint16)).save(low)
    Image.fromarray(np.array([[0, 257, 32768, 65535]], np.uint16)).save(full)
    assert Image.open(low).mode == "I;16"
    assert np.asarray(open_image(low, mode="L")[0]).tolist() == [[0, 0, 1]]
    monkeypatch.setitem(PngImagePlugin._MODES, (16, 0), ("I", "I;16B"))  # an older Pillow's 16-bit grey PNG
    assert Image.open(low).mode == "I"
    assert np.asarray(open_image(low, mode="L")[0]).tolist() == [[0, 0, 1]]
    assert np.asarray(open_image(full, mode="L")[0]).tolist() == [[0, 1, 128, 255]]


def test_the_other_modes_keep_converting_as_before(tmp_path):
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (6, 5, 3), dtype=np.uint8))
    for mode in ("1", "P", "CMYK", "L", "YCbCr", "HSV"):  # no transparency: what PIL's own RGB conversion gives
        img = rgb.convert(mode)
        assert np.array_equal(np.asarray(as_mode(img, "RGB")), np.asarray(img.convert("RGB"))), mode
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0] = (10, 20, 30, 255)  # top opaque, bottom transparent: composited on white, not alpha dropped
    out = np.asarray(as_mode(Image.fromarray(rgba), "RGB"))
    assert out[0, 0].tolist() == [10, 20, 30] and out[1, 1].tolist() == [255, 255, 255]
    la = Image.fromarray(np.array([[[40, 255], [40, 0]]], np.uint8), mode="LA")
    assert np.asarray(as_mode(la, "L")).tolist() == [[40, 255]]
    pal = Image.new("P", (2, 1))
    pal.putpalette([0, 0, 0, 200, 100, 50])
    pal.putpixel((1, 0), 1)
    pal.info["transparency"] = 0  # index 0 is see-through
    assert np.asarray(as_mode(pal, "RGB")).tolist() == [[[255, 255, 255], [200, 100, 50]]]
    lab = Image.new("LAB", (1, 1), (255, 128, 128))  # L* = 100: white (PIL has no LAB -> L of its own)
    assert np.asarray(as_mode(lab, "L")).tolist()[0][0] >= 254
    premultiplied = Image.new("La", (1, 1), (20, 128))  # grey 40 at half alpha, stored premultiplied
    assert np.asarray(as_mode(premultiplied, "L")).tolist()[0][0] in (147, 148)  # 40/2 + 255/2 on white
