"""Modalities derived from a rendered frame: boxes, edges, palette, human poses and 4M's metadata.

Boxes are ``[xmin, ymin, xmax, ymax]`` in pixels, half-open: the box of an instance whose leftmost visible pixel
is column 3 and rightmost column 9 has ``xmin = 3, xmax = 10``. Divide by the resolution for 4M's normalized
coordinates. Everything here is a pure function of the frame, the scene and an explicit generator.
"""

from __future__ import annotations

import cv2
import numpy as np

from .render import Frame, project
from .scene import FLOOR, OBJECT_CLASSES, SKY, Scene, semseg_id
from .solids import person_joints

CANNY_LOW, CANNY_HIGH = 80, 160
PALETTE_MAX = 7


def _box(mask: np.ndarray) -> list[int] | None:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return None
    return [int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1]


def detections(scene: Scene, frame: Frame) -> list[dict]:
    """One entry per visible instance, by instance id.

    Keys: ``instance`` (id in the instance map), ``class``, ``color``, ``box`` (pixels, half-open),
    ``amodal_box`` (the box of the unoccluded silhouette, clipped to the image), ``visible_fraction`` (visible
    pixels over the unoccluded silhouette's pixels inside the image), ``pixels``, ``centroid`` ([u, v] pixels) and
    ``distance`` (depth of the object's centre, metres).
    """
    res = frame.rgb.shape[0]
    centres = np.array([[o.position[0], 0.9 if o.cls == "person" else 0.4, o.position[1]] for o in scene.objects])
    dist = project(scene, centres, res)[2]
    out = []
    for k, obj in enumerate(scene.objects):
        amodal_box = _box(frame.amodal[k])
        if amodal_box is None:
            continue
        x0, y0, x1, y1 = amodal_box  # the visible pixels are a subset of the amodal ones: look only there
        mask = frame.instance[y0:y1, x0:x1] == k + 1
        cols, rows = mask.sum(axis=0), mask.sum(axis=1)
        n = int(cols.sum())
        if n == 0:
            continue
        c, r = np.flatnonzero(cols), np.flatnonzero(rows)
        out.append({
            "instance": k + 1, "class": obj.cls, "color": obj.color, "size": obj.size, "material": obj.material,
            "box": [int(c[0]) + x0, int(r[0]) + y0, int(c[-1]) + 1 + x0, int(r[-1]) + 1 + y0],
            "amodal_box": amodal_box,
            "visible_fraction": round(n / int(frame.amodal[k].sum()), 4), "pixels": n,
            "centroid": [round(float(cols @ np.arange(len(cols))) / n + x0 + 0.5, 2),
                         round(float(rows @ np.arange(len(rows))) / n + y0 + 0.5, 2)],
            "distance": round(float(dist[k]), 3),
        })
    return out


def canny_edges(rgb: np.ndarray) -> np.ndarray:
    """OpenCV Canny on the grayscale image: uint8 (H, W), 255 on edges."""
    return cv2.Canny(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), CANNY_LOW, CANNY_HIGH)


def segment_edges(semseg: np.ndarray, instance: np.ndarray) -> np.ndarray:
    """Boundaries between segments (``sam_edge``): uint8 (H, W), 255 on a pixel whose right or lower neighbour
    lies in another segment. Segments are the instances, and for pixels of no instance their stuff class (sky,
    wall, floor), as a class-agnostic segmenter like SAM would cut them."""
    seg = np.where(instance > 0, instance.astype(np.int32) + 256, semseg.astype(np.int32))
    edge = np.zeros(seg.shape, bool)
    edge[:, :-1] |= seg[:, :-1] != seg[:, 1:]
    edge[:-1, :] |= seg[:-1, :] != seg[1:, :]
    return edge.astype(np.uint8) * 255


def color_palette(rgb: np.ndarray, rng: np.random.Generator, *, k: int | None = None, samples: int = 256) -> dict:
    """k-means colours of the image, biggest cluster first: {"colors": [[r, g, b], ...], "weights": [...]}.

    ``k`` (1 to 7) is drawn from ``rng`` when None, as 4M mixes palette sizes. Clustering runs on ``samples``
    random pixels with k-means++ seeding and up to 10 Lloyd steps; weights are the clusters' shares of those pixels.
    """
    k = int(rng.integers(1, PALETTE_MAX + 1)) if k is None else k
    if not 1 <= k <= PALETTE_MAX:
        raise ValueError(f"palette size must be 1 to {PALETTE_MAX}, got {k}")
    px = rgb.reshape(-1, 3).astype(np.float64)
    px = px[rng.choice(len(px), size=min(samples, len(px)), replace=False)]
    sq = (px * px).sum(axis=1)
    centers = px[rng.integers(len(px))][None]
    d2 = ((px - centers[0]) ** 2).sum(axis=1)
    for _ in range(1, k):
        if d2.sum() <= 0:
            break  # fewer distinct colours than k
        c = px[rng.choice(len(px), p=d2 / d2.sum())]
        centers = np.vstack([centers, c])
        d2 = np.minimum(d2, ((px - c) ** 2).sum(axis=1))
    m = len(centers)
    assign = None
    for _ in range(10):
        dist = sq[:, None] - 2 * px @ centers.T + (centers * centers).sum(axis=1)[None]
        new = dist.argmin(axis=1)
        if assign is not None and np.array_equal(new, assign):
            break
        assign = new
        counts = np.bincount(assign, minlength=m)
        sums = np.stack([np.bincount(assign, weights=px[:, c], minlength=m) for c in range(3)], axis=1)
        filled = counts > 0
        centers[filled] = sums[filled] / counts[filled, None]
    counts = np.bincount(assign, minlength=m)
    order = np.argsort(-counts, kind="stable")
    order = order[counts[order] > 0]
    return {
        "colors": [[int(round(c)) for c in centers[j]] for j in order],
        "weights": [round(float(counts[j]) / len(px), 4) for j in order],
    }


def human_poses(scene: Scene, frame: Frame, dets: list[dict]) -> list[dict]:
    """One entry per visible person.

    ``joints_2d``: (15, 2) pixel coordinates (continuous, may lie outside the image); ``joints_3d``: (15, 3)
    camera frame, metres (x right, y up, z towards the viewer); ``angles``: the joint-angle vector
    (`person.ANGLE_NAMES`, radians); ``global_orient``: the 3x3 body-to-camera rotation, row-major;
    ``yaw``: body heading in the world (radians); ``limb_scale``: torso, arms, legs.
    """
    res = frame.rgb.shape[0]
    r, u, f = scene.camera.frame()
    to_cam = np.stack([r, u, -f])
    out = []
    for det in dets:
        obj = scene.objects[det["instance"] - 1]
        if obj.cls != "person":
            continue
        joints = person_joints(obj)
        pu, pv, _ = project(scene, joints, res)
        cam = (joints - np.asarray(scene.camera.position)) @ to_cam.T
        c, s = np.cos(obj.yaw), np.sin(obj.yaw)
        rot = to_cam @ np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])
        out.append({
            "instance": det["instance"], "box": det["box"], "amodal_box": det["amodal_box"],
            "action": obj.pose.action,
            "joints_2d": np.round(np.stack([pu, pv], axis=1), 3).tolist(),
            "joints_3d": np.round(cam, 4).tolist(),
            "angles": [round(a, 4) for a in obj.pose.angles],
            "global_orient": np.round(rot.ravel(), 5).tolist(),
            "yaw": round(obj.yaw, 5),
            "limb_scale": [round(x, 4) for x in obj.pose.limb_scale],
        })
    return out


def image_statistics(rgb: np.ndarray) -> dict[str, float]:
    """4M's image metadata on 0-255 values: colorfulness (Hasler and Suesstrunk), brightness (mean gray),
    contrast (std of gray), saturation (mean HSV saturation) and entropy (bits, gray histogram)."""
    x = rgb.reshape(-1, 3).astype(np.float64)
    rg, yb = x[:, 0] - x[:, 1], 0.5 * (x[:, 0] + x[:, 1]) - x[:, 2]
    colorfulness = np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean())
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    hist = np.bincount(gray.ravel(), minlength=256) / gray.size
    hist = hist[hist > 0]
    sat = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)[..., 1]
    return {
        "colorfulness": float(colorfulness), "brightness": float(gray.mean()), "contrast": float(gray.std()),
        "saturation": float(sat.mean()), "entropy": float(-(hist * np.log2(hist)).sum()),
    }


def metadata(scene: Scene, frame: Frame, dets: list[dict], caption_lengths: dict[str, int]) -> dict:
    """4M-21's metadata fields that the world defines, as raw values (binning is the tokenizer's job).

    - ``n_humans``, ``n_sam_instances``, ``n_coco_instances``: visible people / instances / detected objects
      (the last two agree here: every instance is a detectable object);
    - ``coco_instance_diversity``: distinct classes among the detections; ``semantic_diversity``: distinct
      semantic classes in ``semseg`` (stuff included);
    - ``walkability``: floor pixel fraction; ``objectness``: object pixel fraction;
    - ``geometric_complexity``: angular spread of the normals, 1 - |mean unit normal| over surface pixels (0 for
      one plane, up to 1);
    - ``occlusion_score``: share of the objects' unoccluded in-image silhouettes hidden by other objects.
    """
    res = frame.rgb.shape[0]
    n = frame.normal[frame.semseg != SKY].reshape(-1, 3)
    amodal_px = int(frame.amodal.sum())
    visible_px = int((frame.instance > 0).sum())
    first_object = semseg_id(OBJECT_CLASSES[0])
    meta = {
        "original_width": res, "original_height": res, **caption_lengths,
        "n_humans": sum(d["class"] == "person" for d in dets),
        "n_sam_instances": len(dets), "n_coco_instances": len(dets),
        "coco_instance_diversity": len({d["class"] for d in dets}),
        **image_statistics(frame.rgb),
        "walkability": float((frame.semseg == FLOOR).mean()),
        "objectness": float((frame.semseg >= first_object).mean()),
        "semantic_diversity": int(np.count_nonzero(np.bincount(frame.semseg.ravel()))),
        "geometric_complexity": float(1.0 - np.linalg.norm(n.mean(axis=0))) if len(n) else 0.0,
        "occlusion_score": float(1.0 - visible_px / amodal_px) if amodal_px else 0.0,
    }
    return {k: (round(v, 5) if isinstance(v, float) else v) for k, v in meta.items()}

