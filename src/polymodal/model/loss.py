"""4M's masked-modeling loss, apart from the model: cross-entropy at target positions."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch.nn import functional as F

from .fourm import TargetLogits


def modality_losses(outputs: Mapping[str, TargetLogits], *, label_smoothing: float = 0.0
                    ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per modality: (sum of token cross-entropies, number of valid target tokens), both scalars (float32)."""
    out = {}
    for name, o in outputs.items():
        target_ids = o.target_ids
        ce = F.cross_entropy(o.logits.float(), target_ids, reduction="sum", label_smoothing=label_smoothing)
        out[name] = (ce, torch.tensor(float(target_ids.numel()), device=ce.device))
    return out


def masked_modeling_loss(outputs: Mapping[str, TargetLogits], *, weighting: str = "modality",
                         label_smoothing: float = 0.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Total loss and each modality's mean token loss.

    ``weighting="modality"`` (4M): mean cross-entropy per modality, averaged over the modalities that have
    targets in the batch, so a modality's weight does not depend on how many tokens it was given.
    ``weighting="token"``: mean over all target tokens of all modalities.
    """
    if weighting not in ("modality", "token"):
        raise ValueError(f"weighting must be 'modality' or 'token', got {weighting!r}")
    parts = modality_losses(outputs, label_smoothing=label_smoothing)
    if not parts:
        raise ValueError("no target modality in the outputs: nothing to compute a loss on")
    per_mod = {name: s / n.clamp(min=1) for name, (s, n) in parts.items()}
    if weighting == "token":
        total = sum(s for s, _ in parts.values()) / sum(n for _, n in parts.values()).clamp(min=1)
    else:
        present = [(per_mod[name], (n > 0).float()) for name, (_, n) in parts.items()]
        total = sum(lm * p for lm, p in present) / sum(p for _, p in present).clamp(min=1)
    return total, per_mod
