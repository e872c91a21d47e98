"""Pre-norm transformer blocks: the encoder block and the decoder block with cross-attention."""

from __future__ import annotations

import torch
from torch import nn

from .attention import CrossAttention, Segment, SelfAttention
from .mlp import Mlp


def _norm(dim: int, eps: float, bias: bool) -> nn.LayerNorm:
    return nn.LayerNorm(dim, eps=eps, bias=bias)


class EncoderBlock(nn.Module):
    """x + attn(norm1 x), then + mlp(norm2 x)."""

    def __init__(self, dim: int, heads: int, mlp_hidden: int, *, act: str = "gelu", gated_mlp: bool = False,
                 qkv_bias: bool = True, proj_bias: bool = True, mlp_bias: bool = True, norm_bias: bool = True,
                 qk_norm: bool = False, norm_eps: float = 1e-6):
        super().__init__()
        self.norm1 = _norm(dim, norm_eps, norm_bias)
        self.attn = SelfAttention(dim, heads, qkv_bias=qkv_bias, proj_bias=proj_bias, qk_norm=qk_norm,
                                  norm_eps=norm_eps, norm_bias=norm_bias)
        self.norm2 = _norm(dim, norm_eps, norm_bias)
        self.mlp = Mlp(dim, mlp_hidden, act=act, gated=gated_mlp, bias=mlp_bias)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), key_mask=key_mask)
        return x + self.mlp(self.norm2(x))


class DecoderBlock(nn.Module):
    """x + self_attn(norm1 x), + cross_attn(query_norm x, context_norm c), + mlp(norm2 x)."""

    def __init__(self, dim: int, heads: int, mlp_hidden: int, *, act: str = "gelu", gated_mlp: bool = False,
                 qkv_bias: bool = True, proj_bias: bool = True, mlp_bias: bool = True, norm_bias: bool = True,
                 qk_norm: bool = False, norm_eps: float = 1e-6):
        super().__init__()
        kw = dict(qkv_bias=qkv_bias, proj_bias=proj_bias, qk_norm=qk_norm, norm_eps=norm_eps, norm_bias=norm_bias)
        self.norm1 = _norm(dim, norm_eps, norm_bias)
        self.self_attn = SelfAttention(dim, heads, **kw)
        self.query_norm = _norm(dim, norm_eps, norm_bias)
        self.context_norm = _norm(dim, norm_eps, norm_bias)
        self.cross_attn = CrossAttention(dim, heads, **kw)
        self.norm2 = _norm(dim, norm_eps, norm_bias)
        self.mlp = Mlp(dim, mlp_hidden, act=act, gated=gated_mlp, bias=mlp_bias)

    def forward(self, x: torch.Tensor, context: torch.Tensor, *, segments: list[Segment] | None = None,
                self_mask: torch.Tensor | None = None, context_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.self_attn(self.norm1(x), key_mask=self_mask, segments=segments)
        x = x + self.cross_attn(self.query_norm(x), self.context_norm(context), key_mask=context_mask)
        return x + self.mlp(self.norm2(x))
