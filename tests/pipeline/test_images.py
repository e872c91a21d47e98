"""Image files from a person (data.images.open_image, used by the pipeline's inputs and `data label`): large ones
refused before decoding or decoded at reduced size with memory bounded, 16-bit greys by value, EXIF orientation,
transparency (issue 16: a 20000 x 20000 PNG was a DecompressionBombError traceback, a 13000 x 13000 one took 5.3 GB,
a 16-bit grey PNG came out white)."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image, ImageOps

from polymodal.cli import main
from polymodal.data.images import MAX_PIXELS, ImageTooLarge, as_mode, open_image
from polymodal.data.labelers import ImageRefused, load_image
from polymodal.pipeline.inputs import PipelineError, to_chw


def grey_png(path, width: int, height: int, value: int = 128) -> None:
    """An 8-bit grey PNG of one value, written row band by row band (never the whole image in memory)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\0" + bytes([value]) * width  # filter byte 0, then the pixels
    z, parts, band = zlib.compressobj(1), [], max(1, (1 << 22) // len(row))
    for y in range(0, height, band):
        parts.append(z.compress(row * min(band, height - y)))
    parts.append(z.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)


@pytest.fixture(scope="module")
def huge(tmp_path_factory):
    path = tmp_path_factory.mktemp("huge") / "huge.png"
    grey_png(path, 20000, 20000)  # 400 MP, about 2 MB on disk
    return path


def test_a_huge_png_is_one_line_on_the_command_line(bundle, huge, tmp_path, capsys):
    rc = main(["generate", "--model", str(bundle), "--from", f"rgb={huge}", "--to", "depth",
               "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and err == (f"polymodal generate: rgb@pt: image file '{huge}' is 20000x20000 pixels (400 MP), "
                               "over the limit of 50 MP; give a smaller image\n")
    assert not (tmp_path / "o").exists()
    with pytest.raises(ImageRefused, match=r"huge.png: the image is 20000x20000 pixels \(400 MP\), over the limit"):
        load_image(huge, 64)  # `polymodal data label` reads through the same helper


def test_over_the_limit_is_refused_before_any_pixel_is_decoded(tmp_path, monkeypatch):
    path = tmp_path / "wide.png"
    grey_png(path, 8000, 7000)  # 56 MP: PIL opens it (under its bomb limit), ours refuses it
    assert 8000 * 7000 > MAX_PIXELS
    monkeypatch.setattr(Image.Image, "load", lambda self: pytest.fail("decoded an image over the limit"))
    with pytest.raises(ImageTooLarge, match=r"^image file '.*wide.png' is 8000x7000 pixels \(56 MP\), over the limit "
                                            r"of 50 MP; give a smaller image$"):
        open_image(path)
    with pytest.raises(PipelineError, match=r"^rgb@pt: image file '.*wide.png' is 8000x7000 pixels"):
        to_chw(path, "rgb@pt")


MEASURE = """
import resource, sys, torch
from polymodal.pipeline.inputs import to_chw
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
x = to_chw(sys.argv[1], "rgb")
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before, *x.shape)
"""


def test_a_large_image_is_read_with_memory_bounded(tmp_path):
    """16 MP grey: the file decodes once (16 MB), then is box-reduced before any RGB or float copy. Converting it
    whole, as before, grew the peak by 484 MB (measured): RGB, an array and two float copies of every pixel."""
    path = tmp_path / "large.png"
    grey_png(path, 4000, 4000, value=200)
    out = subprocess.run([sys.executable, "-c", MEASURE, str(path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    grown_kb, c, h, w = map(int, out.stdout.split())
    assert (c, h, w) == (3, 1334, 1334)  # reduced by 3 (PIL rounds up): the short side stays >= 1024
    assert grown_kb < 100_000, f"peak memory grew by {grown_kb} KB for a 16 MP image"  # measured: about 45 MB


def test_a_jpeg_is_decoded_at_reduced_scale(tmp_path):
    path = tmp_path / "photo.jpg"
    Image.fromarray(np.full((2400, 3000, 3), (30, 120, 200), np.uint8)).save(path, quality=95)
    img, size = open_image(path)
    assert size == (3000, 2400) and img.size == (1500, 1200) and img.mode == "RGB"  # libjpeg's 1/2 scale
    assert np.abs(np.asarray(img, dtype=int) - (30, 120, 200)).max() <= 3


def test_sixteen_bit_grey_converts_by_value(tmp_path):
    values = np.array([[0, 257, 1000, 32768, 40000, 65535]], dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode == "I;16"
    expected = values / 65535.0
    grey = to_chw(path, "edge", gray=True)
    assert np.abs(grey.numpy() - expected).max() <= 0.5 / 255 + 1e-6  # 8-bit rounding, not saturation
    assert grey[0, 0] == 0 and grey[0, -1] == 1
    rgb = to_chw(path, "rgb")
    assert rgb.shape == (3, 1, 6) and bool((rgb == rgb[:1]).all()) and torch_close(rgb[0], grey)
    assert torch_close(to_chw(Image.open(path), "rgb")[0], grey)  # an image in memory converts alike
    hwc = np.repeat(values[..., None], 3, axis=2)  # a (1, 6, 3) uint16 array
    assert np.abs(to_chw(hwc, "rgb").numpy() - expected[None]).max() < 1e-6  # uint16 arrays: / 65535
    assert np.asarray(as_mode(Image.open(path), "L")).tolist() == [[0, 1, 4, 128, 156, 255]]


def torch_close(a, b) -> bool:
    return bool(np.allclose(np.asarray(a), np.asarray(b), atol=1e-6))


def test_exif_orientation_and_transparency(tmp_path):
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = (255, 0, 0)  # left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: show it rotated 90 degrees clockwise
    path = tmp_path / "phone.jpg"
    Image.fromarray(arr).save(path, exif=exif, quality=95)
    img, size = open_image(path)
    oracle = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
    assert size == (20, 40) and img.size == oracle.size == (20, 40)
    assert np.abs(np.asarray(img, dtype=int) - np.asarray(oracle, dtype=int)).max() == 0
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[:2] = (10, 20, 30, 255)  # top opaque, bottom fully transparent
    Image.fromarray(rgba).save(tmp_path / "cut.png")
    out = np.asarray(open_image(tmp_path / "cut.png")[0])
    assert out[0, 0].tolist() == [10, 20, 30] and out[3, 3].tolist() == [255, 255, 255]
    json.dumps(size)  # sizes are plain ints (they go into dataset reports)
