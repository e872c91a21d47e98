"""Dense-prediction metrics over a whole test set, as pure numpy functions of stacked arrays.

Every metric pools pixels over the whole set (one mean over all valid pixels, as the tokenizer metrics of
`polymodal.tokenizers.metrics` do), so an image with many valid pixels weighs more than one with few. Inputs are
the world's values (`polymodal.data.world.sample`) or what a model decodes to, in the same units:

==========  ====================  =============================================================================
task        arrays                valid pixels and metrics
==========  ====================  =============================================================================
depth       (N, H, W) metres      ground truth > 0 (0 is sky, "no surface"); ``abs_rel`` mean |d - d*| / d*,
                                  ``delta1`` share of max(d / d*, d* / d) < 1.25 (d clamped to >= 1 mm)
normal      (N, H, W, 3) or       ground-truth length > 0.5 (sky normals are 0); ``angle_deg`` mean angular
            (N, 3, H, W) unit     error in degrees, ``within_11.25`` share of pixels within 11.25 degrees
semseg      (N, H, W) class ids   ground truth != ``ignore_index``; ``miou`` mean IoU over the classes present
                                  in the ground truth or the prediction (of the valid pixels), ``pixel_acc``
==========  ====================  =============================================================================

A prediction that is absent for a pixel cannot exist here: the arrays have the same shape. Empty sets (no valid
pixel) give NaN, never a silent 0.
"""

from __future__ import annotations

import numpy as np

DELTA = 1.25
ANGLE_THRESHOLD = 11.25  # degrees
MIN_DEPTH = 1e-3  # metres: a predicted depth of 0 would make d* / d infinite


def _as(x, name: str) -> np.ndarray:
    a = np.asarray(x.detach().cpu() if hasattr(x, "detach") else x)
    if a.size == 0:
        raise ValueError(f"{name}: empty array")
    return a


def _same_shape(p: np.ndarray, t: np.ndarray, what: str) -> None:
    if p.shape != t.shape:
        raise ValueError(f"{what}: prediction {p.shape} and ground truth {t.shape} differ in shape")


def depth_metrics(pred, target) -> dict[str, float]:
    """``abs_rel`` and ``delta1`` (see the module table) of depth maps (N, H, W) or (H, W), metres."""
    return pooled("depth", image_sums("depth", pred, target))


def _depth_sums(p: np.ndarray, t: np.ndarray) -> np.ndarray:
    valid = t > 0
    pv = np.maximum(p, MIN_DEPTH)
    tv = np.where(valid, t, 1.0)
    err = np.where(valid, np.abs(pv - tv) / tv, 0.0)
    hit = valid & (np.maximum(pv / tv, tv / pv) < DELTA)
    return np.stack([valid.sum((1, 2)), err.sum((1, 2)), hit.sum((1, 2))], axis=1).astype(np.float64)


def _channels_last(a: np.ndarray) -> np.ndarray:
    """(N, 3, H, W) -> (N, H, W, 3); channel-last arrays pass through (the world stores (H, W, 3))."""
    if a.shape[-1] == 3:
        return a
    if a.ndim >= 3 and a.shape[-3] == 3:
        return np.moveaxis(a, -3, -1)
    raise ValueError(f"normals: expected 3 channels first or last, got shape {a.shape}")


def normal_metrics(pred, target) -> dict[str, float]:
    """``angle_deg`` and ``within_11.25`` (see the module table) of normal maps; the prediction is normalized
    first (a decoder's normals are not exactly unit), a zero prediction counts as 90 degrees off."""
    return pooled("normal", image_sums("normal", pred, target))


def _normal_sums(p: np.ndarray, t: np.ndarray) -> np.ndarray:
    p, t = _channels_last(p), _channels_last(t)
    _same_shape(p, t, "normal")
    tn = np.linalg.norm(t, axis=-1)
    valid = tn > 0.5
    pn = np.linalg.norm(p, axis=-1)
    cos = np.where(pn > 1e-8, (p * t).sum(-1) / np.maximum(pn * np.maximum(tn, 1e-8), 1e-8), 0.0)
    angle = np.where(valid, np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))), 0.0)
    hit = valid & (angle < ANGLE_THRESHOLD)
    return np.stack([valid.sum((1, 2)), angle.sum((1, 2)), hit.sum((1, 2))], axis=1).astype(np.float64)


SUM_METRICS = {"depth": ("abs_rel", "delta1"), "normal": ("angle_deg", f"within_{ANGLE_THRESHOLD}")}


def image_sums(task: str, pred, target) -> np.ndarray:
    """(N, 3) per image of a pixel-pooled task (``depth``, ``normal``): valid pixels, the sum of their errors
    (abs-rel, degrees) and how many are within the threshold. Sums over any set of images pool that set's pixels
    (`pooled`), so a subset is scored without recomputing pixels (`bootstrap`)."""
    if task not in SUM_METRICS:
        raise ValueError(f"no per-image sums for {task!r}; tasks: {', '.join(SUM_METRICS)}")
    p, t = _as(pred, task).astype(np.float64), _as(target, task).astype(np.float64)
    if task == "depth":
        _same_shape(p, t, "depth")
        return _depth_sums(p.reshape(-1, *p.shape[-2:]), t.reshape(-1, *t.shape[-2:]))
    if p.ndim == 3:
        p, t = p[None], t[None]
    return _normal_sums(p, t)


def pooled(task: str, sums: np.ndarray) -> dict[str, float]:
    """The metrics of `image_sums` rows pooled over their pixels; NaN without a valid pixel."""
    n, err, hit = np.asarray(sums, np.float64).reshape(-1, 3).sum(axis=0)
    error, share = SUM_METRICS[task]
    if n == 0:
        return {error: float("nan"), share: float("nan")}
    return {error: float(err / n), share: float(hit / n)}


def confusion(pred, target, num_classes: int, *, ignore_index: int | None = None) -> np.ndarray:
    """(C, C) int64 counts, rows = ground truth, columns = prediction, over pixels whose ground truth is not
    ``ignore_index`` (the prediction at those pixels is not looked at)."""
    p, t = _as(pred, "semseg").astype(np.int64).ravel(), _as(target, "semseg").astype(np.int64).ravel()
    if p.shape != t.shape:
        raise ValueError(f"semseg: prediction and ground truth hold {p.size} and {t.size} pixels")
    if ignore_index is not None:
        keep = t != ignore_index
        p, t = p[keep], t[keep]
    for a, what in ((t, "ground-truth"), (p, "predicted")):
        if a.size and (a.min() < 0 or a.max() >= num_classes):
            raise ValueError(f"semseg: {what} ids {a.min()}..{a.max()} outside 0..{num_classes - 1}")
    return np.bincount(t * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def miou_from_confusion(conf: np.ndarray) -> dict:
    """``miou`` over classes present in ground truth or prediction, ``pixel_acc``, and ``iou`` per present
    class id."""
    conf = conf.astype(np.float64)
    inter = np.diag(conf)
    union = conf.sum(axis=1) + conf.sum(axis=0) - inter
    present = union > 0
    total = float(conf.sum())
    ious = inter[present] / union[present]
    return {"miou": float(ious.mean()) if present.any() else float("nan"),
            "pixel_acc": float(inter.sum() / total) if total else float("nan"),
            "iou": {int(c): float(v) for c, v in zip(np.flatnonzero(present), ious)}}


def segmentation_metrics(pred, target, num_classes: int, *, ignore_index: int | None = None) -> dict:
    """``miou``, ``pixel_acc`` and ``iou`` per present class of label maps (N, H, W) (see the module table)."""
    return miou_from_confusion(confusion(pred, target, num_classes, ignore_index=ignore_index))
