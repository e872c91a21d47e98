"""Pre-norm transformer blocks: the encoder block and the decoder block with cross-attention."""

from __future__ import annotations

import torch
from torch import nn

from .attention import ContextMask, CrossAttention, Segment, SelfAttention
from .kv_cache import LayerCache
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

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None = None, *,
                segments: list[Segment] | None = None) -> torch.Tensor:
        """x (B, N, D) -> (B, N, D); attention under ``key_mask`` or split into ``segments`` (`SelfAttention`)."""
        x = x + self.attn(self.norm1(x), key_mask=key_mask, segments=segments)
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

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, *,
                segments: list[Segment] | None = None, self_mask: torch.Tensor | None = None,
                context_mask: ContextMask | None = None, cache: LayerCache | None = None) -> torch.Tensor:
        """Queries x (B, N, D) -> (B, N, D), reading the context (B, M, D) under ``context_mask``.

        Self-attention runs over ``segments`` or under ``self_mask`` (see `SelfAttention`). With ``cache``
        (`new_cache`), cross-attention reads the context's keys and values projected there (``context`` and
        ``context_mask`` are unused); if the cache holds self-attention keys and values, x are the next tokens of
        an autoregressive sequence, which read and extend them (``segments`` and ``self_mask`` are unused).
        """
        if cache is not None and cache.self_kv is not None:
            x = x + self.self_attn(self.norm1(x), cache=cache.self_kv)
        else:
            x = x + self.self_attn(self.norm1(x), key_mask=self_mask, segments=segments)
        if cache is None:
            x = x + self.cross_attn(self.query_norm(x), self.context_norm(context), key_mask=context_mask)
        else:
            x = x + self.cross_attn(self.query_norm(x), None, cache=cache.context)
        return x + self.mlp(self.norm2(x))

    def new_cache(self, context: torch.Tensor, valid: torch.Tensor, capacity: int | None = None, *,
                  mask: ContextMask | None = None) -> LayerCache:
        """A `LayerCache` against the context (B, M, D) with valid rows (B, M): its keys and values projected
        once, and with ``capacity``, room for that many autoregressive tokens. ``mask``: the context's
        `ContextMask`, if already built."""
        self_kv = None if capacity is None else self.self_attn.new_cache(context.shape[0], capacity, like=context)
        return LayerCache(self_kv, self.cross_attn.project(self.context_norm(context), valid, mask))
