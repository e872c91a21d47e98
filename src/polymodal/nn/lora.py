"""LoRA (low-rank adapters, Hu et al. 2021) on the attention and MLP projections.

A wrapped projection computes ``x W^T + b + scale * dropout(x) A^T B^T`` with A (r, in), B (out, r) and
``scale = alpha / r``. B starts at zero, so a freshly wrapped model computes exactly what the base computed; only
A and B train. `merge_lora` folds the adapters back into plain ``nn.Linear`` layers (``W + scale * B @ A``) for
inference at the base model's cost.

`LoRALinear` is an ``nn.Linear`` that keeps the base layer's ``weight`` and ``bias`` under their own names and
adds ``lora_A`` and ``lora_B`` beside them, so a wrapped model's state dict is the base's plus
``<layer>.lora_A/lora_B`` entries: base folders, training checkpoints and 4M's official names stay as they are.
(``peft`` wraps a layer as ``<layer>.base_layer`` with ``lora_A.default.weight``, which renames every wrapped base
weight, and it would bring ``accelerate`` as a new dependency; see tests/test_lora.py for the parity this module is
held to.)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Protocol

import torch
from torch import nn

from .attention import CrossAttention, SelfAttention
from .linear import Linear, linear
from .mlp import Mlp

# The projections LoRA may wrap: attention's packed qkv, cross-attention's q and packed kv, both output projections
# (proj), and the MLP's fc1/fc2 (and SwiGLU's gate fc3). Names are the attribute names in nn.attention / nn.mlp.
LORA_TARGETS = ("qkv", "proj", "q", "kv", "fc1", "fc2", "fc3")
_OWNERS = (SelfAttention, CrossAttention, Mlp)


class LoRASettings(Protocol):
    """What `apply_lora` reads (``config.LoRAConfig`` is one)."""

    r: int
    alpha: float
    dropout: float
    targets: tuple[str, ...]
    train: tuple[str, ...]


class LoRALinear(nn.Linear):
    """An ``nn.Linear`` (B, ..., in) -> (B, ..., out) with a rank-``r`` adapter; shares the base layer's
    ``weight`` and ``bias`` parameters (not copies)."""

    def __init__(self, base: nn.Linear, *, r: int, alpha: float, dropout: float = 0.0,
                 generator: torch.Generator | None = None):
        if r < 1:
            raise ValueError(f"LoRA rank r must be >= 1, got {r}")
        nn.Module.__init__(self)  # not nn.Linear.__init__: it would allocate and initialize a new weight
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight = base.weight
        self.bias = base.bias
        self.r, self.alpha, self.scale = r, float(alpha), float(alpha) / r
        w = base.weight
        self.lora_A = nn.Parameter(torch.empty(r, self.in_features, device=w.device, dtype=w.dtype))
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, r, device=w.device, dtype=w.dtype))
        # A as nn.Linear initializes its weight (and as peft does): kaiming-uniform with a = sqrt(5). B = 0 keeps
        # the wrapped layer equal to the base at the start.
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5), generator=generator)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = linear(x, self.weight, self.bias)
        return out + linear(linear(self.dropout(x), self.lora_A), self.lora_B) * self.scale

    def delta(self) -> torch.Tensor:
        """(out, in) ``scale * B @ A``, computed in float32 at least."""
        dt = torch.promote_types(self.lora_A.dtype, torch.float32)
        return (self.lora_B.to(dt) @ self.lora_A.to(dt)) * self.scale

    def merged(self) -> nn.Linear:
        """A plain ``nn.Linear`` with weight ``W + scale * B @ A`` (the same bias)."""
        lin = Linear(self.in_features, self.out_features, bias=self.bias is not None,
                        device=self.weight.device, dtype=self.weight.dtype)
        with torch.no_grad():
            lin.weight.copy_((self.weight.to(self.delta().dtype) + self.delta()).to(self.weight.dtype))
            if self.bias is not None:
                lin.bias.copy_(self.bias)
        return lin

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, r={self.r}, alpha={self.alpha:g}"


def _targets(model: nn.Module, targets: Iterable[str]) -> list[tuple[nn.Module, str, nn.Linear]]:
    """(owner, attribute, layer) of every projection named in ``targets`` inside attention and MLP modules."""
    targets = tuple(targets)
    unknown = [t for t in targets if t not in LORA_TARGETS]
    if unknown:
        raise ValueError(f"unknown LoRA target(s) {', '.join(map(repr, unknown))}; allowed: "
                         f"{', '.join(LORA_TARGETS)}")
    found = []
    for owner in model.modules():
        if not isinstance(owner, _OWNERS):
            continue
        children = dict(owner.named_children())
        for name in targets:
            layer = children.get(name)
            if isinstance(layer, nn.Linear):
                found.append((owner, name, layer))
    return found


def add_lora(model: nn.Module, *, r: int, alpha: float, dropout: float = 0.0, targets: Iterable[str] = LORA_TARGETS,
             generator: torch.Generator | None = None) -> list[str]:
    """Wrap the ``targets`` projections of every attention and MLP module in ``model`` (in place) with rank-``r``
    adapters; returns the names of the new parameters. Freezes nothing (see `apply_lora`)."""
    if any(isinstance(m, LoRALinear) for m in model.modules()):
        raise ValueError("this model already has LoRA adapters")
    found = _targets(model, targets)
    if not found:
        raise ValueError(f"no LoRA target ({', '.join(targets)}) in this model's attention or MLP layers")
    for owner, name, layer in found:
        setattr(owner, name, LoRALinear(layer, r=r, alpha=alpha, dropout=dropout, generator=generator))
    return lora_names(model)


def apply_lora(model: nn.Module, cfg: LoRASettings, *, also_train: Iterable[str] = (),
               generator: torch.Generator | None = None) -> list[str]:
    """`add_lora` with ``cfg``'s rank, alpha, dropout and targets, then freeze every parameter except the adapters
    and those whose name starts with a prefix in ``cfg.train`` or ``also_train`` (new modality embeddings and
    heads). Returns the names of the trainable parameters (a tied one under each name); a prefix that names no
    parameter is refused."""
    add_lora(model, r=cfg.r, alpha=cfg.alpha, dropout=cfg.dropout, targets=cfg.targets, generator=generator)
    prefixes = tuple(cfg.train) + tuple(also_train)
    names = [n for n, _ in model.named_parameters()]
    unused = [p for p in prefixes if not any(n == p or n.startswith(p.rstrip(".") + ".") for n in names)]
    if unused:
        tops = sorted({n.split(".")[0] for n in names})
        raise ValueError(f"lora.train: {', '.join(map(repr, unused))} names no parameter of this model; parameter "
                         f"names start with {', '.join(tops)} (e.g. encoder_embeddings.<domain>)")
    every = list(model.named_parameters(remove_duplicate=False))  # a tied parameter under each of its names
    # Decided per parameter: a tied table trains if any of its names is named.
    keep = {id(p) for n, p in every if _is_lora(n) or any(n == q or n.startswith(q.rstrip(".") + ".")
                                                           for q in prefixes)}
    for _, p in every:
        p.requires_grad_(id(p) in keep)
    return [n for n, p in every if id(p) in keep]


def _is_lora(name: str) -> bool:
    return name.endswith(".lora_A") or name.endswith(".lora_B")


def lora_names(model: nn.Module) -> list[str]:
    """Names of every adapter parameter (``<layer>.lora_A``, ``<layer>.lora_B``), in module order."""
    return [n for n, _ in model.named_parameters() if _is_lora(n)]


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapters' tensors by parameter name (detached, on the model's device)."""
    return {n: p.detach() for n, p in model.named_parameters() if _is_lora(n)}


def merge_lora(model: nn.Module) -> nn.Module:
    """Replace every `LoRALinear` in ``model`` (in place) by its merged ``nn.Linear``; returns ``model``, which then
    has the base model's structure and state-dict names."""
    for owner in list(model.modules()):
        for name, child in list(owner.named_children()):
            if isinstance(child, LoRALinear):
                setattr(owner, name, child.merged())
    return model


def merged_state_dict(state: Mapping[str, torch.Tensor], scale: float) -> dict[str, torch.Tensor]:
    """A wrapped model's state dict with each ``<layer>.weight`` replaced by ``W + scale * B @ A`` and the adapter
    entries dropped: the state dict of the merged (base-shaped) model, for saving without building it."""
    out = {k: v for k, v in state.items() if not _is_lora(k)}
    for key in state:
        if key.endswith(".lora_A"):
            layer = key[: -len(".lora_A")]
            w, a, b = state[f"{layer}.weight"], state[key], state[f"{layer}.lora_B"]
            dt = torch.promote_types(w.dtype, torch.float32)
            out[f"{layer}.weight"] = (w.to(dt) + scale * (b.to(dt) @ a.to(dt))).to(w.dtype)
    return out
