"""3D human poses in 4M-21's format (``fourm/data/modality_transforms.py: HumanPoseTransform``).

One person is 39 tokens: ``human``, the box ``v0=xmin v1=ymin v2=xmax v3=ymax`` (normalized, ``round(x * 999)``),
then four keyword-led groups, in 4M's list order ``pose, global, camera, shape`` or shuffled per person with
``generator`` (4M permutes them at random for training):

========  =====  =====================================  ======================================================
keyword   size   values                                 token
========  =====  =====================================  ======================================================
pose      8      codes of the pose tokenizer (1024)     ``v0=c`` for c < 512, else ``v1=c-512``
global    9      global orientation, rotation matrix    ``v0=round(499.5 * g + 499.5)``, g in [-1, 1]
                 row-major, entries in [-1, 1]
camera    3      camera parameters in [-1, 19]          ``v0=round(49.95 * c + 49.95)`` (clipped into range)
shape     10     body shape (SMPL betas) in [-3, 3]     ``v0=round(166.5 * b + 499.5)``
========  =====  =====================================  ======================================================

No person is the word ``none``. Seven people + [EOS] fit the 275 tokens of ``human_poses``. Example (codes 3 and
700 shown for two of eight)::

    human v0=100 v1=200 v2=300 v3=900 pose v0=3 v1=188 ... global v0=999 v0=500 ... camera ... shape ...

The pose codes come from a vector tokenizer (4M's ``human-poses_1k_8``: 8 codes of 1024); here they are given.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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
    check_number,
    check_type,
    chunks,
    code_piece,
    code_values,
    coord,
    describe,
    quantize,
    shuffled,
    split_words,
)

NUM_POSE_CODES, POSE_VOCAB = 8, 1024
# keyword -> (size, scale, offset, lo, hi): token value = round(scale * x + offset) for x in [lo, hi].
GROUPS = {
    "global": (9, 499.5, 499.5, -1.0, 1.0),
    "camera": (3, 49.95, 49.95, -1.0, 19.0),
    "shape": (10, 166.5, 499.5, -3.0, 3.0),
}
GROUP_ORDER = ("pose", "global", "camera", "shape")  # 4M's list order (before its random permutation)
EPS = 1e-6  # float dust allowed past the ends of [-1, 1] and [-3, 3] (e.g. a rotation entry of 1 + 2e-16)


@dataclass(frozen=True)
class PersonPose:
    """One person: box (normalized xmin, ymin, xmax, ymax), 8 pose codes, 9 orientation entries, 3 camera values,
    10 shape values (see the module table for ranges)."""

    box: tuple[float, float, float, float]
    pose: tuple[int, ...]
    global_orient: tuple[float, ...]
    camera: tuple[float, ...]
    shape: tuple[float, ...]


class PoseSerializer(Serializer[list[PersonPose]]):
    """``human_poses``: a list of `PersonPose`."""

    modality = "human_poses"

    def records(self, value: Sequence[PersonPose], *, generator: torch.Generator | None = None
                ) -> list[list[Piece]]:
        if not value:
            return [["none"]]
        out = []
        for i, p in enumerate(value):
            name = f"human_poses: person {i}"
            check_type(p, PersonPose, name)
            box = check_box(p.box, f"{name} box", lambda v, what: check_number(v, what, 0, 1))
            groups: dict[str, list[Piece]] = {"pose": ["pose"] + [
                code_piece(check_int(c, f"{name} pose code {k}", 0, POSE_VOCAB - 1)) for k, c in enumerate(
                    _sized(p.pose, NUM_POSE_CODES, f"{name} pose codes"))]}
            for key, (size, scale, offset, lo, hi) in GROUPS.items():
                vals = _sized(getattr(p, "global_orient" if key == "global" else key), size, f"{name} {key}")
                pieces: list[Piece] = [key]
                for k, v in enumerate(vals):
                    if key == "camera":  # 4M clips the camera into its range
                        v = min(max(check_number(v, f"{name} camera {k}", -np.inf, np.inf), lo), hi)
                    else:
                        v = min(max(check_number(v, f"{name} {key} {k}", lo - EPS, hi + EPS), lo), hi)
                    pieces.append(coord(0, quantize(v, scale, offset)))
                groups[key] = pieces
            order = shuffled(GROUP_ORDER, generator)
            rec: list[Piece] = ["human"] + [coord(a, quantize(c, 999)) for a, c in enumerate(box)]
            for key in order:
                rec += groups[key]
            out.append(rec)
        return out

    def parse(self, items: list[Item], *, strict: bool) -> list[PersonPose]:
        items = split_words(items)
        if [it[:2] for it in items] == [("w", "none")]:
            return []
        out = []
        for k, chunk in enumerate(chunks(items, lambda it: it == ("w", "human"))):
            person = _parse_person(chunk)
            if isinstance(person, str):
                broken(f"human_poses: person {k}: {person}", strict)
                continue
            out.append(person)
        return out


def _sized(values, n: int, what: str) -> list:
    vals = list(values)
    if len(vals) != n:
        raise SerializationError(f"{what}: expected {n} values, got {len(vals)}")
    return vals


def _parse_person(chunk: list[Item]) -> PersonPose | str:
    """A person from its items, or a string saying what is wrong."""
    if chunk[0] != ("w", "human"):
        return f"does not start with 'human': {describe(chunk[0])}"
    q = box_values(chunk[1:5])
    if q is None:
        return "box is not v0= v1= v2= v3="
    if q[0] > q[2] or q[1] > q[3]:
        return f"box has min > max: {q}"
    groups: dict[str, list[Item]] = {}
    for g in chunks(chunk[5:], lambda it: it[0] == "w"):
        key = g[0][1] if g[0][0] == "w" else None
        if key not in GROUP_ORDER or key in groups:
            return f"unexpected {describe(g[0])} where a group keyword ({', '.join(GROUP_ORDER)}) belongs"
        groups[key] = g[1:]
    if len(groups) != 4:
        return f"missing group(s) {', '.join(k for k in GROUP_ORDER if k not in groups)}"
    pose = code_values(groups["pose"])
    if len(groups["pose"]) != NUM_POSE_CODES or pose is None:
        return f"pose group is not {NUM_POSE_CODES} v0=/v1= codes"
    values = {}
    for key, (size, scale, offset, _, _) in GROUPS.items():
        g = groups[key]
        if len(g) != size or any(it[:2] != ("v", 0) for it in g):
            return f"{key} group is not {size} v0= values"
        values[key] = tuple((it[2] - offset) / scale for it in g)
    return PersonPose(box=tuple(v / 999 for v in q), pose=pose,
                      global_orient=values["global"], camera=values["camera"], shape=values["shape"])


# ------------------------------------------------------------------------------------------- the world


def poses_from_world(people: Sequence[dict], res: int, pose_codes: Sequence[Sequence[int]]) -> list[PersonPose]:
    """The world's ``human_poses`` entries as serializer input, with each person's 8 pose codes given (from the
    pose tokenizer). The world has no SMPL parameters; its conventions:

    - box: the visible pixel box / ``res``; global orientation: the world's body-to-camera rotation (row-major);
    - shape: ``(limb_scale - 1) * 10`` for torso, arms and legs (the world's scales are 0.9..1.1, so -1..1), then
      seven zeros;
    - camera: the pelvis in the camera frame as ``(x / d, y / d, d)``, ``d`` its depth in metres (image-plane
      position and distance), clipped into [-1, 19].
    """
    if len(pose_codes) != len(people):
        raise SerializationError(f"human_poses: {len(people)} people but {len(pose_codes)} pose code lists")
    out = []
    for p, codes in zip(people, pose_codes):
        x, y, z = p["joints_3d"][0]
        depth = max(-float(z), 1e-6)
        shape = [(float(s) - 1.0) * 10.0 for s in p["limb_scale"]] + [0.0] * 7
        out.append(PersonPose(box=tuple(v / res for v in p["box"]), pose=tuple(int(c) for c in codes),
                              global_orient=tuple(float(v) for v in p["global_orient"]),
                              camera=(x / depth, y / depth, depth), shape=tuple(shape)))
    return out
