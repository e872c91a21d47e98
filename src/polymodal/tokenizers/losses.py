"""Reconstruction losses of tokenizers, per item (so a caller can normalize by a global item count)."""

from __future__ import annotations

import torch
from torch.nn import functional as F

LOSSES = ("mse", "l1", "smooth_l1", "ce", "cosine")


def reconstruction_loss(pred: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-item loss (B,).

    pred: (B, C, ...) predictions (logits over C classes for ``"ce"``).
    target: same shape as ``pred``, or (B, ...) class ids for ``"ce"``.
    kind: ``mse``, ``l1``, ``smooth_l1`` (Huber with beta 0.1, in normalized units), ``ce`` (cross-entropy over
        the channel axis) or ``cosine`` (1 - cosine similarity over the channel axis).
    Everything but ``ce`` averages over all non-batch axes; ``ce`` and ``cosine`` over positions.
    """
    pred = pred.float()
    if kind == "ce":
        per = F.cross_entropy(pred, target.long(), reduction="none")
    elif kind == "cosine":
        per = 1.0 - F.cosine_similarity(pred, target.float(), dim=1, eps=1e-6)
    elif kind == "mse":
        per = (pred - target).pow(2)
    elif kind == "l1":
        per = (pred - target).abs()
    elif kind == "smooth_l1":
        per = F.smooth_l1_loss(pred, target.float(), reduction="none", beta=0.1)
    else:
        raise ValueError(f"unknown reconstruction loss {kind!r}; choose one of {', '.join(LOSSES)}")
    return per.reshape(per.shape[0], -1).mean(dim=1)
