"""Shared helpers of the world tests: hand-built scenes and a cached set of rendered samples."""

from __future__ import annotations

import functools

import numpy as np

from polymodal.data.world.person import sample_pose
from polymodal.data.world.scene import Camera, Light, Obj, Scene, sample_scene

RES = 48


@functools.cache
def samples(res: int = RES, n: int = 12, seed: int = 0) -> tuple[dict, ...]:
    """Samples 0..n-1 of world ``seed``, rendered once per test session."""
    from polymodal.data.world import render_sample

    return tuple(render_sample(seed, i, res) for i in range(n))


def person_scenes(limit: int = 6, seed: int = 0) -> list[int]:
    """Indices of scenes of world ``seed`` that hold a person (scene sampling only: cheap)."""
    found, i = [], 0
    while len(found) < limit:
        if any(o.cls == "person" for o in sample_scene(seed, i).objects):
            found.append(i)
        i += 1
    return found


def lone_person_scene(action: str = "waving", *, yaw: float = 0.3, seed: int = 0) -> Scene:
    """One person in the middle of an open floor, facing the camera roughly, fully in view."""
    pose = sample_pose(np.random.default_rng(seed), action)
    person = Obj(cls="person", color="red", size="large", material="matte", position=(0.0, 0.0), yaw=yaw,
                 radius=0.45, pose=pose)
    return Scene(
        seed=seed, index=0, camera=Camera(position=(0.0, 1.6, 5.0), target=(0.0, 0.9, 0.0), fov=np.deg2rad(45)),
        lights=(Light(direction=(0.3, 0.8, 0.52), intensity=1.0),), objects=(person,), room=None,
        wall_height=3.0, floor_tones=((0.6, 0.6, 0.6), (0.4, 0.4, 0.4)), checker=0.5, wall_tone=(0.7, 0.7, 0.7),
    )


def row_scene(classes: list[str], *, spacing: float = 1.6) -> Scene:
    """Objects of the given classes in a row across the view, large, matte, one colour each."""
    colors = ["red", "blue", "green", "yellow", "purple", "orange", "cyan", "pink", "white", "brown"]
    objs = []
    for k, cls in enumerate(classes):
        x = (k - (len(classes) - 1) / 2) * spacing
        pose = sample_pose(np.random.default_rng(k), "standing") if cls == "person" else None
        objs.append(Obj(cls=cls, color=colors[k % 10], size="large", material="matte", position=(x, 0.0),
                        yaw=0.4, radius=0.8, pose=pose))
    width = spacing * len(classes)
    return Scene(
        seed=0, index=0, camera=Camera(position=(0.0, 2.5, width * 0.9 + 2), target=(0.0, 0.5, 0.0),
                                       fov=np.deg2rad(55)),
        lights=(Light(direction=(0.4, 0.8, 0.45), intensity=1.0),), objects=tuple(objs), room=width + 6,
        wall_height=4.0, floor_tones=((0.6, 0.6, 0.6), (0.4, 0.4, 0.4)), checker=0.5, wall_tone=(0.78, 0.76, 0.72),
    )
