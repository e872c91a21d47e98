"""Opening a person's image file: one helper for every place that reads one (`polymodal generate` and the
pipeline's inputs, `polymodal data label`), so that every such place sizes, decodes and converts alike.

`open_image(source, mode="RGB"|"L")` -> (8-bit PIL image, the file's (width, height)):

- memory is bounded: a JPEG is decoded at 1/2, 1/4 or 1/8 scale (libjpeg's DCT scaling, `Image.draft`) while both
  sides stay >= ``min_side``; other formats have no reduced decode, so an image whose decoded size is over
  ``max_pixels`` (`MAX_PIXELS`, 50 megapixels: at most 200 MB at 4 bytes a pixel) is refused before any pixel is
  decoded, with one line naming it, its size and the limit (`ImageTooLarge`). PIL's own decompression-bomb limit
  (179 MP) still holds before a JPEG's draft. After decoding, the image is box-reduced by a whole factor while its
  short side stays >= ``min_side`` (`DECODE_SIDE`, 1024 px: models take 64-448 px), so later float copies are small;
- bit depths convert by value, not by clipping: 16-bit greys (``I;16``, and a file PIL opens as ``I`` that stores
  16 bits: older Pillows' 16-bit PNGs) map 0..65535 to 0..255 rounded (65535 -> 255, 32768 -> 128); a 32-bit grey
  (``I``: a 32-bit TIFF, an int32 array) goes by its values: 0..255 are 8-bit values, kept as they are, and any
  value over 255 makes it 16-bit (0..65535 as above); float greys (``F``, a float TIFF) are read as 0..1 (1.0 ->
  255); a 32-bit grey outside 0..65535 or a float one outside 0..1 (or NaN) is refused with one line naming the
  range found, as no scale can be guessed. Transparent parts (RGBA, LA, a palette's transparency) become white;
  palettes, 1-bit, CMYK, YCbCr, LAB and HSV go through PIL (every mode PIL has);
- a file that is not an image in a format PIL reads is one line naming it and the formats (`FORMATS`);
- the EXIF orientation is applied (a phone's portrait photo stands upright), and the size returned is the upright one.

`as_mode(img, mode)` is the same conversion for an image already in memory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

MAX_PIXELS = 50_000_000  # decoded pixels; 4 bytes a pixel at most (RGBA, 32-bit grey) -> 200 MB
DECODE_SIDE = 1024  # the short side a large image is reduced to (at least) before it is converted to floats
_SIXTEEN = ("I;16", "I;16B", "I;16L", "I;16N", "I")
# PIL converts LAB only to RGB and premultiplied grey (La) only to LA: these go by those
_INDIRECT = {"LAB": "RGB", "La": "LA"}
FORMATS = "PNG, JPEG, WebP, TIFF, BMP, GIF or another format PIL reads"  # the common ones; tests read each
# What a folder of images is made of (`data import`, `data label`, `embed`): the files of FORMATS' formats.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif")
_ALPHA = ("RGBA", "LA", "PA", "La", "RGBa")
# EXIF orientation -> the transpose that makes the image upright (as `PIL.ImageOps.exif_transpose`)
_UPRIGHT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
            5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
            8: Image.Transpose.ROTATE_90}


class ImageFileError(ValueError):
    """An image file that cannot be used; the message names it and says why."""


class ImageTooLarge(ImageFileError):
    """An image over the pixel limit (a server answers 413)."""


def _too_large(name: str, size: tuple[int, int] | None, limit: int) -> ImageTooLarge:
    shown = f"{size[0]}x{size[1]} pixels ({size[0] * size[1] / 1e6:.0f} MP)" if size else \
        f"over PIL's limit of {2 * (Image.MAX_IMAGE_PIXELS or 0)} pixels"
    return ImageTooLarge(f"{name} is {shown}, over the limit of {limit / 1e6:.0f} MP; give a smaller image")


def _size_in_header(fp: BinaryIO) -> tuple[int, int] | None:
    """The size PIL refuses to tell (its bomb check stops `Image.open` first): the format plugin that accepts the
    file reads its header only. None when no plugin says."""
    try:
        fp.seek(0)
        prefix = fp.read(16)
        for fmt in Image.ID:
            factory, accept = Image.OPEN[fmt]
            if accept is not None and accept(prefix) is True:
                fp.seek(0)
                return tuple(factory(fp, "").size)
    except Exception:  # noqa: BLE001 - only the message depends on it
        return None
    return None


def _bands(img: Image.Image):
    """(first row, pixel values as an array) of ``img``, a band of rows at a time (no full-size wide copy)."""
    w, h = img.size
    rows = max(1, (1 << 22) // max(w, 1))
    for y in range(0, h, rows):
        yield y, np.asarray(img.crop((0, y, w, min(h, y + rows))))


def _to_eight_bits(img: Image.Image, top: int = 65535) -> Image.Image:
    """16-bit grey (``top`` 65535) -> "L", round(v * 255 / 65535); 8-bit values in a 32-bit grey (``top`` 255)
    -> "L" as they are; float grey (0..1, checked) -> "L", round(v * 255)."""
    out = np.empty(img.size[::-1], np.uint8)
    for y, a in _bands(img):
        if img.mode == "F":
            out[y:y + len(a)] = np.rint(np.clip(a, 0, 1) * 255)
        else:
            out[y:y + len(a)] = (np.clip(a.astype(np.int64), 0, top) * 255 + top // 2) // top
    return Image.fromarray(out)


def _grey_top(img: Image.Image, name: str, stored: int | None = None) -> int:
    """The value that is white in an integer grey: 65535 for 16-bit ones (``I;16``, or ``stored`` 16: what the
    file holds, when known), else, for a 32-bit grey (``I``), 255 when its values are all 0..255 (8-bit values:
    read as 16-bit they came out nearly black) and 65535 when some are higher. Values outside 0..65535 have no
    known scale: refused, naming the range found."""
    if img.mode != "I":
        return 65535
    lo, hi = img.getextrema()
    if lo < 0 or hi > 65535:
        raise ImageFileError(f"{name} has 32-bit grey values from {lo} to {hi}; only 0 to 65535 (16-bit) "
                             "can be read: save it as an 8- or 16-bit image")
    return 255 if hi <= 255 and stored != 16 else 65535


def _stored_bits(img: Image.Image) -> int | None:
    """16 when a file PIL opens as ``I`` stores unsigned 16-bit values (its raw mode, e.g. "I;16B" of an older
    Pillow's 16-bit PNG); None when it does not say. Read before ``load``, which clears it."""
    args = img.tile[0][3] if img.mode == "I" and img.tile else None  # (codec, extents, offset, args)
    raw = args if isinstance(args, str) else args[0] if isinstance(args, tuple) and args else ""
    return 16 if raw in ("I;16", "I;16B", "I;16L", "I;16N") else None  # unsigned: a signed one goes by its values


def _check_range(img: Image.Image, name: str) -> None:
    """A float grey whose values have no known scale: refused, naming the range found."""
    if img.mode == "F":
        lo, hi, nan = np.inf, -np.inf, False
        for _, a in _bands(img):  # not getextrema: it skips NaN
            nan = nan or bool(np.isnan(a).any())
            lo, hi = min(lo, float(np.nanmin(a, initial=np.inf))), max(hi, float(np.nanmax(a, initial=-np.inf)))
        if nan or lo < -1e-3 or hi > 1 + 1e-3:  # a little past 0..1 is float rounding: clipped
            found = "pixels that are NaN" if nan else f"pixel values from {lo:.4g} to {hi:.4g}"
            raise ImageFileError(f"{name} has float {found}; float images are read as 0 to 1: scale it to 0..1 "
                                 "or save it as an 8- or 16-bit image")


def as_mode(img: Image.Image, mode: str = "RGB", *, min_side: int | None = None, name: str = "the image",
            stored: int | None = None) -> Image.Image:
    """``img`` as 8-bit ``mode`` ("RGB" or "L"), bit depth and transparency converted by value (module doc);
    ``min_side``: box-reduced by the largest whole factor that keeps the short side >= it. An image that cannot
    be converted by value (module doc) is an `ImageFileError` naming ``name``. ``stored``: the bits a grey's
    file holds, when known (`open_image` passes 16 for a 16-bit file PIL opens as ``I``)."""
    if img.mode in (*_SIXTEEN, "F"):
        _check_range(img, name)
        img = _to_eight_bits(img, 65535 if img.mode == "F" else _grey_top(img, name, stored))
    elif img.mode in _INDIRECT:
        img = img.convert(_INDIRECT[img.mode])
    elif img.mode in ("P", "1"):  # no reduce for these: expand first (P keeps its transparency as alpha)
        img = img.convert("RGBA" if img.mode == "P" and "transparency" in img.info else "RGB" if img.mode == "P"
                          else "L")
    factor = min(img.size) // min_side if min_side else 1
    if factor >= 2:
        img = img.reduce(factor)
    if img.mode in _ALPHA:
        back = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(back, img.convert("RGBA"))
    return img if img.mode == mode else img.convert(mode)


def open_image(source: str | os.PathLike | BinaryIO, *, mode: str = "RGB", min_side: int | None = DECODE_SIDE,
               max_pixels: int = MAX_PIXELS, name: str | None = None) -> tuple[Image.Image, tuple[int, int]]:
    """(8-bit ``mode`` image, upright (width, height) of the file) of a path or a binary file object; see the
    module doc. ``ImageTooLarge`` / ``ImageFileError`` (a ValueError) name ``name`` (default: "image file 'PATH'")."""
    name = name or (f"image file {str(source)!r}" if isinstance(source, (str, os.PathLike)) else "the image")
    if isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        if path.is_dir():
            raise ImageFileError(f"{name} is a folder, not an image file")
        if not path.is_file():
            raise ImageFileError(f"{name} not found")
        if path.stat().st_size == 0:  # PIL would say "cannot identify", the same as for a text file
            raise ImageFileError(f"{name} is empty (0 bytes)")
        fp = open(path, "rb")
    else:
        fp = source
    try:
        try:
            img = Image.open(fp)
        except Image.DecompressionBombError:
            raise _too_large(name, _size_in_header(fp), max_pixels) from None
        with img:
            full = img.size
            if min_side and img.format == "JPEG":
                img.draft(img.mode, (min_side, min_side))  # decode at 1/s scale, both sides still >= min_side
            if img.size[0] * img.size[1] > max_pixels:
                raise _too_large(name, full, max_pixels)
            stored = _stored_bits(img)
            img.load()  # everything decoded now: a truncated file fails here, not later
            orientation = img.getexif().get(0x0112, 1)  # after load: a PNG's getexif would decode it first
            out = as_mode(img, mode, min_side=min_side, name=name, stored=stored)
    except ImageFileError:
        raise
    except Image.DecompressionBombError:  # a frame of a GIF or ICO larger than its header said
        raise _too_large(name, None, max_pixels) from None
    except UnidentifiedImageError:  # its message is PIL's repr of the file object
        raise ImageFileError(f"{name} is not in an image format that can be read ({FORMATS})") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageFileError(f"cannot read {name} (corrupt or not an image: {e})") from None
    finally:
        if fp is not source:
            fp.close()
    if orientation in _UPRIGHT:
        out = out.transpose(_UPRIGHT[orientation])
        if orientation >= 5:
            full = full[::-1]
    return out, (int(full[0]), int(full[1]))
