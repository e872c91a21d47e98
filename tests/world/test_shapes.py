"""Ray-primitive intersections: hits lie on the surface, normals are unit and face the ray, misses are inf."""

from __future__ import annotations

import numpy as np
import pytest

from polymodal.data.world import shapes


def _segment_distance(p, a, b):
    ba = b - a
    s = np.clip(((p - a) @ ba) / (ba @ ba), 0, 1)
    return np.linalg.norm(p - (a + s[:, None] * ba), axis=1)


def _cases():
    a, b = np.array([0.2, 0.3, -0.1]), np.array([0.9, 1.1, 0.4])
    box = shapes.box(0.1, -0.2, 0.5, 0.7)
    pyr = shapes.pyramid(-0.1, 0.1, 0.6, 1.0, 0.3)
    return {
        "sphere": (shapes.Sphere((0.1, 0.5, 0.0), 0.5), lambda p: np.linalg.norm(p - (0.1, 0.5, 0.0), axis=1) - 0.5),
        "capsule": (shapes.Capsule(a, b, 0.25), lambda p: _segment_distance(p, a, b) - 0.25),
        "cylinder": (shapes.Cylinder(0.2, -0.1, 0.4, 1.2),
                     lambda p: np.maximum(np.hypot(p[:, 0] - 0.2, p[:, 2] + 0.1) - 0.4, p[:, 1] - 1.2)),
        "cone": (shapes.Cone(0.0, 0.0, 0.5, 1.1), None),
        "torus": (shapes.Torus(0.0, 0.1, 0.5, 0.18),
                  lambda p: np.hypot(np.hypot(p[:, 0], p[:, 2] - 0.1) - 0.5, p[:, 1] - 0.18) - 0.18),
        "cube": (box, lambda p: np.max(p @ box.wn.T - box.ww, axis=1)),
        "pyramid": (pyr, lambda p: np.max(p @ pyr.wn.T - pyr.ww, axis=1)),
    }


def _rays_at(center, n=400, seed=0):
    """Rays from points on a sphere of radius 4 around ``center`` aimed at jittered points near it."""
    rng = np.random.default_rng(seed)
    o = rng.normal(size=(n, 3))
    o = o / np.linalg.norm(o, axis=1, keepdims=True) * 4 + center
    o[:, 1] = np.abs(o[:, 1] - center[1]) + center[1] + 0.5  # from above the floor, like every camera
    target = center + rng.uniform(-0.7, 0.7, size=(n, 3))
    d = target - o
    return o, d / np.linalg.norm(d, axis=1, keepdims=True)


@pytest.mark.parametrize("name", list(_cases()))
def test_hits_lie_on_the_surface_with_facing_unit_normals(name):
    prim, sdf = _cases()[name]
    o, d = _rays_at(prim.center)
    t = prim.intersect(tuple(o.T), tuple(d.T))
    hit = np.isfinite(t)
    assert 0.1 < hit.mean() < 1.0, f"{name}: rays aimed near the solid should partly hit it ({hit.mean():.2f})"
    p = o[hit] + t[hit, None] * d[hit]
    if sdf is not None:
        assert np.abs(sdf(p)).max() < 2e-3, f"{name}: hit points are off the surface"
    n = np.stack(prim.normal(tuple(p.T)), axis=1)
    assert np.allclose(np.linalg.norm(n, axis=1), 1, atol=1e-6)
    assert ((n * d[hit]).sum(axis=1) < 1e-9).all(), f"{name}: a normal points away from the viewer"
    # The hit is the first crossing: the ray's points just before it are outside the bounding sphere or solid.
    if sdf is not None:
        before = o[hit] + (t[hit, None] - 1e-3) * d[hit]
        assert (sdf(before) > -1e-4).all()


@pytest.mark.parametrize("name", list(_cases()))
def test_rays_pointing_away_miss(name):
    prim, _ = _cases()[name]
    o, d = _rays_at(prim.center, seed=1)
    t = prim.intersect(tuple(o.T), tuple((-d).T))
    assert np.isinf(t).all()


def test_shadow_rays_share_one_direction():
    """A scalar direction with array origins (the renderer's shadow rays) gives the per-ray answer."""
    prim = shapes.Capsule((0, 0.3, 0), (0.5, 1.0, 0.2), 0.2)
    o, d = _rays_at(prim.center, n=50, seed=3)
    one = d[0]
    joint = prim.intersect(tuple(o.T), tuple(one))
    single = np.array([prim.intersect(tuple(oi), tuple(one)) for oi in o])
    assert np.array_equal(np.isfinite(joint), np.isfinite(single))
    assert np.allclose(joint[np.isfinite(joint)], single[np.isfinite(single)])


def test_a_capsule_set_is_the_union_of_its_parts():
    """The person's one-pass intersection gives each ray the nearest of its parts, and which part that is."""
    parts = [shapes.Sphere((0.0, 1.6, 0.0), 0.11), shapes.Capsule((0, 0.9, 0), (0, 1.45, 0.05), 0.15),
             shapes.Capsule((0.2, 1.4, 0), (0.45, 1.3, 0.1), 0.05),
             shapes.Capsule((0.1, 0.9, 0), (0.1, 0.1, 0.2), 0.07)]
    group = shapes.CapsuleSet(parts)
    o, d = _rays_at(np.array([0.1, 1.0, 0.0]), n=600, seed=5)
    t, which = group.intersect_which(tuple(o.T), tuple(d.T))
    each = np.stack([p.intersect(tuple(o.T), tuple(d.T)) for p in parts], axis=1)
    assert np.isfinite(t).sum() > 60, "enough rays hit the body to compare"
    assert np.array_equal(np.isinf(t), np.isinf(each.min(axis=1)))
    hit = np.isfinite(t)
    assert np.allclose(t[hit], each.min(axis=1)[hit], atol=1e-9)
    assert np.array_equal(which[hit], each.argmin(axis=1)[hit])
    # Shadow-style rays: array origins, one direction.
    t_shadow = group.intersect(tuple(o.T), tuple(d[0]))
    each = np.stack([p.intersect(tuple(o.T), tuple(d[0])) for p in parts], axis=1).min(axis=1)
    assert np.array_equal(np.isinf(t_shadow), np.isinf(each))
