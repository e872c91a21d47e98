"""A job's id is its only key (no login): ids must not be guessable from one's own. And a request's image opens
only in the formats the error message names, not every decoder Pillow carries."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from polymodal.serve import JobQueue
from polymodal.serve.requests import IMAGE_FORMATS, RequestError, decode_image


def test_job_ids_are_unguessable_and_distinct():
    queue = JobQueue(start=False)
    ids = [queue.submit("generate", lambda progress: None).id for _ in range(50)]
    assert len(set(ids)) == len(ids)
    assert all(i.startswith("g-") for i in ids)
    assert not any(i in {f"g{n}" for n in range(100)} for i in ids)  # not a counter
    assert min(len(i) for i in ids) >= 16  # 12 random bytes, base64: 16 characters after the prefix
    assert queue.get(ids[3]).id == ids[3]


def _encoded(fmt: str) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (10, 20, 30)).save(buf, format=fmt)
    return "data:image/x;base64," + base64.b64encode(buf.getvalue()).decode()


@pytest.mark.parametrize("fmt", IMAGE_FORMATS)
def test_the_named_formats_open(fmt):
    assert decode_image("rgb", _encoded(fmt)).size == (16, 16)


@pytest.mark.parametrize("fmt", ["TIFF", "ICO", "PPM"])
def test_other_formats_pillow_knows_are_refused(fmt):
    with pytest.raises(RequestError, match="not an image that can be read .use PNG, JPEG, GIF, BMP or WebP"):
        decode_image("rgb", _encoded(fmt))
