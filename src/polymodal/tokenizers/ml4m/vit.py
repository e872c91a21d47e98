"""The ViT encoder and decoder of the released 4M tokenizers (apple/ml-4m), under the weights' own names.

Both work on 2D grids and keep them 2D at their ends, as the released folders expect:

- `ViTEncoder`: (B, C, H, W) -> ``proj`` (a p x p patch convolution, or 1 x 1 for feature maps) -> + ``pos_emb``
  -> pre-norm blocks -> + ``post_mlp(norm_mlp(x))`` (a tanh MLP, residual) -> (B, D, H/p, W/p).
- `ViTDecoder`: (B, D, h, w) -> + ``pos_emb`` -> blocks -> + tanh post-MLP -> ``out_proj`` to C*p*p per token
  -> un-patchify -> optional ``out_conv`` (two ConvNeXt blocks, the SAM-instance decoder) -> (B, C, h*p, w*p).

Neither has a final LayerNorm. ``pos_emb`` (1, D, gh, gw) is stored in the weights at the training grid and
resized bicubically to other grids, so a tokenizer trained at 224 px reads a 448 px input. Attention heads are
64-dimensional in every release (heads = width / 64); `vit_shape` reads the rest from a state dict.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from einops import rearrange
from torch import nn
from torch.nn import functional as F

from ...nn import EncoderBlock, sincos_2d
from ...nn.linear import Linear

HEAD_DIM = 64
NORM_EPS = 1e-6


class ViTShape(NamedTuple):
    """What a state dict says about one ViT: width, depth, channels on the pixel side, patch size, grid of its
    ``pos_emb``, and whether it has the tanh post-MLP / ConvNeXt output blocks."""

    dim: int
    depth: int
    channels: int
    patch_size: int
    grid: tuple[int, int]
    post_mlp: bool
    out_conv: bool


def vit_shape(state: dict[str, torch.Tensor], prefix: str, *, patch_size: int, patch_proj: bool = True) -> ViTShape:
    """Read a `ViTEncoder` (``prefix`` "encoder.") or `ViTDecoder` ("decoder.") size from its tensors.

    The decoder's channel count comes from ``out_proj`` (C * p * p rows when it un-patchifies), so ``patch_size``
    and ``patch_proj`` (from the folder's config) are needed to split it. Raises KeyError naming a missing tensor.
    """
    pos = _need(state, prefix + "pos_emb")
    dim = pos.shape[1]
    depth = len({k[len(prefix) + 7:].split(".")[0] for k in state if k.startswith(prefix + "blocks.")})
    if prefix + "proj.weight" in state:  # an encoder: proj is (D, C, p, p)
        w = state[prefix + "proj.weight"]
        channels, patch = w.shape[1], w.shape[2]
    else:
        rows = _need(state, prefix + "out_proj.weight").shape[0]
        patch = patch_size if patch_proj else 1
        channels = rows // (patch * patch)
    return ViTShape(dim, depth, channels, patch, (pos.shape[2], pos.shape[3]),
                    prefix + "post_mlp.fc1.weight" in state, any(k.startswith(prefix + "out_conv.") for k in state))


def _need(state: dict[str, torch.Tensor], key: str) -> torch.Tensor:
    if key not in state:
        raise KeyError(f"no tensor {key!r} in the weights")
    return state[key]


def num_heads(dim: int) -> int:
    """64-dimensional heads, as every released tokenizer; one head for widths under 64 (tiny test models)."""
    return max(1, dim // HEAD_DIM)


def position_table(grid: tuple[int, int], dim: int) -> torch.Tensor:
    """(1, D, gh, gw) sin-cos table to start a fresh model with (released folders bring their own ``pos_emb``)."""
    return rearrange(sincos_2d(grid[0], grid[1], dim), "1 (h w) d -> 1 d h w", h=grid[0], w=grid[1])


def resize_positions(pos: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(1, D, gh, gw) -> (1, (h w), D) at another grid: bicubic, corners not aligned, as the released models."""
    if tuple(pos.shape[-2:]) != tuple(grid):
        pos = F.interpolate(pos, size=grid, mode="bicubic", align_corners=False)
    return rearrange(pos, "1 d h w -> 1 (h w) d")


class PostMLP(nn.Module):
    """fc1 -> tanh -> fc2: the small MLP a released ViT adds (residually, after ``norm_mlp``) at its code end."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = Linear(dim, hidden)
        self.fc2 = Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.tanh(self.fc1(x)))


class ConvNeXtBlock(nn.Module):
    """Depthwise 7x7 conv -> LayerNorm over channels -> linear x4 -> GELU -> linear -> * gamma, residual.
    (B, C, H, W) -> (B, C, H, W); the SAM-instance decoder ends with two, against patch seams."""

    def __init__(self, dim: int):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=NORM_EPS)
        self.pwconv1 = Linear(dim, 4 * dim)
        self.pwconv2 = Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), 1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = rearrange(self.dwconv(x), "b c h w -> b h w c")
        h = self.gamma * self.pwconv2(F.gelu(self.pwconv1(self.norm(h))))
        return x + rearrange(h, "b h w c -> b c h w")


class _Trunk(nn.Module):
    """pos_emb + blocks + optional tanh post-MLP, shared by the encoder and the decoder."""

    def __init__(self, dim: int, depth: int, grid: tuple[int, int], post_mlp: bool, mlp_ratio: float = 4.0):
        super().__init__()
        hidden = int(mlp_ratio * dim)
        self.register_buffer("pos_emb", position_table(grid, dim))
        self.blocks = nn.ModuleList(EncoderBlock(dim, num_heads(dim), hidden, norm_eps=NORM_EPS) for _ in range(depth))
        self.norm_mlp = nn.LayerNorm(dim, eps=NORM_EPS) if post_mlp else None
        self.post_mlp = PostMLP(dim, hidden) if post_mlp else None

    def run(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """(B, h*w, D) tokens on a ``grid`` -> (B, h*w, D)."""
        x = x + resize_positions(self.pos_emb, grid).to(x.dtype)
        for block in self.blocks:
            x = block(x)
        if self.post_mlp is not None:
            # The released models run this MLP in float32 even under autocast; so do we.
            x = self._post_mlp(x)
        return x

    def _post_mlp(self, x: torch.Tensor) -> torch.Tensor:
        norm, mlp = self.norm_mlp, self.post_mlp
        if norm.weight.dtype == torch.float32:
            return x.float() + mlp(norm(x.float()))
        # Weights held in bf16 (``tokenizer.to(torch.bfloat16)``): a float32 input would meet bf16 norm weights
        # ("mixed dtype (CPU)"), so the weights are read in float32 and the result goes back to the trunk's dtype.
        f = lambda t: None if t is None else t.float()  # noqa: E731
        h = F.layer_norm(x.float(), norm.normalized_shape, f(norm.weight), f(norm.bias), norm.eps)
        h = F.linear(torch.tanh(F.linear(h, f(mlp.fc1.weight), f(mlp.fc1.bias))), f(mlp.fc2.weight), f(mlp.fc2.bias))
        return (x.float() + h).to(x.dtype)


class ViTEncoder(_Trunk):
    """(B, C, H, W) -> (B, D, H/p, W/p). ``patch_size`` 1 with a 1 x 1 ``proj`` encodes a feature map."""

    def __init__(self, *, channels: int, dim: int, depth: int, patch_size: int, grid: tuple[int, int],
                 post_mlp: bool = True):
        super().__init__(dim, depth, grid, post_mlp)
        self.patch_size = patch_size
        self.proj = nn.Conv2d(channels, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.patch_size
        if x.shape[-2] % p or x.shape[-1] % p:
            raise ValueError(f"image of {x.shape[-2]} x {x.shape[-1]} pixels is not a multiple of the patch size {p}")
        grid = (x.shape[-2] // p, x.shape[-1] // p)
        h = self.run(rearrange(self.proj(x), "b d h w -> b (h w) d"), grid)
        return rearrange(h, "b (h w) d -> b d h w", h=grid[0], w=grid[1])


class ViTDecoder(_Trunk):
    """(B, D, h, w) -> (B, C, h*p, w*p); ``patch_size`` 1 gives a feature map on the token grid."""

    def __init__(self, *, channels: int, dim: int, depth: int, patch_size: int, grid: tuple[int, int],
                 post_mlp: bool = True, out_conv: bool = False):
        super().__init__(dim, depth, grid, post_mlp)
        self.channels, self.patch_size = channels, patch_size
        self.out_proj = Linear(dim, channels * patch_size * patch_size)
        self.out_conv = nn.Sequential(ConvNeXtBlock(channels), ConvNeXtBlock(channels)) if out_conv else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grid = (x.shape[-2], x.shape[-1])
        h = self.out_proj(self.run(rearrange(x, "b d h w -> b (h w) d"), grid))
        p = self.patch_size
        out = rearrange(h, "b (h w) (c p1 p2) -> b c (h p1) (w p2)", h=grid[0], w=grid[1], p1=p, p2=p)
        return out if self.out_conv is None else self.out_conv(out)
