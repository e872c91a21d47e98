"""Reconstruction metrics of tokenizers as sums (so batches and ranks add up), and their summaries.

    sums = metric_sums("depth", pred, target)           # float64 (K,), add over batches and ranks
    summarize_metrics("depth", sums)                     # {"abs_rel": ...}

Per values kind (natural units, as `decode` returns them): rgb and edge -> ``psnr`` (dB, mean over images, peak
1); depth -> ``abs_rel`` (mean |d - d*| / d* over pixels with a surface, d* > 0); normal -> ``angle_deg`` (mean
angular error over pixels with a normal); semseg -> ``miou`` (over classes present in target or prediction) and
``pixel_acc``; feature and vector -> ``cosine`` (mean cosine similarity over positions or vectors).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def metric_sums(values: str, pred: torch.Tensor, target: torch.Tensor, *, num_classes: int = 0) -> torch.Tensor:
    """Float64 sums for `summarize_metrics`; ``pred`` and ``target`` have the same shape (decode's output)."""
    p, t = pred.detach().double(), target.detach().double()
    if values in ("rgb", "edge"):
        if t.max() > 1.5:  # uint8 input
            t = t / 255.0
        mse = (p - t).pow(2).reshape(p.shape[0], -1).mean(1).clamp(min=1e-10)
        return torch.stack([(10 * torch.log10(1.0 / mse)).sum(), t.new_tensor(float(p.shape[0]))])
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
        return torch.stack([cos.sum(), t.new_tensor(float(cos.numel()))])
    raise ValueError(f"no metric for values {values!r}")


def summarize_metrics(values: str, sums: torch.Tensor) -> dict[str, float]:
    if values == "semseg":
        inter, union = sums.chunk(2)
        present = union > 0
        return {"miou": float((inter[present] / union[present]).mean()) if present.any() else 0.0,
                "pixel_acc": float(inter.sum() / max(float(inter.sum() + (union - inter).sum() / 2), 1.0))}
    name = {"rgb": "psnr", "edge": "psnr", "depth": "abs_rel", "normal": "angle_deg", "feature": "cosine",
            "vector": "cosine"}[values]
    return {name: float(sums[0] / sums[1].clamp(min=1))}
