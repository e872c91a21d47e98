"""AdamW with 4M's recipe and the learning-rate schedule (a pure function of progress)."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..config import OptimConfig

# Parameters that are never decayed: norms, biases, embedding tables, position tables, modality embeddings and
# the mask token (4M's no_weight_decay set, by name).
_NO_DECAY_SUFFIXES = ("bias", "pos_emb", "mod_emb", "mask_token")


def no_weight_decay(name: str, param: torch.Tensor, module: nn.Module | None) -> bool:
    if param.ndim <= 1 or name.split(".")[-1] in _NO_DECAY_SUFFIXES:
        return True
    return isinstance(module, (nn.Embedding, nn.LayerNorm))


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    owners = {}
    for mod_name, mod in model.named_modules():
        for p_name, _ in mod.named_parameters(recurse=False):
            owners[f"{mod_name}.{p_name}" if mod_name else p_name] = mod
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if no_weight_decay(name, p, owners.get(name)) else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def peak_lr(cfg: OptimConfig, global_batch: int) -> float:
    """4M's linear scaling: lr = base_lr * global batch / 256."""
    return cfg.base_lr * global_batch / 256


def build_optimizer(model: nn.Module, cfg: OptimConfig, global_batch: int) -> torch.optim.AdamW:
    fused = all(p.device.type == "cuda" for p in model.parameters())
    return torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=peak_lr(cfg, global_batch),
                             betas=tuple(cfg.betas), eps=cfg.eps, fused=fused or None)


def lr_at(progress: float, warmup: float, total: float, *, peak: float, final: float,
          schedule: str = "cosine") -> float:
    """Learning rate at ``progress`` (steps or tokens, same unit as ``warmup`` and ``total``).

    Linear warmup from 0 to ``peak``, then cosine (or linear, or constant) decay to ``final`` at ``total``.
    """
    if warmup > 0 and progress < warmup:
        return peak * progress / warmup
    if schedule == "constant" or total <= warmup:
        return peak
    t = min(1.0, (progress - warmup) / (total - warmup))
    if schedule == "linear":
        return final + (peak - final) * (1 - t)
    if schedule == "cosine":
        return final + 0.5 * (peak - final) * (1 + math.cos(math.pi * t))
    raise ValueError(f"unknown schedule {schedule!r}: choose cosine, linear or constant")


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
