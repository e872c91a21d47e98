"""The Bottleneck MLP of the released 4M vector tokenizers (global embeddings, human poses), weights' own names.

``linear_in`` -> per block: x + ``blocks.i.block`` (thin -> wide, GELU, wide -> thin) of ``layernorms.i``(x) ->
``linear_out``. Applied to each position of a (B, C, H, W) grid (the released vector tokenizers see a vector as a
1 x 1 grid). The reference names its size ``BottleneckMLP/B_<blocks>-Wi_<thin>``; `mlp_shape` reads the same
numbers (and the wide width) from the tensors.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from einops import rearrange
from torch import nn

from ...nn.linear import Linear


class MLPShape(NamedTuple):
    dim_in: int
    dim_out: int
    thin: int
    wide: int
    depth: int


def mlp_shape(state: dict[str, torch.Tensor], prefix: str) -> MLPShape:
    """Sizes of the `BottleneckMLP` under ``prefix`` ("encoder." / "decoder."); KeyError naming a missing tensor."""
    for key in ("linear_in.weight", "linear_out.weight", "blocks.0.block.0.weight"):
        if prefix + key not in state:
            raise KeyError(f"no tensor {prefix + key!r} in the weights")
    w_in, w_out = state[prefix + "linear_in.weight"], state[prefix + "linear_out.weight"]
    depth = len({k[len(prefix) + 7:].split(".")[0] for k in state if k.startswith(prefix + "blocks.")})
    return MLPShape(w_in.shape[1], w_out.shape[0], w_in.shape[0], state[prefix + "blocks.0.block.0.weight"].shape[0],
                    depth)


class BottleneckBlock(nn.Module):
    """thin -> wide -> GELU -> thin, under the reference's ``block.0`` / ``block.2`` names."""

    def __init__(self, thin: int, wide: int):
        super().__init__()
        self.block = nn.Sequential(Linear(thin, wide), nn.GELU(), Linear(wide, thin))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class BottleneckMLP(nn.Module):
    """(B, dim_in, H, W) -> (B, dim_out, H, W), position by position."""

    def __init__(self, *, dim_in: int, dim_out: int, thin: int, wide: int, depth: int):
        super().__init__()
        self.linear_in = Linear(dim_in, thin)
        self.blocks = nn.ModuleList(BottleneckBlock(thin, wide) for _ in range(depth))
        self.layernorms = nn.ModuleList(nn.LayerNorm(thin) for _ in range(depth))
        self.linear_out = Linear(thin, dim_out)

    @classmethod
    def of_shape(cls, s: MLPShape) -> BottleneckMLP:
        return cls(dim_in=s.dim_in, dim_out=s.dim_out, thin=s.thin, wide=s.wide, depth=s.depth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        z = self.linear_in(rearrange(x, "b c h w -> b (h w) c"))
        for block, norm in zip(self.blocks, self.layernorms, strict=True):
            z = z + block(norm(z))
        return rearrange(self.linear_out(z), "b (h w) c -> b c h w", h=h, w=w)

