"""`polymodal data import|label --res` above the side images are decoded at is refused with one line (it was an
OpenCV out-of-memory traceback: 100000 px asked 30 GB), before anything is written."""

from __future__ import annotations

import numpy as np
from PIL import Image

from polymodal.cli import main


def test_a_stored_side_above_the_decode_side_is_refused(tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(np.full((40, 48, 3), 120, np.uint8)).save(photos / "a.png")
    assert main(["data", "import", "--images", str(photos), "--out", str(tmp_path / "ds"), "--res", "100000",
                 "--quiet"]) == 2
    assert capsys.readouterr().err.strip() == (
        "polymodal data import: need res from 16 to 1024, workers >= 1, shard_size >= 1 (got 100000, 1, 500)")
    assert not (tmp_path / "ds").exists()
    assert main(["data", "import", "--images", str(photos), "--out", str(tmp_path / "ds"), "--res", "1024",
                 "--quiet"]) == 0  # the largest side allowed is stored
