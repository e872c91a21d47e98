"""SAM instances in 4M-21's format (``fourm/data/modality_transforms.py: SAMInstanceTokTransform``).

4M queries an image at a few points (7 random pixels of the 224 x 224 frame) and lists, per point, the instances
that contain it::

    point v0=<y> v1=<x>   then   none   or, per instance,   polygon v0=xmin v1=ymin v2=xmax v3=ymax <16 codes>

Coordinates are integer pixels of the 224-pixel frame (not the 0..999 bins of boxes); the point is written y
first. The 16 codes are the instance mask's tokens (4M's ``sam-instance_1k_64`` tokenizer: a 64 x 64 mask in
its box, 4 x 4 codes of 1024), each ``v0=c`` for c < 512, else ``v1=c-512``; here they are given. Points and the
instances of a point come in the given order, or shuffled with ``generator`` (4M shuffles both). A point is 3
tokens + 1 (``none``) or 21 per instance; ``sam_instance`` allows 290 tokens, and the whole points that fit are
kept. Example::

    [QueryPoint(x=10, y=20, instances=(Instance((5, 8, 40, 50), codes),)), QueryPoint(x=200, y=3)]
    -> "point v0=20 v1=10 polygon v0=5 v1=8 v2=40 v3=50 v0=c1 ... point v0=3 v1=200 none"
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from .common import (
    Item,
    Piece,
    SerializationError,
    Serializer,
    box_values,
    broken,
    check_box,
    check_int,
    check_type,
    chunks,
    code_piece,
    code_values,
    coord,
    describe,
    shuffled,
    split_words,
)

IMAGE_SIZE = 224
NUM_MASK_CODES, MASK_VOCAB = 16, 1024
NUM_QUERY_POINTS = 7


@dataclass(frozen=True)
class Instance:
    """An instance: its box (xmin, ymin, xmax, ymax, integer pixels of the 224 frame) and 16 mask codes."""

    box: tuple[int, int, int, int]
    codes: tuple[int, ...]


@dataclass(frozen=True)
class QueryPoint:
    """A query pixel (x, y) of the 224 frame and the instances that contain it (none: an empty tuple)."""

    x: int
    y: int
    instances: tuple[Instance, ...] = field(default=())


class InstanceSerializer(Serializer[list[QueryPoint]]):
    """``sam_instance``: a list of `QueryPoint`."""

    modality = "sam_instance"

    def records(self, value: Sequence[QueryPoint], *, generator: torch.Generator | None = None
                ) -> list[list[Piece]]:
        out = []
        for i, p in enumerate(shuffled(value, generator)):
            name = f"sam_instance: point {i}"
            check_type(p, QueryPoint, name)
            rec: list[Piece] = ["point", coord(0, check_int(p.y, f"{name} y", 0, IMAGE_SIZE - 1)),
                                coord(1, check_int(p.x, f"{name} x", 0, IMAGE_SIZE - 1))]
            insts = shuffled(p.instances, generator)
            if not insts:
                rec.append("none")
            for k, inst in enumerate(insts):
                rec += ["polygon", *self._box(inst, f"{name} instance {k}")]
                if len(inst.codes) != NUM_MASK_CODES:
                    raise SerializationError(f"{name} instance {k}: {len(inst.codes)} mask codes, "
                                             f"expected {NUM_MASK_CODES}")
                rec += [code_piece(check_int(c, f"{name} instance {k} code {j}", 0, MASK_VOCAB - 1))
                        for j, c in enumerate(inst.codes)]
            out.append(rec)
        return out

    @staticmethod
    def _box(inst: Instance, name: str) -> list[Piece]:
        check_type(inst, Instance, name)
        b = check_box(inst.box, f"{name} box", lambda v, what: check_int(v, what, 0, IMAGE_SIZE))
        if b[0] == b[2] or b[1] == b[3]:  # 4M's instances have pixels: min < max
            raise SerializationError(f"{name}: box {tuple(b)} is empty (xmin >= xmax or ymin >= ymax)")
        return [coord(a, v) for a, v in enumerate(b)]

    def parse(self, items: list[Item], *, strict: bool) -> list[QueryPoint]:
        out = []
        for k, chunk in enumerate(chunks(split_words(items), lambda it: it == ("w", "point"))):
            head = chunk[:3]
            if [it[:2] for it in head] != [("w", "point"), ("v", 0), ("v", 1)] or max(head[1][2], head[2][2]) >= \
                    IMAGE_SIZE:
                broken(f"sam_instance: point {k} does not start with point v0=<y> v1=<x> (0..{IMAGE_SIZE - 1}): "
                       f"{' '.join(map(describe, head))}", strict)
                continue
            rest = chunk[3:]
            if rest == [("w", "none")]:
                out.append(QueryPoint(x=head[2][2], y=head[1][2]))
                continue
            insts = []
            for j, poly in enumerate(chunks(rest, lambda it: it == ("w", "polygon"))):
                inst = _parse_instance(poly)
                if isinstance(inst, str):
                    broken(f"sam_instance: point {k} instance {j}: {inst}", strict)
                    continue
                insts.append(inst)
            if not insts and rest:
                broken(f"sam_instance: point {k} has no readable instance", strict)
                continue
            out.append(QueryPoint(x=head[2][2], y=head[1][2], instances=tuple(insts)))
        return out


def _parse_instance(poly: list[Item]) -> Instance | str:
    if poly[0] != ("w", "polygon"):
        return f"does not start with 'polygon': {describe(poly[0])}"
    if len(poly) != 5 + NUM_MASK_CODES:
        return f"{len(poly) - 1} tokens after 'polygon', expected 4 box + {NUM_MASK_CODES} codes"
    b, codes = box_values(poly[1:5]), code_values(poly[5:])
    if b is None:
        return "box is not v0= v1= v2= v3="
    if b[0] >= b[2] or b[1] >= b[3] or max(b) > IMAGE_SIZE:
        return f"box {b} is empty or outside the {IMAGE_SIZE}-pixel frame"
    if codes is None:
        return "mask codes are not v0=/v1= tokens"
    return Instance(box=tuple(b), codes=codes)


# ------------------------------------------------------------------------------------------- the world


def sample_query_points(n: int = NUM_QUERY_POINTS, *, generator: torch.Generator) -> list[tuple[int, int]]:
    """4M's random query points: n pixels (x, y) of the 224 frame, x and y uniform integers."""
    y = torch.randint(0, IMAGE_SIZE, (n,), generator=generator)
    x = torch.randint(0, IMAGE_SIZE, (n,), generator=generator)
    return list(zip(x.tolist(), y.tolist()))


def instances_from_world(instance_map: np.ndarray, points: Sequence[tuple[int, int]],
                         codes: Mapping[int, Sequence[int]]) -> list[QueryPoint]:
    """Query the world's ``instance`` map (H, W), 0 = none, at ``points`` (x, y) of the 224 frame.

    A point lies in at most one world instance (the visible one; SAM's masks may overlap, the world's do not).
    Its box is the instance's pixel box scaled to the 224 frame and rounded; ``codes[instance id]`` are its 16
    mask codes (from the mask tokenizer).
    """
    inst = np.asarray(instance_map)
    h, w = inst.shape
    out = []
    for x, y in points:
        k = int(inst[min(int(y * h / IMAGE_SIZE), h - 1), min(int(x * w / IMAGE_SIZE), w - 1)])
        if k == 0:
            out.append(QueryPoint(x=int(x), y=int(y)))
            continue
        if k not in codes:
            raise SerializationError(f"sam_instance: no mask codes given for world instance {k}")
        rows, cols = np.flatnonzero((inst == k).any(axis=1)), np.flatnonzero((inst == k).any(axis=0))
        box = (round(cols[0] * IMAGE_SIZE / w), round(rows[0] * IMAGE_SIZE / h),
               round((cols[-1] + 1) * IMAGE_SIZE / w), round((rows[-1] + 1) * IMAGE_SIZE / h))
        out.append(QueryPoint(x=int(x), y=int(y), instances=(Instance(box, tuple(int(c) for c in codes[k])),)))
    return out
