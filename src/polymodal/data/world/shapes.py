"""Ray intersections of the world's solids, vectorized over rays.

Every primitive has ``intersect(o, d) -> t`` and ``normal(p) -> n``. Rays are given component-wise: ``o`` and ``d``
are 3-tuples whose entries are scalars or arrays that broadcast together (a camera origin is three scalars, shadow
rays have array origins and one scalar direction). ``d`` is unit length, so ``t`` is a distance in metres;
misses are ``inf``. Components rather than (N, 3) arrays because every operation then runs on contiguous data,
which matters at a few thousand rays per call.

Each primitive also carries a bounding sphere (``center``, ``radius``) that the renderer uses to skip rays.
"""

from __future__ import annotations

import numpy as np

INF = np.inf
EPS = 1e-6


def _dot(a, b):
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def _sub(a, c):
    return a[0] - c[0], a[1] - c[1], a[2] - c[2]


def _unit(x, y, z):
    n = np.sqrt(x * x + y * y + z * z) + 1e-12
    return x / n, y / n, z / n


class Sphere:
    def __init__(self, center, radius: float):
        self.center, self.radius = np.asarray(center, np.float64), float(radius)
        self.bound = self.radius

    def intersect(self, o, d):
        oc = _sub(o, self.center)
        b = _dot(oc, d)
        disc = b * b - (_dot(oc, oc) - self.radius**2)
        t = -b - np.sqrt(np.maximum(disc, 0.0))
        return np.where((disc >= 0) & (t > EPS), t, INF)

    def normal(self, p):
        c, r = self.center, self.radius
        return (p[0] - c[0]) / r, (p[1] - c[1]) / r, (p[2] - c[2]) / r


class Capsule:
    """All points within ``radius`` of the segment ``a``-``b``."""

    def __init__(self, a, b, radius: float):
        self.a, self.b, self.radius = np.asarray(a, np.float64), np.asarray(b, np.float64), float(radius)
        self.center = (self.a + self.b) / 2
        self.bound = float(np.linalg.norm(self.b - self.a)) / 2 + self.radius

    def intersect(self, o, d):
        ba = self.b - self.a
        oa = _sub(o, self.a)
        baba, bard, baoa = float(ba @ ba), _dot(ba, d), _dot(ba, oa)
        rdoa, oaoa, r2 = _dot(d, oa), _dot(oa, oa), self.radius**2
        # Infinite cylinder around the axis, then the body part of the hit; otherwise the cap spheres.
        qa = baba - bard * bard
        qb = baba * rdoa - baoa * bard
        qc = baba * oaoa - baoa * baoa - r2 * baba
        h = qb * qb - qa * qc
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (-qb - np.sqrt(np.maximum(h, 0.0))) / qa
        y = baoa + t * bard
        body = (h >= 0) & (qa > 1e-12) & (y > 0) & (y < baba) & (t > EPS)
        # A ray that misses the infinite cylinder misses the caps too; one that meets it past an end can only
        # enter through that end's sphere: one sphere test per ray, not two.
        # With ob = oa - ba: d.ob = rdoa - bard and |ob|^2 = oaoa - 2 baoa + baba, from what is already known.
        end = y > 0
        bb = np.where(end, rdoa - bard, rdoa)
        hh = bb * bb - (np.where(end, oaoa - 2 * baoa + baba, oaoa) - r2)
        tc = -bb - np.sqrt(np.maximum(hh, 0.0))
        return np.where(body, t, np.where((h >= 0) & (hh >= 0) & (tc > EPS), tc, INF))

    def normal(self, p):
        ba = self.b - self.a
        pa = _sub(p, self.a)
        s = np.clip(_dot(pa, ba) / float(ba @ ba), 0.0, 1.0)
        return _unit(pa[0] - s * ba[0], pa[1] - s * ba[1], pa[2] - s * ba[2])


class CapsuleSet:
    """Several capsules (a sphere is a capsule of zero length) intersected in one pass: (..., K) arrays.

    A person is ten such parts; one call with a trailing axis of ten costs about what one capsule does, where ten
    calls cost ten times the per-call overhead that dominates at a few hundred rays.
    """

    def __init__(self, parts: list):
        self.a = np.stack([p.a if isinstance(p, Capsule) else p.center for p in parts])  # (K, 3)
        self.b = np.stack([p.b if isinstance(p, Capsule) else p.center for p in parts])
        self.r2 = np.array([p.radius for p in parts]) ** 2
        self.ba = self.b - self.a
        self.baba = (self.ba * self.ba).sum(axis=1)

    def intersect_which(self, o, d) -> tuple[np.ndarray, np.ndarray]:
        """First hit distance (inf = miss) and the index of the part hit, both shaped like the rays."""
        ba, baba, r2 = self.ba, self.baba, self.r2
        o = [np.asarray(c, np.float64)[..., None] for c in o]
        d = [np.asarray(c, np.float64)[..., None] for c in d]
        oa = [o[i] - self.a[:, i] for i in range(3)]
        bard = d[0] * ba[:, 0] + d[1] * ba[:, 1] + d[2] * ba[:, 2]
        baoa = oa[0] * ba[:, 0] + oa[1] * ba[:, 1] + oa[2] * ba[:, 2]
        rdoa = d[0] * oa[0] + d[1] * oa[1] + d[2] * oa[2]
        oaoa = oa[0] * oa[0] + oa[1] * oa[1] + oa[2] * oa[2]
        qa = baba - bard * bard
        qb = baba * rdoa - baoa * bard
        h = qb * qb - qa * (baba * oaoa - baoa * baoa - r2 * baba)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (-qb - np.sqrt(np.maximum(h, 0.0))) / qa
            y = baoa + t * bard
        body = (h >= 0) & (qa > 1e-12) & (y > 0) & (y < baba) & (t > EPS)
        end = y > 0  # see Capsule.intersect; a zero-length part (sphere) always takes its one cap
        bb = np.where(end, rdoa - bard, rdoa)
        hh = bb * bb - (np.where(end, oaoa - 2 * baoa + baba, oaoa) - r2)
        tc = -bb - np.sqrt(np.maximum(hh, 0.0))
        t_all = np.where(body, t, np.where((h >= 0) & (hh >= 0) & (tc > EPS), tc, INF))
        which = t_all.argmin(axis=-1)
        return np.take_along_axis(t_all, which[..., None], axis=-1)[..., 0], which

    def intersect(self, o, d) -> np.ndarray:
        return self.intersect_which(o, d)[0]


class Cylinder:
    """Upright cylinder standing on the floor: axis through (x, z), from y = 0 to ``height``."""

    def __init__(self, x: float, z: float, radius: float, height: float):
        self.x, self.z, self.radius, self.height = float(x), float(z), float(radius), float(height)
        self.center = np.array([x, height / 2, z])
        self.bound = float(np.hypot(radius, height / 2))

    def intersect(self, o, d):
        ox, oy, oz = o[0] - self.x, o[1], o[2] - self.z
        a = d[0] * d[0] + d[2] * d[2]
        b = ox * d[0] + oz * d[2]
        c = ox * ox + oz * oz - self.radius**2
        h = b * b - a * c
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (-b - np.sqrt(np.maximum(h, 0.0))) / a
            y = oy + t * d[1]
            side = (h >= 0) & (a > 1e-12) & (y >= 0) & (y <= self.height) & (t > EPS)
            tc = (self.height - oy) / d[1]
        cx, cz = ox + tc * d[0], oz + tc * d[2]
        cap = (tc > EPS) & (cx * cx + cz * cz <= self.radius**2)
        return np.minimum(np.where(side, t, INF), np.where(cap, tc, INF))

    def normal(self, p):
        top = p[1] >= self.height - 1e-6
        nx, nz = (p[0] - self.x) / self.radius, (p[2] - self.z) / self.radius
        return np.where(top, 0.0, nx), np.where(top, 1.0, 0.0), np.where(top, 0.0, nz)


class Cone:
    """Upright cone on the floor: base radius ``radius`` at y = 0, apex at y = ``height``."""

    def __init__(self, x: float, z: float, radius: float, height: float):
        self.x, self.z, self.radius, self.height = float(x), float(z), float(radius), float(height)
        self.k2 = (radius / height) ** 2
        self.center = np.array([x, height / 2, z])
        self.bound = float(np.hypot(radius, height / 2))

    def intersect(self, o, d):
        ox, oz, hy = o[0] - self.x, o[2] - self.z, self.height - o[1]
        k2 = self.k2
        a = d[0] * d[0] + d[2] * d[2] - k2 * d[1] * d[1]
        b = ox * d[0] + oz * d[2] + k2 * hy * d[1]
        c = ox * ox + oz * oz - k2 * hy * hy
        h = b * b - a * c
        sq = np.sqrt(np.maximum(h, 0.0))
        best = INF
        with np.errstate(divide="ignore", invalid="ignore"):
            for t in ((-b - sq) / a, (-b + sq) / a):
                y = o[1] + t * d[1]
                ok = (h >= 0) & (t > EPS) & (y >= 0) & (y <= self.height)
                best = np.minimum(best, np.where(ok, t, INF))
        return best

    def normal(self, p):
        return _unit(p[0] - self.x, self.k2 * (self.height - p[1]), p[2] - self.z)


class Convex:
    """Intersection of half-spaces ``n . q <= w`` in a local frame turned by ``yaw`` about y and moved to
    ``origin`` (cubes and pyramids). ``planes`` is a (P, 4) array of rows (nx, ny, nz, w) with unit normals."""

    def __init__(self, origin, yaw: float, planes: np.ndarray, bound: float, center_local):
        self.origin, self.planes = np.asarray(origin, np.float64), np.asarray(planes, np.float64)
        c, s = np.cos(yaw), np.sin(yaw)
        self.rot = np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])  # local -> world
        self.center = self.origin + self.rot @ np.asarray(center_local, np.float64)
        self.bound = float(bound)
        # Plane normals in the world frame, and offsets w' = w + n_world . origin.
        self.wn = self.planes[:, :3] @ self.rot.T
        self.ww = self.planes[:, 3] + self.wn @ self.origin

    def intersect(self, o, d):
        # All planes at once: (..., P) arrays of the rays' slopes and distances to each plane.
        den, dist = self._project(d), self.ww - self._project(o)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = dist / den
        t_in = np.where(den < 0, t, -INF).max(axis=-1)
        t_out = np.where(den > 0, t, INF).min(axis=-1)
        valid = ((den != 0) | (dist >= 0)).all(axis=-1)  # parallel to a plane and outside it: a miss
        return np.where(valid & (t_in <= t_out) & (t_in > EPS), t_in, INF)

    def _project(self, v) -> np.ndarray:
        """Dot products of the vector(s) ``v`` (components) with every plane normal: (..., P)."""
        if all(np.ndim(c) == 0 for c in v):
            return self.wn @ np.array([float(c) for c in v])
        x, y, z = v
        if not (np.shape(x) == np.shape(y) == np.shape(z)):
            x, y, z = np.broadcast_arrays(x, y, z)
        return np.stack([x, y, z], axis=-1) @ self.wn.T

    def normal(self, p):
        # The face a surface point lies on is the plane it is closest to (largest signed distance).
        dist = np.stack([nx * p[0] + ny * p[1] + nz * p[2] - w for (nx, ny, nz), w in zip(self.wn, self.ww)])
        k = np.argmax(dist, axis=0)
        return self.wn[k, 0], self.wn[k, 1], self.wn[k, 2]


def box(x: float, z: float, half: float, yaw: float) -> Convex:
    """A cube of side ``2 half`` resting on the floor at (x, z)."""
    eye = np.eye(3)
    planes = [(*eye[i] * s, half if i != 1 else (2 * half if s > 0 else 0.0)) for i in range(3) for s in (1, -1)]
    return Convex((x, 0.0, z), yaw, np.array(planes), half * np.sqrt(3), (0.0, half, 0.0))


def pyramid(x: float, z: float, half: float, height: float, yaw: float) -> Convex:
    """A square pyramid: base ``2 half`` wide on the floor, apex ``height`` above (x, z)."""
    planes = [(0.0, -1.0, 0.0, 0.0)]
    n = np.array([height, half, 0.0]) / np.hypot(height, half)  # side face normal for the +x face
    for nx, nz in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        normal = np.array([nx * n[0], n[1], nz * n[0]])
        planes.append((*normal, n[1] * height))  # every side face passes through the apex (0, height, 0)
    bound = max(np.hypot(half * np.sqrt(2), height / 2), height / 2)
    return Convex((x, 0.0, z), yaw, np.array(planes), bound, (0.0, height / 2, 0.0))


class Torus:
    """A torus lying on the floor (axis vertical): ring radius ``major``, tube radius ``minor``.

    The quartic is solved numerically: the ray's stretch through the slab ``|y - minor| <= minor`` is sampled
    at `SAMPLES` points at once (one array op per step of the formula, not a sequential march), the first sign
    change of the signed distance is found, and a few Illinois regula falsi steps refine it. A chord thinner than
    the sample spacing (a grazing ray at the silhouette) can be missed; at the world's resolutions that is under a
    pixel.
    """

    SAMPLES = 16

    def __init__(self, x: float, z: float, major: float, minor: float):
        self.x, self.z, self.major, self.minor = float(x), float(z), float(major), float(minor)
        self.center = np.array([x, minor, z])
        self.bound = self.major + self.minor

    def _sdf(self, px, py, pz):
        q = np.sqrt(px * px + pz * pz) - self.major
        return np.sqrt(q * q + py * py) - self.minor

    def intersect(self, o, d):
        ox, oy, oz, dx, dy, dz = np.broadcast_arrays(o[0] - self.x, o[1] - self.minor, o[2] - self.z, *d)
        shape = ox.shape
        ox, oy, oz, dx, dy, dz = (np.ravel(a) for a in (ox, oy, oz, dx, dy, dz))
        # Ray span inside the bounding sphere, clipped to the slab holding the tube.
        b = ox * dx + oy * dy + oz * dz
        h = b * b - (ox * ox + oy * oy + oz * oz - self.bound**2)
        sq = np.sqrt(np.maximum(h, 0.0))
        t0, t1 = -b - sq, -b + sq
        with np.errstate(divide="ignore", invalid="ignore"):
            ta, tb = (-self.minor - oy) / dy, (self.minor - oy) / dy
        flat = np.abs(dy) < 1e-12
        t0 = np.where(flat, t0, np.maximum(t0, np.minimum(ta, tb)))
        t1 = np.where(flat, t1, np.minimum(t1, np.maximum(ta, tb)))
        t0 = np.maximum(t0, EPS)
        live = (h > 0) & (t1 > t0)
        out = np.full(ox.shape, INF)
        if not live.any():
            return out.reshape(shape)
        idx = np.flatnonzero(live)
        ox, oy, oz, dx, dy, dz, t0, t1 = (a[idx] for a in (ox, oy, oz, dx, dy, dz, t0, t1))
        ts = t0[:, None] + (t1 - t0)[:, None] * np.linspace(0.0, 1.0, self.SAMPLES)[None, :]
        f = self._sdf(ox[:, None] + ts * dx[:, None], oy[:, None] + ts * dy[:, None], oz[:, None] + ts * dz[:, None])
        neg = f <= 0
        hit = neg.any(axis=1)
        if not hit.any():
            return out.reshape(shape)
        first = np.argmax(neg, axis=1)
        rows = np.flatnonzero(hit)
        k = first[rows]
        hi_t, hi_f = ts[rows, k], f[rows, k]
        prev = np.maximum(k - 1, 0)
        lo_t, lo_f = ts[rows, prev], f[rows, prev]
        sel = (ox[rows], oy[rows], oz[rows], dx[rows], dy[rows], dz[rows])
        side = np.zeros(len(rows), np.int8)
        for _ in range(4):  # Illinois regula falsi: keeps the bracket, halves a stale end to avoid stalling
            with np.errstate(divide="ignore", invalid="ignore"):
                tm = np.where(hi_f < lo_f, (lo_t * hi_f - hi_t * lo_f) / (hi_f - lo_f), hi_t)
            fm = self._sdf(sel[0] + tm * sel[3], sel[1] + tm * sel[4], sel[2] + tm * sel[5])
            below = fm <= 0
            hi_t, hi_f = np.where(below, tm, hi_t), np.where(below, fm, hi_f)
            lo_t, lo_f = np.where(below, lo_t, tm), np.where(below, lo_f, fm)
            lo_f = np.where(below & (side == 1), lo_f * 0.5, lo_f)
            hi_f = np.where(~below & (side == -1), hi_f * 0.5, hi_f)
            side = np.where(below, 1, -1).astype(np.int8)
        out[idx[rows]] = hi_t
        return out.reshape(shape)

    def normal(self, p):
        px, py, pz = p[0] - self.x, p[1] - self.minor, p[2] - self.z
        rho = np.sqrt(px * px + pz * pz) + 1e-12
        s = 1.0 - self.major / rho
        return _unit(px * s, py, pz * s)
