"""Analytic ray casting of a scene: RGB with shadows, and the exact geometry behind every pixel.

One primary ray per pixel centre (pixel ``(i, j)`` covers ``[j, j+1) x [i, i+1)`` in image coordinates, its
centre is ``(j + 0.5, i + 0.5)``), no anti-aliasing: every label is the geometry of the very point the colour
was computed at. Speed comes from culling: a primitive is only intersected with the rays in the screen rectangle
its bounding sphere projects to, and shadow rays only with the primitives whose bounding sphere they pass near.

Frames:
- world: metres, ``y`` up, floor ``y = 0``.
- camera (normals, 3D joints): ``x`` right, ``y`` up, ``z`` towards the viewer (OpenGL); a visible surface's
  normal has ``z > 0``, points in front of the camera have ``z < 0``.
- depth: distance along the optical axis (``-z`` of the camera frame) in metres; 0 where a ray hits nothing (sky).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .scene import FLOOR, SKY, WALL, Scene, semseg_id
from .shapes import Capsule, CapsuleSet, Sphere
from .solids import Solid, scene_solids

OPEN_FLOOR = 40.0  # half-size of the floor when there is no room: beyond it the ray sees the sky (metres)
AMBIENT = 0.28
SHININESS = 60.0
SKY_HORIZON, SKY_ZENITH = np.array([0.86, 0.90, 0.95]), np.array([0.32, 0.52, 0.85])
_GAMMA_LUT = (np.linspace(0.0, 1.0, 16385) ** (1 / 2.2) * 255 + 0.5).astype(np.uint8)
# Stuff codes in the solid-index map, below the solid indices 0..S-1.
_SKY, _WALL, _FLOOR = -3, -2, -1


@dataclass
class Frame:
    """What the renderer saw. All maps are (H, W[, 3]); ``amodal`` is (K, H, W) for the K objects."""

    rgb: np.ndarray  # uint8 (H, W, 3)
    depth: np.ndarray  # float32 (H, W), metres along the optical axis, 0 = sky
    normal: np.ndarray  # float32 (H, W, 3), unit, camera frame; 0 for sky
    semseg: np.ndarray  # uint8 (H, W), ids into scene.SEMSEG_CLASSES
    instance: np.ndarray  # uint8 (H, W), object index + 1, 0 = no object
    amodal: np.ndarray  # bool (K, H, W): pixels object k covers when nothing else is drawn


def camera_rays(scene: Scene, res: int) -> tuple[np.ndarray, ...]:
    """Unit ray directions through the pixel centres: three (res, res) arrays (world frame)."""
    r, u, f = scene.camera.frame()
    tan = np.tan(scene.camera.fov / 2)
    c = (np.arange(res) + 0.5) / res * 2 - 1
    x, y = np.meshgrid(c * tan, -c * tan)
    d = [x * r[i] + y * u[i] + f[i] for i in range(3)]
    n = np.sqrt(d[0] ** 2 + d[1] ** 2 + d[2] ** 2)
    return d[0] / n, d[1] / n, d[2] / n


def project(scene: Scene, points: np.ndarray, res: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World points (N, 3) -> continuous pixel coordinates (u right, v down) and camera-frame depth (N,)."""
    r, up, f = scene.camera.frame()
    rel = np.asarray(points, np.float64) - np.asarray(scene.camera.position)
    xc, yc, zc = rel @ r, rel @ up, rel @ f
    tan = np.tan(scene.camera.fov / 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (xc / zc / tan + 1) / 2 * res, (1 - yc / zc / tan) / 2 * res, zc


def _screen_rects(scene: Scene, solids: list[Solid], res: int) -> np.ndarray:
    """Pixel rectangles (S, 4) = (x0, x1, y0, y1), half-open, that hold every pixel a solid can cover."""
    if not solids:
        return np.zeros((0, 4), int)
    centers = np.stack([s.shape.center for s in solids])
    bounds = np.array([s.shape.bound for s in solids])
    signs = np.array([[a, b, c] for a in (-1, 1) for b in (-1, 1) for c in (-1, 1)], np.float64)
    corners = centers[:, None, :] + bounds[:, None, None] * signs[None]  # the cube around the bounding sphere
    u, v, z = project(scene, corners.reshape(-1, 3), res)
    u, v, z = u.reshape(-1, 8), v.reshape(-1, 8), z.reshape(-1, 8)
    behind = (z < 1e-3).any(axis=1)  # a corner behind the camera: no finite bound, use the whole image
    u = np.where(behind[:, None], np.nan, u)
    x0 = np.where(behind, 0, np.floor(np.nan_to_num(u.min(axis=1), nan=0)) - 1)
    x1 = np.where(behind, res, np.ceil(np.nan_to_num(u.max(axis=1), nan=res)) + 1)
    y0 = np.where(behind, 0, np.floor(np.nan_to_num(np.where(behind[:, None], 0, v).min(axis=1))) - 1)
    y1 = np.where(behind, res, np.ceil(np.nan_to_num(np.where(behind[:, None], 0, v).max(axis=1))) + 1)
    return np.clip(np.stack([x0, x1, y0, y1], axis=1), 0, res).astype(int)


def _background(scene: Scene, o, d) -> tuple[np.ndarray, np.ndarray]:
    """Distance and stuff code of the floor, walls and sky for every ray."""
    dx, dy, dz = d
    with np.errstate(divide="ignore", invalid="ignore"):
        t_floor = np.where(dy < -1e-9, -o[1] / dy, np.inf)
    code = np.full(dx.shape, _SKY, np.int16)
    t = np.full(dx.shape, np.inf)
    fx, fz = o[0] + t_floor * dx, o[2] + t_floor * dz
    half = scene.room if scene.room is not None else OPEN_FLOOR
    on_floor = np.isfinite(t_floor) & (np.abs(fx) <= half + 1e-6) & (np.abs(fz) <= half + 1e-6)
    t = np.where(on_floor, t_floor, t)
    code[on_floor] = _FLOOR
    if scene.room is not None:
        for axis, dcomp in ((0, dx), (2, dz)):
            for sign in (1.0, -1.0):
                with np.errstate(divide="ignore", invalid="ignore"):
                    tw = (sign * scene.room - o[axis]) / dcomp
                y = o[1] + tw * dy
                hit = (tw > 0) & (y >= 0) & (y <= scene.wall_height) & (tw < t)
                t = np.where(hit, tw, t)
                code[hit] = _WALL
    return t, code


def render(scene: Scene, res: int) -> Frame:
    """Render ``scene`` at ``res`` x ``res`` pixels."""
    solids = scene_solids(scene.objects)
    o = tuple(float(v) for v in scene.camera.position)
    d = camera_rays(scene, res)
    t, code = _background(scene, o, d)
    code = code.astype(np.int32)
    n_obj = len(scene.objects)
    amodal = np.zeros((n_obj, res, res), bool)

    rects = _screen_rects(scene, solids, res)
    groups = _groups(solids)
    for ks, capsules in groups:
        # A group of capsules (a person) is one pass over the union of its parts' rectangles; the rest, one each.
        passes = [(ks, capsules)] if capsules is not None else [([k], solids[k].shape) for k in ks]
        for part, shape in passes:
            r = rects[part]
            x0, x1, y0, y1 = r[:, 0].min(), r[:, 1].max(), r[:, 2].min(), r[:, 3].max()
            if x1 <= x0 or y1 <= y0:
                continue
            sub = (slice(y0, y1), slice(x0, x1))
            rays = (d[0][sub], d[1][sub], d[2][sub])
            if shape is capsules:
                tk, which = capsules.intersect_which(o, rays)
                idx = part[0] + which  # a group's solids are consecutive
            else:
                tk, idx = shape.intersect(o, rays), part[0]
            amodal[solids[part[0]].obj][sub] |= tk < np.inf
            closer = tk < t[sub]
            np.copyto(t[sub], tk, where=closer)
            np.copyto(code[sub], idx, where=closer)

    sky = code == _SKY
    tt = np.where(sky, 0.0, t)
    p = tuple(o[i] + tt * d[i] for i in range(3))
    nrm = [np.zeros((res, res)) for _ in range(3)]
    nrm[1][code == _FLOOR] = 1.0
    if scene.room is not None:  # walls face the room's centre
        wall = code == _WALL
        ax = np.abs(p[0]) >= np.abs(p[2])
        nrm[0][wall & ax] = -np.sign(p[0][wall & ax])
        nrm[2][wall & ~ax] = -np.sign(p[2][wall & ~ax])
    for k, (solid, (x0, x1, y0, y1)) in enumerate(zip(solids, rects)):
        sub = (slice(y0, y1), slice(x0, x1))
        mask = code[sub] == k
        if not mask.any():
            continue
        n = solid.shape.normal(tuple(c[sub][mask] for c in p))
        for i in range(3):
            nrm[i][sub][mask] = n[i]

    rgb = _shade(scene, solids, groups, code, p, nrm, d, tt, res)
    return Frame(
        rgb=rgb, depth=_depth(scene, tt, d), normal=_camera_normals(scene, nrm),
        semseg=_semseg(scene, solids, code), instance=_instances(solids, code), amodal=amodal,
    )


def _depth(scene: Scene, t: np.ndarray, d) -> np.ndarray:
    f = scene.camera.frame()[2]
    return (t * (d[0] * f[0] + d[1] * f[1] + d[2] * f[2])).astype(np.float32)


def _camera_normals(scene: Scene, nrm) -> np.ndarray:
    r, u, f = scene.camera.frame()
    out = np.stack([sum(nrm[i] * axis[i] for i in range(3)) for axis in (r, u, -f)], axis=-1)
    return out.astype(np.float32)


def _semseg(scene: Scene, solids: list[Solid], code: np.ndarray) -> np.ndarray:
    lut = np.array([SKY, WALL, FLOOR] + [semseg_id(scene.objects[s.obj].cls) for s in solids], np.uint8)
    return lut[code + 3]


def _instances(solids: list[Solid], code: np.ndarray) -> np.ndarray:
    lut = np.array([0, 0, 0] + [s.obj + 1 for s in solids], np.uint8)
    return lut[code + 3]


def _groups(solids: list[Solid]) -> list[tuple[list[int], CapsuleSet | None]]:
    """Solids by object: (solid indices, a `CapsuleSet` when the object is several capsules and spheres)."""
    by_obj: dict[int, list[int]] = {}
    for k, s in enumerate(solids):
        by_obj.setdefault(s.obj, []).append(k)
    out = []
    for ks in by_obj.values():
        parts = [solids[k].shape for k in ks]
        capsule_like = len(ks) > 1 and all(isinstance(p, (Capsule, Sphere)) for p in parts)
        out.append((ks, CapsuleSet(parts) if capsule_like else None))
    return out


def _shade(scene: Scene, solids: list[Solid], groups, code, p, nrm, d, t, res) -> np.ndarray:
    """Lambert + Blinn-Phong with ray-traced shadows and a sky gradient, then sRGB gamma: uint8 (H, W, 3)."""
    albedo = np.array([(0, 0, 0), scene.wall_tone, (0, 0, 0)] + [s.albedo for s in solids], np.float64)[code + 3]
    shiny = np.array([False, False, False] + [s.shiny for s in solids])[code + 3]
    floor = code == _FLOOR
    if floor.any():
        # Checker tiles, faded to their mean where a pixel spans more than a few tiles (no moire at the horizon).
        fx, fz = p[0][floor], p[2][floor]
        parity = ((np.floor(fx / scene.checker) + np.floor(fz / scene.checker)) % 2).astype(bool)
        tones = np.array(scene.floor_tones)
        tile = np.where(parity[:, None], tones[1], tones[0])
        footprint = t[floor] * 2 * np.tan(scene.camera.fov / 2) / res
        w = np.clip(2.0 - 4.0 * footprint / scene.checker, 0.0, 1.0)[:, None]
        albedo[floor] = w * tile + (1 - w) * tones.mean(axis=0)
    light = AMBIENT + 0.12 * nrm[1]  # brighter when facing the open sky above
    spec = np.zeros_like(light)
    shiny_idx = np.flatnonzero(shiny)
    for lt in scene.lights:
        ld = lt.direction
        ndl = np.maximum(nrm[0] * ld[0] + nrm[1] * ld[1] + nrm[2] * ld[2], 0.0)
        vis = _visibility(solids, groups, p, nrm, ld, (ndl > 0) & (code != _SKY))
        light += lt.intensity * ndl * vis
        if len(shiny_idx):  # Blinn-Phong highlights on the shiny pixels only
            n_s = [c.ravel()[shiny_idx] for c in nrm]
            h = [ld[i] - d[i].ravel()[shiny_idx] for i in range(3)]
            hn = np.sqrt(h[0] * h[0] + h[1] * h[1] + h[2] * h[2]) + 1e-12
            ndh = np.maximum((n_s[0] * h[0] + n_s[1] * h[1] + n_s[2] * h[2]) / hn, 0.0)
            spec.ravel()[shiny_idx] += 0.7 * lt.intensity * ndh**SHININESS * vis.ravel()[shiny_idx]
    color = albedo * light[..., None] + spec[..., None]
    sky = code == _SKY
    if sky.any():
        k = np.clip(d[1][sky] * 2.5, 0.0, 1.0)[:, None]
        color[sky] = (1 - k) * SKY_HORIZON + k * SKY_ZENITH
    # sRGB-like gamma through a table: a power per channel and pixel costs more than the rest of the shading.
    levels = len(_GAMMA_LUT) - 1
    return _GAMMA_LUT[(np.clip(color, 0.0, 1.0) * levels + 0.5).astype(np.intp)]


def _visibility(solids: list[Solid], groups, p, nrm, ld, need: np.ndarray) -> np.ndarray:
    """1 where the surface point sees the light ``ld`` (directional), 0 in shadow; (H, W) float.

    Culling: points are expressed in a frame (a, b, l) whose l axis points to the light. A solid can only shadow
    points whose (a, b) fall within its bounding radius of the solid's (a, b), and that are not in front of it
    along l. Points are sorted by a once, so each object finds its candidates by binary search.
    """
    vis = np.ones(need.shape)
    idx = np.flatnonzero(need)
    if not len(idx) or not solids:
        return vis
    eps = 1e-3  # start shadow rays just off the surface so they do not hit it
    pts = np.stack([p[i].ravel()[idx] + eps * nrm[i].ravel()[idx] for i in range(3)], axis=1)
    l_ax = np.asarray(ld, np.float64)
    a_ax = np.cross(l_ax, (0.0, 0.0, 1.0) if abs(l_ax[2]) < 0.9 else (1.0, 0.0, 0.0))
    a_ax /= np.linalg.norm(a_ax)
    frame = np.stack([a_ax, np.cross(l_ax, a_ax), l_ax], axis=1)
    pa, pb, pl = (pts @ frame).T
    order = np.argsort(pa, kind="stable")
    pa_sorted = pa[order]
    blocked = np.zeros(len(idx), bool)
    centers = np.stack([s.shape.center for s in solids]) @ frame  # (S, 3) in the light frame
    radii = np.array([s.shape.bound for s in solids])
    for ks, capsules in groups:
        lo_a, hi_a = (centers[ks, 0] - radii[ks]).min(), (centers[ks, 0] + radii[ks]).max()
        lo, hi = np.searchsorted(pa_sorted, [lo_a, hi_a])
        if hi <= lo:
            continue
        cand = order[lo:hi]
        for k in ([ks] if capsules is not None else ks):
            c, r = centers[k], radii[k]
            if capsules is not None:  # the union of the parts' boxes
                lo_c, hi_c = c - r[:, None], c + r[:, None]
                keep = ((pb[cand] > lo_c[:, 1].min()) & (pb[cand] < hi_c[:, 1].max())
                        & (pl[cand] < hi_c[:, 2].max()))
            else:
                keep = (np.abs(pa[cand] - c[0]) < r) & (np.abs(pb[cand] - c[1]) < r) & (pl[cand] < c[2] + r)
            sel = cand[keep]
            sel = sel[~blocked[sel]]
            if len(sel):
                shape = capsules if capsules is not None else solids[k].shape
                t = shape.intersect((pts[sel, 0], pts[sel, 1], pts[sel, 2]), ld)
                blocked[sel[t < np.inf]] = True
    vis.ravel()[idx[blocked]] = 0.0
    return vis
