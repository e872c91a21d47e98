"""Bytes of one sample: how each modality is stored in a shard entry, and back.

=============  ==========  =====================================================================================
modality       file        encoding
=============  ==========  =====================================================================================
rgb            .png        8-bit RGB
depth          .png        16-bit gray, millimetres: ``depth_m = value / 1000`` (`DEPTH_SCALE`); 0 = sky; the
                           range ends at 65.535 m (the world's open floor ends before)
normal         .png        16-bit RGB: ``n = value / 65535 * 2 - 1`` per channel (x right, y up, z to viewer);
                           sky pixels store n = 0 (read back as about +1.5e-5; use depth == 0 to find them)
semseg         .png        8-bit gray, class ids
instance       .png        8-bit gray, instance ids (0 = none)
canny_edge     .png        8-bit gray, 0 / 255
sam_edge       .png        8-bit gray, 0 / 255
caption        .txt        UTF-8
det, color_palette, metadata, human_poses, scene   .json   UTF-8 JSON, keys sorted
minilm_global  .npy        float16 (384,), unit norm: the caption's sentence embedding (`text_embed`); only in
                           datasets written with ``--text-embeddings``
minilm_caption .npy        float16 (L, 384): the caption's per-token embeddings, [CLS] .. [SEP], L <= 256
=============  ==========  =====================================================================================

PNGs are written with OpenCV (16-bit RGB is beyond Pillow); the same sample always gives the same bytes. Arrays
are NumPy ``.npy`` files, read with ``allow_pickle=False`` (never unpickled) and returned as float32.
"""

from __future__ import annotations

import io
import json

import cv2
import numpy as np

from ..shards import npy_bytes

DEPTH_SCALE = 1000.0  # stored units per metre
NORMAL_SCALE = 65535.0
EXTENSIONS = {
    "rgb": "png", "depth": "png", "normal": "png", "semseg": "png", "instance": "png", "canny_edge": "png",
    "sam_edge": "png", "caption": "txt", "det": "json", "color_palette": "json", "metadata": "json",
    "human_poses": "json", "scene": "json", "minilm_global": "npy", "minilm_caption": "npy",
}
_ARRAY_NDIM = {"minilm_global": 1, "minilm_caption": 2}  # float16 arrays, last axis the embedding
_PNG = [cv2.IMWRITE_PNG_COMPRESSION, 3]  # fast; the maps are small and flat, level 3 is within ~10 % of 9


def _png(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", img, _PNG)
    if not ok:
        raise ValueError(f"could not encode an image of shape {img.shape} and dtype {img.dtype} as PNG")
    return buf.tobytes()


def _to_uint16(x: np.ndarray) -> np.ndarray:
    # Round half up by truncation after +0.5: values are non-negative, and this is one pass instead of rint's two.
    return (np.clip(x, 0.0, 65535.0) + 0.5).astype(np.uint16)


def encode(modality: str, value) -> bytes:
    """The stored bytes of one modality of a sample (see the module table)."""
    ext = EXTENSIONS.get(modality)
    if ext is None:
        raise KeyError(f"unknown world modality {modality!r}; known: {', '.join(EXTENSIONS)}")
    if modality == "rgb":
        return _png(np.ascontiguousarray(value[..., ::-1]))
    if modality == "depth":
        return _png(_to_uint16(value.astype(np.float64) * DEPTH_SCALE))
    if modality == "normal":  # channels reversed: OpenCV writes BGR
        return _png(_to_uint16((value[..., ::-1].astype(np.float64) + 1) * (NORMAL_SCALE / 2)))
    if ext == "png":
        return _png(np.asarray(value, np.uint8))
    if modality == "caption":
        return value.encode("utf-8")
    if ext == "npy":
        with np.errstate(over="ignore"):  # out of float16's range becomes inf, refused by the check
            arr = _check_array(modality, np.asarray(value).astype(np.float16))
        return npy_bytes(arr)
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode("utf-8")


def decode(modality: str, data: bytes):
    """Inverse of `encode`: arrays for images (depth and normals as float32) and embeddings (float32), str or JSON
    values otherwise."""
    ext = EXTENSIONS.get(modality)
    if ext is None:
        raise KeyError(f"unknown world modality {modality!r}; known: {', '.join(EXTENSIONS)}")
    if ext == "txt":
        return data.decode("utf-8")
    if ext == "json":
        return json.loads(data.decode("utf-8"))
    if ext == "npy":
        arr = np.load(io.BytesIO(data), allow_pickle=False)
        if arr.dtype != np.float16:
            raise ValueError(f"{modality}: expected a float16 array, got {arr.dtype}")
        return _check_array(modality, arr).astype(np.float32)
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ValueError(f"corrupt PNG for modality {modality!r}")
    if modality == "rgb":
        return np.ascontiguousarray(img[..., ::-1])
    if modality == "depth":
        return (img.astype(np.float64) / DEPTH_SCALE).astype(np.float32)
    if modality == "normal":
        return (img[..., ::-1].astype(np.float64) / NORMAL_SCALE * 2 - 1).astype(np.float32)
    return img


def _check_array(modality: str, arr: np.ndarray) -> np.ndarray:
    if arr.ndim != _ARRAY_NDIM[modality] or arr.shape[-1] == 0:
        raise ValueError(f"{modality}: expected {_ARRAY_NDIM[modality]} axes ending in the embedding, got "
                         f"shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{modality}: non-finite values (beyond float16's range?)")
    return arr


def quantize(modality: str, value):
    """What a value becomes after a trip through storage (``decode(encode(x))``), for comparisons."""
    return decode(modality, encode(modality, value))
