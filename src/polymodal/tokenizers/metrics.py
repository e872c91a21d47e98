"""Reconstruction metrics of tokenizers as sums (so batches and ranks add up), and their summaries.

    sums = metric_sums("depth", pred, target)           # float64 (K,), add over batches and ranks
    summarize_metrics("depth", sums)                     # {"abs_rel": ...}

Per values kind (natural units, as `decode` returns them):

- rgb -> ``psnr`` (dB, mean over images, peak 1);
- edge -> ``psnr`` and ``edge_f1``, ``edge_precision``, ``edge_recall``: pixels over 0.5 are edges; a predicted
  edge pixel counts as right when a true one lies within 1 pixel (8-neighbourhood), and a true one as found when a
  predicted one does (the usual tolerance of edge benchmarks: an edge one pixel off is still the edge);
- depth -> ``abs_rel`` (mean |d - d*| / d* over pixels with a surface, d* > 0);
- normal -> ``angle_deg`` (mean angular error in degrees over pixels with a normal);
- semseg -> ``miou`` (over classes present in target or prediction) and ``pixel_acc``;
- feature and vector -> ``cosine`` (mean cosine similarity over positions or vectors) and ``mse`` (mean squared
  error per element, natural units).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

EDGE_THRESHOLD = 0.5
EDGE_TOLERANCE = 1  # pixels


def _near(edges: torch.Tensor, radius: int) -> torch.Tensor:
    """(B, H, W) bool -> (B, H, W) bool: within ``radius`` pixels (square neighbourhood) of an edge pixel."""
    k = 2 * radius + 1
    return F.max_pool2d(edges[:, None].double(), k, stride=1, padding=radius)[:, 0] > 0


def edge_match_sums(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B, H, W) edge maps in 0..1 -> float64 (4,): [predicted edges near a true one, predicted edges,
    true edges near a predicted one, true edges]."""
    p, t = pred > EDGE_THRESHOLD, target > EDGE_THRESHOLD
    return torch.stack([(p & _near(t, EDGE_TOLERANCE)).sum(), p.sum(),
                        (t & _near(p, EDGE_TOLERANCE)).sum(), t.sum()]).double()


def metric_sums(values: str, pred: torch.Tensor, target: torch.Tensor, *, num_classes: int = 0) -> torch.Tensor:
    """Float64 sums for `summarize_metrics`; ``pred`` and ``target`` have the same shape (decode's output)."""
    p, t = pred.detach().double(), target.detach().double()
    if values in ("rgb", "edge"):
        if t.max() > 1.5:  # uint8 input
            t = t / 255.0
        mse = (p - t).pow(2).reshape(p.shape[0], -1).mean(1).clamp(min=1e-10)
        psnr = torch.stack([(10 * torch.log10(1.0 / mse)).sum(), t.new_tensor(float(p.shape[0]))])
        return torch.cat([psnr, edge_match_sums(p, t)]) if values == "edge" else psnr
    if values == "depth":
        valid = t > 0
        return torch.stack([((p - t).abs() / t.clamp(min=1e-6))[valid].sum(), valid.sum().double()])
    if values == "normal":
        valid = t.norm(dim=1) > 0.5
        cos = F.cosine_similarity(p, t, dim=1).clamp(-1, 1)
        return torch.stack([torch.rad2deg(torch.acos(cos))[valid].sum(), valid.sum().double()])
    if values == "semseg":
        pi, ti = pred.reshape(-1).long(), target.reshape(-1).long()
        inter = torch.bincount(ti[pi == ti], minlength=num_classes).double()
        union = (torch.bincount(ti, minlength=num_classes) + torch.bincount(pi, minlength=num_classes)).double()
        return torch.cat([inter, union - inter])
    if values in ("feature", "vector"):
        cos = F.cosine_similarity(p, t, dim=1)
        return torch.stack([cos.sum(), t.new_tensor(float(cos.numel())), (p - t).pow(2).sum(),
                            t.new_tensor(float(t.numel()))])
    raise ValueError(f"no metric for values {values!r}")


def num_sums(values: str, *, num_classes: int = 0) -> int:
    """Length of `metric_sums`' output (what a rank with no held-out items contributes as zeros)."""
    return {"semseg": 2 * num_classes, "edge": 6, "feature": 4, "vector": 4}.get(values, 2)


def summarize_metrics(values: str, sums: torch.Tensor) -> dict[str, float]:
    if values == "semseg":
        inter, union = sums.chunk(2)
        present = union > 0
        return {"miou": float((inter[present] / union[present]).mean()) if present.any() else 0.0,
                "pixel_acc": float(inter.sum() / max(float(inter.sum() + (union - inter).sum() / 2), 1.0))}
    if values == "edge":
        right, predicted, found, true = (float(v) for v in sums[2:6])
        precision, recall = right / max(predicted, 1.0), found / max(true, 1.0)
        f1 = 2 * precision * recall / max(precision + recall, 1e-12)
        return {"psnr": float(sums[0] / sums[1].clamp(min=1)), "edge_f1": f1, "edge_precision": precision,
                "edge_recall": recall}
    if values in ("feature", "vector"):
        return {"cosine": float(sums[0] / sums[1].clamp(min=1)), "mse": float(sums[2] / sums[3].clamp(min=1))}
    name = {"rgb": "psnr", "depth": "abs_rel", "normal": "angle_deg"}[values]
    return {name: float(sums[0] / sums[1].clamp(min=1))}
