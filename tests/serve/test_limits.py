"""Limits a request meets before any work: the body size whatever the transfer encoding, JSON nesting and numbers,
and the pixel count of an image, each a 4xx with one line (issue 16)."""

from __future__ import annotations

import asyncio
import base64
import json
import struct
import zlib

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import ImageFile

from polymodal.serve import MAX_BODY_BYTES
from polymodal.serve.requests import MAX_DEPTH, MAX_IMAGE_PIXELS, RequestError, parse_json

CHUNK = 2**20


def _post_chunked(app, chunks: int, first: bytes = b"") -> tuple[httpx.Response, int]:
    """POST a body sent in CHUNK-byte pieces from a generator (chunked transfer: no Content-Length) straight to the
    ASGI app; returns the answer and how many bytes the app pulled from the generator."""
    pulled = 0

    async def body():
        nonlocal pulled
        for i in range(chunks):
            piece = first if i == 0 and first else b" " * CHUNK
            pulled += len(piece)
            yield piece

    async def run():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.post("/api/generate", content=body(), headers={"content-type": "application/json"})

    return asyncio.run(run()), pulled


def test_a_chunked_upload_stops_at_the_limit(stopped_app):
    r, pulled = _post_chunked(stopped_app, 300)  # 300 MiB offered
    assert r.status_code == 413 and "over the size limit of 8 MB" in r.json()["error"]
    assert "content-length" not in r.request.headers and r.request.headers["transfer-encoding"] == "chunked"
    assert pulled <= MAX_BODY_BYTES + CHUNK, f"read {pulled / 2**20:.0f} MiB of 300 before refusing"


def test_a_chunked_body_under_the_limit_is_read_whole(stopped_app):
    body = json.dumps({"inputs": {"caption": "a red cube"}, "targets": ["depth"], "steps": 2}).encode()
    r, pulled = _post_chunked(stopped_app, 3, first=body)  # the JSON, then 2 MiB of white space after it
    assert r.status_code == 202, r.text
    assert pulled == len(body) + 2 * CHUNK


DEEP = 100_000


@pytest.mark.parametrize("body, message", [
    (b"[" * DEEP + b"]" * DEEP, "the request body: JSON nested deeper than 20 levels"),
    (b'{"inputs": ' + b"[" * DEEP + b"]" * DEEP + b"}", "the request body: JSON nested deeper than 20 levels"),
    (b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), "the request body: JSON nested deeper than 20 levels"),
    (json.dumps({"inputs": {"det": "[" * DEEP + "]" * DEEP}}).encode(), "det: JSON nested deeper than 20 levels"),
    (b'{"inputs": {"caption": "a cube"}, "seed": NaN}', "the request body: NaN is not a JSON number"),
    (b'{"inputs": {"caption": "a cube"}, "guidance": 1e400}', "the number 1e400 is out of range"),
    (b'{"inputs": {"caption": "a cube"}, "seed": ' + b"9" * 5000 + b"}", "the request body: the number 9999"),
    (b'{"inputs": {"det": [{"class": "cube", "box": [0, 0, 1e300, 1]}]}}', "the number 1e300 is out of range"),
])
def test_deep_json_and_odd_numbers_are_a_400(app, body, message):
    client = TestClient(app)
    r = client.post("/api/generate", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400 and message in r.json()["error"], r.text[:300]
    assert "\n" not in r.json()["error"] and len(r.json()["error"]) < 200
    assert client.get("/api/info").status_code == 200


def test_nesting_up_to_the_limit_parses():
    doc = [0]
    for _ in range(MAX_DEPTH - 1):
        doc = [doc]
    assert parse_json(json.dumps(doc)) == doc
    with pytest.raises(RequestError, match="nested deeper"):
        parse_json(json.dumps([doc]))


def big_png(side: int) -> bytes:
    """A real side x side PNG, 1 bit per pixel, all black: a few tens of KB to send, side**2 pixels to decode."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    z = zlib.compressobj(9)
    row = bytes(1 + (side + 7) // 8)  # filter byte 0, then the row's bits
    pixels = b"".join(z.compress(row) for _ in range(side)) + z.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # bit depth 1, greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


# 10000 px is past Pillow's warning on purpose: the warning is the case tested, not noise
@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("side, size", [(20000, "400,000,000 pixels"), (10000, "10000x10000 pixels"),
                                        (4100, "4100x4100 pixels")])
def test_a_huge_image_is_too_large_and_never_decoded(app, monkeypatch, side, size):
    """20000 px is past Pillow's own limit (it refuses at open), 10000 px between its warning and its limit, 4100
    px just over ours: each is "too large", none is decoded (a decode here would fail the test)."""
    png = big_png(side)
    assert len(png) < 2**20 and side * side > MAX_IMAGE_PIXELS

    def no_decode(self):
        raise AssertionError("a too large image was decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decode)
    body = {"inputs": {"rgb": "data:image/png;base64," + base64.b64encode(png).decode()}, "targets": ["depth"]}
    r = TestClient(app).post("/api/generate", json=body)
    assert r.status_code == 413, r.text
    assert r.json()["error"] == f"rgb@pt: the image is {size}, over the limit of 4096x4096 pixels; send a smaller one"
