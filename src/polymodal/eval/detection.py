"""Box detection: class-aware mAP@0.5 in COCO's way, and box matching for the generation checks.

A box is ``[xmin, ymin, xmax, ymax]`` (any unit, the same for prediction and ground truth; the world's pixel boxes
are half-open, so a box's area is ``(xmax - xmin) * (ymax - ymin)``). Per image, predictions are dicts
``{"class", "box"}`` with an optional ``"score"``; without scores the list order is the confidence (first = most
confident), as a sequence model writes its boxes without scores. Ground truth is the world's ``det`` list.

AP per class (COCO, ``pycocotools`` ``COCOeval`` at one IoU threshold, all areas, no detection limit per image):

1. sort the class's predictions over the whole set by confidence (stable: ties keep image, then list order);
2. in each image, a prediction matches the unmatched ground-truth box of its class with the highest IoU, if that
   IoU is >= 0.5 (true positive), else it is a false positive;
3. precision is made monotone (the running maximum from the right) and sampled at 101 recall points
   0, 0.01, ..., 1 (the first prediction whose recall reaches each point; 0 past the largest recall);
   AP is the mean of the 101 samples.

mAP is the mean AP over the classes that have at least one ground-truth box (COCO skips classes without ground
truth; their predictions are simply not scored). A set with no ground-truth box at all gives NaN.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

IOU_THRESHOLD = 0.5
RECALL_POINTS = np.linspace(0.0, 1.0, 101)


def box_iou(a, b) -> np.ndarray:
    """(P, 4) x (G, 4) -> (P, G) IoU; an empty box (zero area) has IoU 0 with everything."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = lambda x: np.clip(x[:, 2] - x[:, 0], 0, None) * np.clip(x[:, 3] - x[:, 1], 0, None)  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def _scores(preds: Sequence[dict]) -> list[float]:
    """Confidences of one image's predictions: their ``score``, or minus the list position when absent."""
    return [float(p["score"]) if p.get("score") is not None else -float(i) for i, p in enumerate(preds)]


def average_precision(tp: np.ndarray, scores: np.ndarray, n_gt: int) -> float:
    """COCO's 101-point interpolated AP of one class: ``tp`` (P,) bool per prediction, ``scores`` (P,), over
    ``n_gt`` ground-truth boxes (> 0)."""
    if not len(tp):
        return 0.0
    order = np.argsort(-scores, kind="stable")
    tp = tp[order].astype(np.float64)
    ctp, cfp = np.cumsum(tp), np.cumsum(1.0 - tp)
    recall = ctp / n_gt
    precision = np.maximum.accumulate((ctp / (ctp + cfp))[::-1])[::-1]  # the best precision at this recall or more
    idx = np.searchsorted(recall, RECALL_POINTS, side="left")  # the first prediction reaching each recall point
    sampled = np.zeros(len(RECALL_POINTS))
    reached = idx < len(precision)
    sampled[reached] = precision[idx[reached]]
    return float(np.mean(sampled))


def match_image(preds: Sequence[dict], gts: Sequence[dict], *, iou: float = IOU_THRESHOLD,
                class_aware: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Greedy matching of one image in confidence order: (tp (P,) bool in the given order, matched (G,) bool).

    A prediction takes the unmatched ground-truth box (of its class when ``class_aware``) of the highest IoU, if
    that IoU is >= ``iou``."""
    tp, matched = np.zeros(len(preds), bool), np.zeros(len(gts), bool)
    if not preds or not gts:
        return tp, matched
    ious = box_iou([p["box"] for p in preds], [g["box"] for g in gts])
    if class_aware:
        same = np.array([[p["class"] == g["class"] for g in gts] for p in preds])
        ious = np.where(same, ious, -1.0)
    for i in np.argsort(-np.asarray(_scores(preds)), kind="stable"):
        cand = np.where(matched, -1.0, ious[i])
        j = int(np.argmax(cand))
        if cand[j] >= iou:
            tp[i], matched[j] = True, True
    return tp, matched


def mean_average_precision(preds: Sequence[Sequence[dict]], gts: Sequence[Sequence[dict]], *,
                           iou: float = IOU_THRESHOLD) -> dict:
    """``map`` (mAP@iou over classes with ground truth, see the module doc), ``ap`` per class, and the pooled
    ``precision`` / ``recall`` of every prediction at that IoU, for ``preds[i]`` against ``gts[i]`` per image."""
    if len(preds) != len(gts):
        raise ValueError(f"mAP: {len(preds)} predicted images but {len(gts)} ground-truth images")
    per_class: dict[str, dict[str, list]] = {}
    n_gt: dict[str, int] = {}
    n_tp = n_pred = 0
    for p_img, g_img in zip(preds, gts):
        tp, _ = match_image(p_img, g_img, iou=iou)
        scores = _scores(p_img)
        for k, p in enumerate(p_img):
            entry = per_class.setdefault(p["class"], {"tp": [], "score": []})
            entry["tp"].append(bool(tp[k]))
            entry["score"].append(scores[k])
        for g in g_img:
            n_gt[g["class"]] = n_gt.get(g["class"], 0) + 1
        n_tp, n_pred = n_tp + int(tp.sum()), n_pred + len(p_img)
    ap = {}
    for cls, count in sorted(n_gt.items()):
        e = per_class.get(cls, {"tp": [], "score": []})
        ap[cls] = average_precision(np.array(e["tp"], bool), np.array(e["score"], np.float64), count)
    total_gt = sum(n_gt.values())
    return {"map": float(np.mean(list(ap.values()))) if ap else float("nan"), "ap": ap,
            "precision": n_tp / n_pred if n_pred else float("nan"),
            "recall": n_tp / total_gt if total_gt else float("nan")}
