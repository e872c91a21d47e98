"""From a scene's objects to the primitives the renderer intersects.

Each object becomes one or more `Solid`s (a person: a head and nine capsules), each with the object it belongs
to, its own albedo (a person's shirt, skin and trousers differ) and its material. The dimensions of every class
live here, as multiples of the object's size (`scene.SIZES`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import shapes
from .person import PANTS_TONES, SKIN_TONES, body_parts, skeleton, to_world
from .scene import COLORS, SIZES, Obj


@dataclass(frozen=True)
class Solid:
    shape: object  # a primitive of `shapes` (intersect, normal, center, bound)
    obj: int  # index of the object in `Scene.objects`
    albedo: tuple[float, float, float]
    shiny: bool


def object_solids(obj: Obj, k: int) -> list[Solid]:
    """The primitives of object ``k``."""
    s = SIZES[obj.size]
    x, z = obj.position
    color, shiny = COLORS[obj.color], obj.material == "shiny"
    if obj.cls == "sphere":
        prims = [shapes.Sphere((x, s, z), s)]
    elif obj.cls == "cube":
        prims = [shapes.box(x, z, 0.85 * s, obj.yaw)]
    elif obj.cls == "cylinder":
        prims = [shapes.Cylinder(x, z, 0.8 * s, 2.4 * s)]
    elif obj.cls == "cone":
        prims = [shapes.Cone(x, z, s, 2.2 * s)]
    elif obj.cls == "torus":
        prims = [shapes.Torus(x, z, 0.9 * s, 0.35 * s)]
    elif obj.cls == "capsule":
        r = 0.5 * s
        if obj.lying:
            h = 0.7 * s * np.array([np.cos(obj.yaw), 0.0, np.sin(obj.yaw)])
            c = np.array([x, r, z])
            prims = [shapes.Capsule(c - h, c + h, r)]
        else:
            prims = [shapes.Capsule((x, r, z), (x, r + 1.6 * s, z), r)]
    elif obj.cls == "pyramid":
        prims = [shapes.pyramid(x, z, s, 1.8 * s, obj.yaw)]
    elif obj.cls == "person":
        return person_solids(obj, k)
    else:
        raise ValueError(f"unknown object class {obj.cls!r}")
    return [Solid(p, k, color, shiny) for p in prims]


def person_joints(obj: Obj) -> np.ndarray:
    """World positions of a person's joints: (15, 3) metres."""
    return to_world(skeleton(obj.pose), obj.position, obj.yaw)


def person_solids(obj: Obj, k: int) -> list[Solid]:
    pose = obj.pose
    joints = person_joints(obj)  # a rigid move of the body frame: capsules can be built from world joints
    tones = {"shirt": COLORS[obj.color], "skin": SKIN_TONES[pose.skin], "pants": PANTS_TONES[pose.pants]}
    shiny = obj.material == "shiny"
    out = []
    for kind, a, b, radius, part in body_parts(joints, pose):
        prim = shapes.Sphere(a, radius) if kind == "sphere" else shapes.Capsule(a, b, radius)
        out.append(Solid(prim, k, tones[part], shiny and part == "shirt"))
    return out


def scene_solids(objects) -> list[Solid]:
    return [solid for k, obj in enumerate(objects) for solid in object_solids(obj, k)]
