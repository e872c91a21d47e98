"""Aligned augmentation: one random resized crop and horizontal flip applied identically to every modality.

A `Crop` is ``(top, left, height, width)`` in source pixels plus ``flip``; `apply_crop` cuts it out of every image
modality of a sample, resizes it to ``size`` x ``size`` and mirrors it, and moves the geometric labels with it:

==================  =====================================================================================
value               how it is moved
==================  =====================================================================================
rgb                 area (shrinking) or linear (growing) resampling
every other map     nearest resampling: class ids, instance ids, edges, depth (0 = sky must not blend into
                    surfaces) and normals (unit vectors of one surface each); on flip normal x is negated
det boxes           mapped and rounded outwards so a box still encloses its instance's pixels; clipped to the
                    image; a box left with no area (it left the crop) is dropped, flip swaps xmin/xmax
human_poses         joints mapped continuously (they may lie outside), boxes as above; a person whose box
                    left the crop is dropped
caption, metadata,  unchanged (they describe the whole image; 4M crops the same way)
color_palette
scene               dropped (its camera no longer matches)
==================  =====================================================================================

Nearest resampling takes, for output pixel ``j``, source pixel ``left + floor((j + 0.5) * width / size)``; a box
``[x0, x1)`` maps to ``[floor((x0 - left) * size / width), ceil((x1 - left) * size / width))``, which holds every
output pixel whose source lies in the box.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

LINEAR_KEYS = ("rgb",)
DROPPED_KEYS = ("scene",)


@dataclass(frozen=True)
class Crop:
    """A crop in source pixels (``top``, ``left``, ``height``, ``width``) and a horizontal flip after it."""

    top: int
    left: int
    height: int
    width: int
    flip: bool = False

    def as_array(self) -> np.ndarray:
        """(5,) int32: top, left, height, width, flip (how pre-tokenized shards store it)."""
        return np.array([self.top, self.left, self.height, self.width, int(self.flip)], dtype=np.int32)

    @classmethod
    def from_array(cls, a) -> Crop:
        t, left, h, w, f = (int(v) for v in a)
        return cls(t, left, h, w, bool(f))


def center_crop(h: int, w: int) -> Crop:
    """The largest centred square, unflipped."""
    s = min(h, w)
    return Crop((h - s) // 2, (w - s) // 2, s, s, False)


def random_resized_crop(h: int, w: int, rng: np.random.Generator, *, scale: tuple[float, float] = (0.6, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3), flip_p: float = 0.5) -> Crop:
    """torchvision's RandomResizedCrop draw (area share in ``scale``, log-uniform aspect ``ratio``, 10 tries, else
    the centre crop) and a flip with probability ``flip_p``."""
    area = h * w
    flip = bool(rng.random() < flip_p)
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        cw, ch = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            return Crop(int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1)), ch, cw, flip)
    c = center_crop(h, w)
    return Crop(c.top, c.left, c.height, c.width, flip)


def _index(start: int, length: int, size: int, flip: bool) -> np.ndarray:
    idx = start + np.floor((np.arange(size) + 0.5) * length / size).astype(np.int64)
    return idx[::-1] if flip else idx


def _resample(img: np.ndarray, crop: Crop, size: int, *, linear: bool) -> np.ndarray:
    if linear:
        part = img[crop.top:crop.top + crop.height, crop.left:crop.left + crop.width]
        shrink = crop.height >= size and crop.width >= size
        out = cv2.resize(np.ascontiguousarray(part), (size, size),
                         interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        if out.ndim < img.ndim:
            out = out[..., None]
        return np.ascontiguousarray(out[:, ::-1]) if crop.flip else out
    rows = _index(crop.top, crop.height, size, False)
    cols = _index(crop.left, crop.width, size, crop.flip)
    return img[rows[:, None], cols[None, :]]


def map_box(box, crop: Crop, size: int) -> list[int] | None:
    """A half-open pixel box ``[x0, y0, x1, y1]`` in the output frame, or None when it leaves the crop."""
    sx, sy = size / crop.width, size / crop.height
    x0, y0, x1, y1 = box
    nx0, nx1 = math.floor((x0 - crop.left) * sx + 1e-9), math.ceil((x1 - crop.left) * sx - 1e-9)
    ny0, ny1 = math.floor((y0 - crop.top) * sy + 1e-9), math.ceil((y1 - crop.top) * sy - 1e-9)
    nx0, nx1 = max(nx0, 0), min(nx1, size)
    ny0, ny1 = max(ny0, 0), min(ny1, size)
    if nx1 <= nx0 or ny1 <= ny0:
        return None
    if crop.flip:
        nx0, nx1 = size - nx1, size - nx0
    return [nx0, ny0, nx1, ny1]


def map_points(points, crop: Crop, size: int) -> list[list[float]]:
    """Continuous pixel coordinates ``(u, v)`` (pixel edges at integers) in the output frame."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    u = (p[:, 0] - crop.left) * size / crop.width
    v = (p[:, 1] - crop.top) * size / crop.height
    if crop.flip:
        u = size - u
    return np.round(np.stack([u, v], axis=1), 3).tolist()


def _moved(entry: dict, crop: Crop, size: int) -> dict | None:
    """A det or person entry with its boxes in the output frame; None when its box left the crop."""
    b = map_box(entry["box"], crop, size)
    if b is None:
        return None
    out = {**entry, "box": b}
    if "amodal_box" in entry:
        out["amodal_box"] = map_box(entry["amodal_box"], crop, size) or b
    return out


def apply_crop(sample: dict, crop: Crop, size: int) -> dict:
    """Every modality of ``sample`` cropped, resized to ``size`` x ``size`` and flipped together (module doc).

    Image values are arrays (H, W) or (H, W, C) that share one H x W; other keys pass through or move as the
    table says. Returns a new dict; ``sample`` is not modified.
    """
    out = {}
    for key, value in sample.items():
        if key in DROPPED_KEYS:
            continue
        if isinstance(value, np.ndarray) and value.ndim in (2, 3) and key not in ("minilm_caption",):
            img = _resample(value, crop, size, linear=key in LINEAR_KEYS)
            if key == "normal" and crop.flip:
                img = img.copy()
                img[..., 0] *= -1  # the mirror turns right into left: x of every normal changes sign
            out[key] = img
        elif key == "det":
            out[key] = [e for d in value if (e := _moved(d, crop, size)) is not None]
        elif key == "human_poses":
            out[key] = [{**e, "joints_2d": map_points(e["joints_2d"], crop, size)}
                        for p in value if (e := _moved(p, crop, size)) is not None]
        else:
            out[key] = value
    return out


def image_size(sample: dict) -> tuple[int, int]:
    """(H, W) shared by the sample's image modalities; ValueError when they disagree."""
    sizes = {k: v.shape[:2] for k, v in sample.items() if isinstance(v, np.ndarray) and v.ndim in (2, 3)
             and k != "minilm_caption"}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"image modalities of sample {sample.get('__key__')!r} differ in size: {sizes}")
    if not sizes:
        raise ValueError(f"sample {sample.get('__key__')!r} has no image modality")
    return next(iter(sizes.values()))
