"""Colours of value pictures: a perceptual colormap, depth, normals, class ids, feature maps.

Every function takes one item (no batch axis) as a numpy array or a tensor and returns an (H, W, 3) uint8 array.
The colormap is viridis as a degree-6 polynomial fit (lightness rises monotonically from dark blue to yellow), so
the package needs no matplotlib at draw time and the colours are the same on every platform.
"""

from __future__ import annotations

import colorsys

import numpy as np
import torch

# Viridis as 7 polynomial coefficients per channel (c0 + c1 t + ... + c6 t^6), fitted to matplotlib's table; the
# fit is within 4/255 of the table at every one of its 256 entries (tests/viz checks a few of them).
_VIRIDIS = np.array([
    (0.2777273272234177, 0.005407344544966578, 0.3340998053353061),
    (0.1050930431085774, 1.404613529898575, 1.384590162594685),
    (-0.3308618287255563, 0.214847559468213, 0.09509516302823659),
    (-4.634230498983486, -5.799100973351585, -19.33244095627987),
    (6.228269936347081, 14.17993336680509, 56.69055260068105),
    (4.776384997670288, -13.74514537774601, -65.35303263337234),
    (-5.435455855934631, 4.645852612178535, 26.3124352495832),
])
# 256 entries: drawing looks the table up instead of evaluating the polynomial per pixel.
_VIRIDIS_LUT = np.clip(np.polynomial.polynomial.polyval(np.linspace(0, 1, 256), _VIRIDIS).T, 0, 1)
VIRIDIS_LUT = np.round(_VIRIDIS_LUT * 255).astype(np.uint8)  # (256, 3)

# The built-in world's classes (sky, wall, floor, then objects) keep their preview colours; further ids get
# golden-ratio hues, so any class count has a fixed, well-spread palette.
_WORLD_CLASS_COLORS = (
    (135, 190, 235), (150, 140, 120), (90, 90, 90),
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240),
    (240, 50, 230),
)


def to_numpy(x) -> np.ndarray:
    """A tensor (any device or dtype) or array-like as a numpy array."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def colormap(x, *, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """Scalars (...,) -> viridis colours (..., 3) uint8; ``lo``/``hi`` default to the finite min and max.

    NaN maps to black. A constant input maps to the low end of the colormap.
    """
    a = to_numpy(x).astype(np.float64)
    finite = np.isfinite(a)
    if lo is None or hi is None:
        vals = a[finite]
        lo = float(vals.min()) if lo is None and vals.size else (0.0 if lo is None else lo)
        hi = float(vals.max()) if hi is None and vals.size else (1.0 if hi is None else hi)
    t = np.clip((np.where(finite, a, lo) - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
    out = VIRIDIS_LUT[np.round(t * 255).astype(np.int64)]
    out[~finite] = 0
    return out


def robust_range(values, *, low: float = 2.0, high: float = 98.0, spread: float = 4.0) -> tuple[float, float]:
    """(lo, hi) of positive ``values`` for a colour scale that stray values cannot crush: the ``low``-th and
    ``high``-th percentiles of the values within ``spread`` robust standard deviations (MAD-based) of the median,
    in log space.

    Why both steps: a decoded depth map can hold a few percent of near-zero values (5% in one of the default
    model's generated scenes), too many for percentiles alone to drop; in log space they lie far from the median,
    the real surfaces (a scene's 1-20 m) within a few deviations of it. Non-positive and non-finite values are
    ignored; (1, 1) when none is left.
    """
    v = to_numpy(values).astype(np.float64).reshape(-1)
    v = v[np.isfinite(v) & (v > 0)]
    if v.size == 0:
        return 1.0, 1.0
    log = np.log(v)
    med = np.median(log)
    # The MAD scaled to a normal's standard deviation, at least 0.25 (a factor of e at 4 deviations): a scene that
    # is mostly one flat wall must not clip a real object in front of it.
    sigma = max(1.4826 * float(np.median(np.abs(log - med))), 0.25)
    kept = v[np.abs(log - med) <= spread * sigma]
    lo, hi = np.percentile(kept, [low, high])
    return float(lo), float(hi)


def depth_rgb(depth, *, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """Depth (H, W) metres (0 = no surface) -> (H, W, 3): inverse depth through viridis, near = bright, sky black.

    Inverse depth spreads the colours over near surfaces, where the detail is; ``lo``/``hi`` (metres) fix the
    range across pictures. The default range is this picture's `robust_range` of valid depths, so that a few
    near-zero predictions cannot turn every real surface into one dark colour; depths outside it take the end
    colours.
    """
    d = to_numpy(depth).astype(np.float64)
    if d.ndim == 3 and d.shape[0] == 1:
        d = d[0]
    if d.ndim != 2:
        raise ValueError(f"depth picture: expected (H, W) depth, got shape {d.shape}")
    valid = np.isfinite(d) & (d > 0)
    if lo is None or hi is None:
        r_lo, r_hi = robust_range(d[valid])
        lo, hi = (r_lo if lo is None else lo), (r_hi if hi is None else hi)
    inv = np.where(valid, 1.0 / np.where(valid, d, 1.0), np.nan)
    out = colormap(inv, lo=1.0 / hi, hi=1.0 / lo)
    out[~valid] = 0
    return out


def normal_rgb(normal) -> np.ndarray:
    """Unit normals (3, H, W) or (H, W, 3), x right / y up / z to the viewer -> (H, W, 3) with (n + 1) / 2 as RGB;
    zero normals (no surface) are black."""
    n = to_numpy(normal).astype(np.float64)
    if n.ndim == 3 and n.shape[0] == 3 and n.shape[-1] != 3:
        n = n.transpose(1, 2, 0)
    if n.ndim != 3 or n.shape[-1] != 3:
        raise ValueError(f"normal picture: expected (3, H, W) or (H, W, 3) normals, got shape {n.shape}")
    n = np.nan_to_num(n)
    out = np.round(np.clip((n + 1) / 2, 0, 1) * 255).astype(np.uint8)
    out[np.abs(n).sum(-1) < 1e-3] = 0
    return out


def class_color(i: int) -> tuple[int, int, int]:
    """Colour ``i`` of the fixed palette: the world's class colours first, then golden-ratio hues."""
    if i < len(_WORLD_CLASS_COLORS):
        return _WORLD_CLASS_COLORS[i]
    s, v = (0.85, 0.95) if i % 2 else (0.6, 0.75)  # alternate so neighbouring hues differ in brightness too
    return tuple(round(255 * c) for c in colorsys.hsv_to_rgb((i * 0.6180339887) % 1.0, s, v))


def class_colors(n: int) -> np.ndarray:
    """The first ``n`` colours of the fixed palette, (n, 3) uint8 (see `class_color`)."""
    return np.array([class_color(i) for i in range(n)], dtype=np.uint8).reshape(n, 3)


def semseg_rgb(classes, *, num_classes: int | None = None) -> np.ndarray:
    """Class ids (H, W) -> (H, W, 3) with `class_colors` (the same id has the same colour in every picture)."""
    c = to_numpy(classes)
    if c.ndim == 3 and c.shape[0] == 1:
        c = c[0]
    if c.ndim != 2 or np.issubdtype(c.dtype, np.floating):
        raise ValueError(f"semseg picture: expected (H, W) integer class ids, got {c.dtype} {c.shape}")
    if c.size and c.min() < 0:
        raise ValueError(f"semseg picture: negative class id {int(c.min())}")
    n = max(int(c.max()) + 1 if c.size else 1, num_classes or 0)
    return class_colors(n)[c]


def gray_rgb(x, *, lo: float = 0.0, hi: float = 1.0) -> np.ndarray:
    """A single-channel map (H, W) (edges 0..1) -> (H, W, 3) grey levels."""
    a = to_numpy(x).astype(np.float64)
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 2:
        raise ValueError(f"grey picture: expected (H, W), got shape {a.shape}")
    g = np.round(np.clip((np.nan_to_num(a) - lo) / max(hi - lo, 1e-12), 0, 1) * 255).astype(np.uint8)
    return np.repeat(g[..., None], 3, axis=-1)


def feature_pca_rgb(feature) -> np.ndarray:
    """A feature map (C, H, W) -> (H, W, 3): its first three principal components as R, G, B.

    Deterministic: the SVD is exact (no random projection) and each component's sign is fixed so that its largest
    loading is positive. Each channel is stretched between its 1st and 99th percentile; maps with fewer than three
    channels repeat the last component.
    """
    f = torch.as_tensor(to_numpy(feature)).double()
    if f.ndim != 3:
        raise ValueError(f"feature picture: expected a (C, H, W) map, got shape {tuple(f.shape)}")
    c, h, w = f.shape
    x = torch.nan_to_num(f.reshape(c, -1).T)  # (H*W, C)
    x = x - x.mean(0, keepdim=True)
    _, _, vh = torch.linalg.svd(x, full_matrices=False)  # vh (min(HW, C), C)
    k = min(3, vh.shape[0])
    comps = vh[:k]
    comps = comps * torch.sign(comps.gather(1, comps.abs().argmax(1, keepdim=True)))
    proj = (x @ comps.T).numpy()  # (H*W, k)
    if k < 3:
        proj = np.concatenate([proj] + [proj[:, -1:]] * (3 - k), axis=1)
    lo, hi = np.percentile(proj, 1, axis=0), np.percentile(proj, 99, axis=0)
    rgb = np.clip((proj - lo) / np.maximum(hi - lo, 1e-12), 0, 1)
    return np.round(rgb * 255).astype(np.uint8).reshape(h, w, 3)


def rgb_rgb(image) -> np.ndarray:
    """An image (3, H, W) or (H, W, 3), float 0..1 or uint8 -> (H, W, 3) uint8."""
    a = to_numpy(image)
    if a.ndim == 3 and a.shape[0] == 3 and a.shape[-1] != 3:
        a = a.transpose(1, 2, 0)
    if a.ndim != 3 or a.shape[-1] != 3:
        raise ValueError(f"rgb picture: expected (3, H, W) or (H, W, 3), got shape {a.shape}")
    if a.dtype == np.uint8:
        return np.ascontiguousarray(a)
    return np.round(np.clip(np.nan_to_num(a.astype(np.float64)), 0, 1) * 255).astype(np.uint8)
