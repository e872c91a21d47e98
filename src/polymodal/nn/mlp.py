"""Transformer MLPs: GELU (fc2(act(fc1 x))) or SwiGLU (fc2(act(fc1 x) * fc3 x))."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .linear import Linear


class Mlp(nn.Module):
    """(B, N, dim) -> (B, N, dim). Parameter names follow 4M (fc1, fc2, fc3) so official weights load as they are."""

    def __init__(self, dim: int, hidden: int, *, act: str = "gelu", gated: bool = False, bias: bool = True):
        super().__init__()
        self.act = {"gelu": F.gelu, "silu": F.silu}[act]
        self.fc1 = Linear(dim, hidden, bias=bias)
        self.fc2 = Linear(hidden, dim, bias=bias)
        self.fc3 = Linear(dim, hidden, bias=bias) if gated else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.fc1(x))
        if self.fc3 is not None:
            h = h * self.fc3(x)
        return self.fc2(h)
