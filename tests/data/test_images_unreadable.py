"""A file that is not an image, given where an image is read (`data.images.open_image`: generate, embed, data import
and label): one line naming the file and the formats read. It was PIL's "cannot identify image file
<_io.BufferedReader name='x'>" inside "corrupt or not an image: ...". The formats the line names are each read."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from polymodal.cli import main
from polymodal.data.images import ImageFileError, open_image

READ = "is not in an image format that can be read (PNG, JPEG, WebP, TIFF, BMP, GIF or another format PIL reads)"


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "notes.png"  # an image's name, a text file's bytes
    path.write_text("shopping list: eggs, milk\n")
    return path


def test_a_text_file_is_one_line_naming_it(text_file, tmp_path):
    with pytest.raises(ImageFileError) as e:
        open_image(text_file)
    assert str(e.value) == f"image file {str(text_file)!r} {READ}"
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageFileError, match=r"^image file '.*empty.png' is empty \(0 bytes\)$"):
        open_image(tmp_path / "empty.png")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WebP", "TIFF", "BMP", "GIF"])
def test_every_format_the_line_names_is_read(fmt, tmp_path):
    rgb = np.zeros((8, 12, 3), np.uint8)
    rgb[:, 6:] = 255  # left black, right white: survives JPEG and GIF's palette
    path = tmp_path / f"two.{fmt.lower()}"
    Image.fromarray(rgb).save(path, format=fmt)
    img, size = open_image(path)
    assert size == (12, 8)
    assert np.abs(np.asarray(img, dtype=int) - rgb).max() <= 40  # JPEG ringing at the edge, no more


def test_generate_and_import_show_the_line(text_file, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["generate", "--from", f"rgb={text_file}", "--to", "caption", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("polymodal generate: ") and err[0].endswith(
        f"image file {str(text_file)!r} {READ}")
    assert not out.exists()
    photos = tmp_path / "photos"
    photos.mkdir()
    text_file.rename(photos / "notes.png")
    Image.fromarray(np.full((40, 48, 3), 120, np.uint8)).save(photos / "a.png")
    assert main(["data", "import", "--images", str(photos), "--out", str(tmp_path / "ds"), "--res", "32",
                 "--quiet"]) == 0
    report = json.loads((tmp_path / "ds" / "report.json").read_text())
    assert report["skipped"] == [{"file": "notes.png", "reason": f"{photos / 'notes.png'}: the image {READ}"}]
    capsys.readouterr()
    assert main(["embed", "--images", str(photos), "--out", str(tmp_path / "e.safetensors"), "--quiet"]) == 0
    shown = capsys.readouterr()
    assert f"image file {str(photos / 'notes.png')!r} {READ}" in shown.out + shown.err  # the skipped list
