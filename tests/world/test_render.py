"""The renderer's maps agree with each other and with the scene; the world is deterministic."""

from __future__ import annotations

import json

import numpy as np
import pytest

from polymodal.data.world import render_sample, sample_scene
from polymodal.data.world.render import project, render
from polymodal.data.world.scene import FLOOR, OBJECT_CLASSES, SEMSEG_CLASSES, SKY, WALL

from .helpers import RES, row_scene, samples


def _camera_points(depth: np.ndarray, fov: float) -> np.ndarray:
    """Back-project a depth map to camera-frame points (x right, y up, z towards the viewer): (H, W, 3)."""
    res = depth.shape[0]
    c = (np.arange(res) + 0.5) / res * 2 - 1
    tan = np.tan(fov / 2)
    x, y = np.meshgrid(c * tan, -c * tan)
    return np.stack([x * depth, y * depth, -depth], axis=-1)


@pytest.mark.parametrize("index", range(6))
def test_normals_agree_with_depth_gradients_on_flat_surfaces(index):
    s = samples()[index]
    pts = _camera_points(s["depth"].astype(np.float64), s["scene"]["camera"]["fov"])
    n = s["normal"].astype(np.float64)
    # A pixel is on a flat patch when it and its right and lower neighbours share a surface and its normal.
    same = (s["semseg"][:-1, :-1] == s["semseg"][1:, :-1]) & (s["semseg"][:-1, :-1] == s["semseg"][:-1, 1:])
    same &= (s["instance"][:-1, :-1] == s["instance"][1:, :-1]) & (s["instance"][:-1, :-1] == s["instance"][:-1, 1:])
    flat = (np.abs(n[:-1, :-1] - n[1:, :-1]).max(-1) < 1e-5) & (np.abs(n[:-1, :-1] - n[:-1, 1:]).max(-1) < 1e-5)
    ok = same & flat & (s["semseg"][:-1, :-1] != SKY)
    assert ok.sum() > 0.3 * ok.size, "most of an image is floor, walls and flat faces"
    right = pts[:-1, 1:] - pts[:-1, :-1]
    down = pts[1:, :-1] - pts[:-1, :-1]
    from_depth = np.cross(down, right)[ok]
    from_depth /= np.linalg.norm(from_depth, axis=-1, keepdims=True)
    cos = (from_depth * n[:-1, :-1][ok]).sum(-1)
    assert cos.min() > 0.999, f"depth and normals disagree: min cosine {cos.min():.5f}"


def test_normals_are_unit_and_face_the_camera():
    for s in samples():
        surface = s["semseg"] != SKY
        length = np.linalg.norm(s["normal"], axis=-1)
        assert np.allclose(length[surface], 1, atol=1e-4)
        assert (length[~surface] == 0).all() and (s["depth"][~surface] == 0).all()
        assert (s["depth"][surface] > 0).all()
        # A visible surface faces the viewer: its normal points back along the view ray.
        pts = _camera_points(s["depth"].astype(np.float64), s["scene"]["camera"]["fov"])
        assert ((pts * s["normal"]).sum(-1)[surface] < 1e-6).all()


def test_semantic_and_instance_maps_agree():
    for s in samples():
        sem, inst = s["semseg"], s["instance"]
        thing = sem >= len(SEMSEG_CLASSES) - len(OBJECT_CLASSES)
        assert np.array_equal(thing, inst > 0), "object classes exactly where instances are"
        for obj_id in np.unique(inst[inst > 0]):
            cls = s["scene"]["objects"][obj_id - 1]["class"]
            assert (sem[inst == obj_id] == SEMSEG_CLASSES.index(cls)).all()
        assert set(np.unique(sem[~thing])) <= {SKY, WALL, FLOOR}
        if s["scene"]["room"] is None:
            assert not (sem == WALL).any()


def test_every_class_renders_where_it_stands():
    """Each object class is drawn at its projected position, with its own class and instance id."""
    classes = list(OBJECT_CLASSES)
    scene = row_scene(classes)
    frame = render(scene, 96)
    for k, obj in enumerate(scene.objects):
        u, v, _ = project(scene, np.array([[obj.position[0], 0.3, obj.position[1]]]), 96)
        i, j = int(v[0]), int(u[0])
        assert frame.instance[i, j] == k + 1, f"{obj.cls} is not where it stands"
        assert SEMSEG_CLASSES[frame.semseg[i, j]] == obj.cls


def test_objects_cast_shadows_on_the_floor():
    """A light from the side: the floor beside the cube is darker than in the same scene without the cube."""
    from dataclasses import replace

    from polymodal.data.world.scene import Light

    scene = replace(row_scene(["cube"]), lights=(Light(direction=(0.8, 0.6, 0.0), intensity=1.0),))
    lit = render(replace(scene, objects=()), 64).rgb.astype(int)
    shaded = render(scene, 64)
    floor = shaded.semseg == FLOOR
    darker = (lit.sum(-1) - shaded.rgb.astype(int).sum(-1) > 30) & floor
    assert darker.sum() > 10, "the cube casts no shadow"


def test_same_seed_same_bytes_different_seed_differs():
    a, b = render_sample(5, 17, 40), render_sample(5, 17, 40)
    for key in a:
        if isinstance(a[key], np.ndarray):
            assert a[key].tobytes() == b[key].tobytes(), key
        else:
            assert json.dumps(a[key], sort_keys=True) == json.dumps(b[key], sort_keys=True), key
    c, d = render_sample(6, 17, 40), render_sample(5, 18, 40)
    assert not np.array_equal(a["rgb"], c["rgb"]) and not np.array_equal(a["rgb"], d["rgb"])
    assert a["scene"] != c["scene"]


def test_a_sample_depends_only_on_seed_and_index():
    """Rendering other samples first (or none) changes nothing: no hidden global state."""
    fresh = render_sample(3, 9, RES)
    for i in range(3):
        render_sample(1, i, RES)
    again = render_sample(3, 9, RES)
    assert np.array_equal(fresh["rgb"], again["rgb"])


def test_resolutions_scale_the_same_scene():
    small, big = render_sample(0, 4, 32), render_sample(0, 4, 96)
    assert small["rgb"].shape == (32, 32, 3) and big["rgb"].shape == (96, 96, 3)
    assert small["scene"] == big["scene"]
    # Class areas agree up to sampling: compare the big map pooled to 32 px with the small one.
    pooled = big["semseg"][1::3, 1::3]
    assert (pooled == small["semseg"]).mean() > 0.9


@pytest.mark.parametrize("res", [31, 0, 2000, 64.0, "64"])
def test_bad_resolution_is_refused(res):
    with pytest.raises(ValueError, match="resolution"):
        render_sample(0, 0, res)


@pytest.mark.parametrize("n", [0, 11, -1])
def test_bad_object_count_is_refused(n):
    with pytest.raises(ValueError, match="object count|n_objects"):
        render_sample(0, 0, 32, n_objects=n)


def test_object_counts_follow_the_request():
    for n in (1, 10):
        assert len(sample_scene(0, 5, n_objects=n).objects) == n
    counts = {len(sample_scene(0, i).objects) for i in range(200)}
    assert counts == set(range(1, 11))
