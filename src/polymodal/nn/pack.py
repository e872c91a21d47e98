"""Packing: move each row's used entries to the front, so that no compute goes to padding.

Every variable-length layout of the model goes through these two functions: an embedding selecting the positions
it embeds, the encoder packing the inputs of all modalities, the decoder packing the queries of all targets,
guided generation packing its passes. A stable sort of "not used" puts the used entries first, in their order.
"""

from __future__ import annotations

import torch


def pack_order(used: torch.Tensor) -> torch.Tensor:
    """(B, N) bool -> (B, K) int64 indices: each row's used positions in ascending order, then its unused ones.

    K is the largest count of used positions in a row, so a row with fewer ends in indices of unused positions;
    ``take(used, pack_order(used))`` tells them apart.
    """
    k = int(used.sum(dim=1).max()) if used.numel() else 0
    return torch.argsort((~used).to(torch.uint8), dim=1, stable=True)[:, :k]


def take(t: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """t (B, N, ...) at idx (B, K) -> (B, K, ...)."""
    return t[torch.arange(t.shape[0], device=t.device)[:, None], idx]
