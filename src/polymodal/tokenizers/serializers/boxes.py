"""Bounding boxes (``det``) in 4M's format: ``v0=xmin v1=ymin v2=xmax v3=ymax <class name>`` per box.

Coordinates are normalized to [0, 1] and written as ``round(x * 999)`` (4M's 1000 coordinate bins); boxes are
ordered by the squared distance of their top-left corner to the origin, ``xmin^2 + ymin^2`` (4M's default
``dist_to_orig``; ties keep the given order). No boxes is the empty string (ids: just [EOS]). Example::

    [Box(0.1, 0.2, 0.5, 0.6, "wine glass"), Box(0.0, 0.0, 0.3, 1.0, "sphere")]
    -> "v0=0 v1=0 v2=300 v3=999 sphere v0=100 v1=200 v2=500 v3=599 wine glass"

Class names are whatever the text tokenizer makes of them: one token for the 80 COCO classes (and the extra classes
of a vocabulary trained here), word pieces otherwise (``torus`` -> ``tor ##us`` with the official vocabulary);
they decode lower-cased, as the tokenizer normalizes them. 51 boxes of one-token classes + [EOS] fit the 256
tokens of ``det``; past that, whole boxes are dropped (4M cuts the token sequence, possibly inside a box).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .common import (
    Item,
    Piece,
    SerializationError,
    Serializer,
    box_values,
    broken,
    check_box,
    check_number,
    check_type,
    chunks,
    coord,
    describe,
    quantize,
)

SCALE = 999  # coord_bins - 1
ORDERS = ("dist_to_orig", "area", "given")


@dataclass(frozen=True)
class Box:
    """A box in normalized coordinates (0 = left/top edge, 1 = right/bottom edge) and its class name."""

    xmin: float
    ymin: float
    xmax: float
    ymax: float
    label: str

    @property
    def coords(self) -> tuple[float, float, float, float]:
        return (self.xmin, self.ymin, self.xmax, self.ymax)


class BoxSerializer(Serializer[list[Box]]):
    """``det``. ``order``: ``"dist_to_orig"`` (4M's default), ``"area"`` (largest first) or ``"given"``."""

    modality = "det"

    def __init__(self, *, order: str = "dist_to_orig") -> None:
        if order not in ORDERS:
            raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
        self.order = order

    def records(self, value: Sequence[Box], *, generator: torch.Generator | None = None) -> list[list[Piece]]:
        boxes = [self._check(b, i) for i, b in enumerate(value)]
        if self.order == "dist_to_orig":
            boxes.sort(key=lambda b: b.xmin ** 2 + b.ymin ** 2)
        elif self.order == "area":
            boxes.sort(key=lambda b: (b.xmax - b.xmin) * (b.ymax - b.ymin), reverse=True)
        return [[coord(a, quantize(c, SCALE)) for a, c in enumerate(b.coords)] + [b.label] for b in boxes]

    @staticmethod
    def _check(box: Box, i: int) -> Box:
        check_type(box, Box, f"det: box {i}")
        name = f"det: box {i} ({box.label!r})"
        c = check_box(box.coords, name, lambda v, what: check_number(v, what, 0.0, 1.0))
        if not isinstance(box.label, str) or not box.label.strip():
            raise SerializationError(f"{name}: the class name must be a non-empty string")
        return Box(*c, box.label)

    def parse(self, items: list[Item], *, strict: bool) -> list[Box]:
        out = []
        for k, chunk in enumerate(chunks(items, lambda it: it[:2] == ("v", 0))):
            q = box_values(chunk[:4])
            if len(chunk) < 5 or q is None or chunk[4][0] != "w":
                broken(f"det: box {k} is not v0= v1= v2= v3= <class>: {' '.join(map(describe, chunk))}", strict)
                continue
            if len(chunk) > 5:  # a good box with stray tokens after it: keep the box
                broken(f"det: box {k} has tokens after its class: {' '.join(map(describe, chunk[5:]))}", strict)
            if q[0] > q[2] or q[1] > q[3]:
                broken(f"det: box {k} has xmin > xmax or ymin > ymax: {q}", strict)
                continue
            out.append(Box(*(v / SCALE for v in q), chunk[4][1]))
        return out


# ------------------------------------------------------------------------------------------- the world


def boxes_from_world(det: Sequence[dict], res: int) -> list[Box]:
    """The world's ``det`` entries (pixel boxes ``[xmin, ymin, xmax, ymax]``, half-open, and ``class``) as
    normalized boxes of an image ``res`` pixels wide."""
    out = []
    for i, d in enumerate(det):
        try:
            x0, y0, x1, y1 = d["box"]
            out.append(Box(x0 / res, y0 / res, x1 / res, y1 / res, d["class"]))
        except (KeyError, TypeError, ValueError) as e:
            raise SerializationError(f"det entry {i} is not a world detection ({e}): {d!r:.100}") from None
    return out


def boxes_to_pixels(boxes: Sequence[Box], res: int) -> list[dict]:
    """Normalized boxes back to the world's pixel boxes: ``{"class", "box"}`` with rounded pixel edges (exact
    after a round trip for any resolution up to 999 pixels: a coordinate bin is then under half a pixel)."""
    return [{"class": b.label, "box": [round(c * res) for c in b.coords]} for b in boxes]
