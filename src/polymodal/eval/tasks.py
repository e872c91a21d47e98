"""The evaluation tasks: what each one asks a predictor, and how its answers are scored against the world.

==============  ==========  ===========  ====================================================================
task            inputs      targets      scores (see `metrics`, `detection`, `captions`)
==============  ==========  ===========  ====================================================================
depth           rgb         depth        abs_rel, delta1
normal          rgb         normal       angle_deg, within_11.25
semseg          rgb         semseg       miou, pixel_acc (11 world classes, no ignore index: every pixel has one)
det             rgb         det          map (mAP@0.5), precision, recall
caption         rgb         caption      count_acc, color/class/object precision, recall, f1
retrieval       rgb         minilm_glob  recall@1, recall@5: the predicted caption embedding searches the
                                         ground-truth embeddings of the test set; the sample's own is relevant
caption2rgb     caption     rgb          the generated image read back by the same predictor (rgb -> det,
det2rgb         det         rgb          rgb -> semseg) against the conditioning scene's exact labels
==============  ==========  ===========  ====================================================================

Generation checks (`generation_scores`), per generated image against the scene that wrote the condition:
``seg_class_*``: the object classes covering >= `MIN_PIXELS` pixels of the predicted segmentation versus the
scene's visible classes (classes seen on fewer pixels in the scene itself are left out of both sides);
``det_class_*``: the classes of the predicted boxes versus the same; ``box_recall`` / ``box_precision``: boxes
matched class-aware at IoU >= 0.5 with the scene's exact boxes; ``count_acc``: as many boxes as visible objects.
Precision, recall and F1 pool true positives over the set. A caption does not fix where objects are, so the box
scores of caption2rgb measure only loosely; those of det2rgb are the point of that check.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..data.world.scene import SEMSEG_CLASSES, STUFF_CLASSES
from .captions import caption_scores
from .detection import match_image, mean_average_precision
from .metrics import depth_metrics, normal_metrics, segmentation_metrics

MIN_PIXELS = 4  # an object class counts as drawn when it covers at least this many pixels


@dataclass(frozen=True)
class Task:
    name: str
    inputs: tuple[str, ...]
    targets: tuple[str, ...]
    needs: tuple[str, ...] = ()  # sample keys the scoring needs besides the targets
    generation: bool = False


TASKS: dict[str, Task] = {t.name: t for t in (
    Task("depth", ("rgb",), ("depth",)),
    Task("normal", ("rgb",), ("normal",)),
    Task("semseg", ("rgb",), ("semseg",)),
    Task("det", ("rgb",), ("det",)),
    Task("caption", ("rgb",), ("caption",), needs=("det",)),
    Task("retrieval", ("rgb",), ("minilm_global",)),
    Task("caption2rgb", ("caption",), ("rgb",), needs=("det",), generation=True),
    Task("det2rgb", ("det",), ("rgb",), needs=("det",), generation=True),
)}
DEFAULT_TASKS = tuple(TASKS)
HEADLINE = {"depth": "delta1", "normal": "within_11.25", "semseg": "miou", "det": "map", "caption": "object_f1",
            "retrieval": "recall@1", "caption2rgb": "seg_class_f1", "det2rgb": "box_recall"}


def score(task: str, preds: Mapping[str, list[Any]], samples: Sequence[Mapping[str, Any]]) -> dict:
    """The scores of one prediction task (not the generation checks) over the whole test set."""
    if task == "depth":
        return depth_metrics(np.stack(preds["depth"]), np.stack([s["depth"] for s in samples]))
    if task == "normal":
        return normal_metrics(np.stack(preds["normal"]), np.stack([s["normal"] for s in samples]))
    if task == "semseg":
        out = segmentation_metrics(np.stack(preds["semseg"]), np.stack([s["semseg"] for s in samples]),
                                   len(SEMSEG_CLASSES))
        out["iou"] = {SEMSEG_CLASSES[c]: v for c, v in out["iou"].items()}
        return out
    if task == "det":
        return mean_average_precision(preds["det"], [s["det"] for s in samples])
    if task == "caption":
        return caption_scores(preds["caption"], [s["det"] for s in samples])
    if task == "retrieval":
        return retrieval_scores(preds["minilm_global"], [s["minilm_global"] for s in samples])
    raise ValueError(f"no scores for task {task!r}; tasks: {', '.join(TASKS)}")


def retrieval_scores(queries: Sequence[Any], gallery: Sequence[Any], *, ks: Sequence[int] = (1, 5),
                     relevant: Sequence[int] | None = None) -> dict:
    """recall@k of predicted vectors ``queries[i]`` (D,) searching ``gallery`` (N, D) by cosine similarity,
    query i's relevant item being gallery item ``relevant[i]`` (default i)."""
    from ..retrieval import GalleryIndex, recall_at_k

    index = GalleryIndex(np.stack(gallery).astype(np.float32), list(range(len(gallery))), metric="cosine")
    k_max = min(max(ks), len(gallery))
    hits = index.search(np.stack(queries).astype(np.float32), k_max)
    relevant = list(range(len(queries))) if relevant is None else [int(i) for i in relevant]
    return {f"recall@{k}": recall_at_k(hits.keys, relevant, k) for k in ks if k <= k_max}


def _prf(tp: int, n_pred: int, n_true: int, prefix: str) -> dict[str, float]:
    p = tp / n_pred if n_pred else float(n_true == 0)
    r = tp / n_true if n_true else 1.0
    return {f"{prefix}_precision": p, f"{prefix}_recall": r, f"{prefix}_f1": 2 * p * r / (p + r) if p + r else 0.0}


def generation_scores(read_det: Sequence[list[dict]], read_semseg: Sequence[np.ndarray],
                      scene_dets: Sequence[list[dict]], *, min_pixels: int = MIN_PIXELS) -> dict[str, float]:
    """Agreement of generated images, read back as boxes ``read_det[i]`` and label maps ``read_semseg[i]`` (H, W),
    with the exact visible objects ``scene_dets[i]`` of the conditioning scenes (see the module doc)."""
    stuff = len(STUFF_CLASSES)
    c = dict.fromkeys(("seg_tp", "seg_pred", "det_tp", "det_pred", "true", "box_tp", "box_pred", "box_true"), 0)
    counts_right = 0
    for boxes, seg, det in zip(read_det, read_semseg, scene_dets, strict=True):
        seen = {d["class"] for d in det if d.get("pixels", min_pixels) >= min_pixels}
        faint = {d["class"] for d in det} - seen  # too small to demand, not wrong to draw
        hist = np.bincount(np.asarray(seg, np.int64).ravel(), minlength=len(SEMSEG_CLASSES))
        drawn = {SEMSEG_CLASSES[k] for k in range(stuff, len(SEMSEG_CLASSES)) if hist[k] >= min_pixels} - faint
        boxed = {b["class"] for b in boxes} - faint
        c["seg_tp"] += len(drawn & seen)
        c["seg_pred"] += len(drawn)
        c["det_tp"] += len(boxed & seen)
        c["det_pred"] += len(boxed)
        c["true"] += len(seen)
        tp, matched = match_image(boxes, det)
        c["box_tp"] += int(tp.sum())
        c["box_pred"] += len(boxes)
        c["box_true"] += len(det)
        counts_right += len(boxes) == len(det)
    out = {**_prf(c["seg_tp"], c["seg_pred"], c["true"], "seg_class"),
           **_prf(c["det_tp"], c["det_pred"], c["true"], "det_class")}
    out["box_recall"] = c["box_tp"] / c["box_true"] if c["box_true"] else float("nan")
    out["box_precision"] = c["box_tp"] / c["box_pred"] if c["box_pred"] else float("nan")
    out["count_acc"] = counts_right / max(len(scene_dets), 1)
    return out
