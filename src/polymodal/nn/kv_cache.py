"""Incremental decoding: a key/value cache for decoder self-attention and cross-attention K/V computed once.

Autoregressive decoding without a cache re-runs the decoder over the whole prefix for every new token
(O(T^2) query rows over T steps). With a cache each step feeds only the new token: its self-attention keys and
values are appended to the layer's buffer, and cross-attention reads K/V of the (fixed) context that were projected
once. The functions here use the parameters of the existing modules (`SelfAttention`, `CrossAttention`,
`DecoderBlock`), so a model needs no change to decode incrementally; numerics are those of the uncached blocks.

Cross-attention rows with no valid context key at all get a zero attention output (before the output
projection), which is what attention over an empty context computes; `key_padding_mask` instead keeps one padding
key so that such rows stay finite. Generation needs the empty case: an unconditional guidance pass may have no
encoder token, batched with conditional passes that have many.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange
from torch.nn import functional as F

from .attention import CrossAttention, SelfAttention
from .blocks import DecoderBlock


@dataclass
class LayerCache:
    """One decoder layer's state. Self-attention buffers are (B, H, capacity, Dh), filled up to ``length``;
    cross-attention K/V are (B, H, M, Dh) with ``context_mask`` (B, 1, 1, M) True = may attend, or None."""

    k: torch.Tensor
    v: torch.Tensor
    cross_k: torch.Tensor
    cross_v: torch.Tensor
    context_mask: torch.Tensor | None
    has_context: torch.Tensor  # (B, 1, 1, 1) float: 0 where a row has no valid context key
    length: int = 0


def context_kv(attn: CrossAttention, context: torch.Tensor,
               valid: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """K, V (B, H, M, Dh) of a normed context (B, M, D), with the module's key norm applied. With ``valid``
    (B, M), only valid rows are projected (padding rows get zeros, and are masked anyway): a guided batch pads its
    small unconditional context to the conditional one's length."""
    if valid is not None and not bool(valid.all()):
        kv = context.new_zeros(*context.shape[:2], attn.kv.out_features)
        kv[valid] = attn.kv(context[valid])
    else:
        kv = attn.kv(context)
    k, v = rearrange(kv, "b m (two h d) -> two b h m d", two=2, h=attn.heads).unbind(0)
    if attn.qk_norm is not None:
        k = attn.qk_norm.k_norm(k)
    return k, v


def context_masks(valid: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor | None, torch.Tensor]:
    """(B, M) valid context keys -> SDPA mask (B, 1, 1, M) or None, and the (B, 1, 1, 1) has-any-key factor."""
    has = valid.any(dim=1)
    if bool(valid.all()):
        return None, has.to(dtype)[:, None, None, None]
    mask = valid.clone()
    mask[:, 0] |= ~has  # keep the row finite; its output is zeroed by ``has``
    return mask[:, None, None, :], has.to(dtype)[:, None, None, None]


def cross_attend(attn: CrossAttention, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                 mask: torch.Tensor | None, has_context: torch.Tensor) -> torch.Tensor:
    """Queries x (B, N, D) against precomputed K/V (B, H, M, Dh) -> (B, N, D)."""
    q = rearrange(attn.q(x), "b n (h d) -> b h n d", h=attn.heads)
    if attn.qk_norm is not None:
        q = attn.qk_norm.q_norm(q)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask) * has_context
    return attn.proj(rearrange(out, "b h n d -> b n (h d)"))


def self_attend(attn: SelfAttention, x: torch.Tensor, *, mask: torch.Tensor | None = None,
                is_causal: bool = False, cache: LayerCache | None = None) -> torch.Tensor:
    """x (B, N, D) -> (B, N, D). Without a cache: full attention over x under ``mask`` (B, 1, N, N) or causal.
    With a cache: x are the next N tokens; they attend to every cached token and causally among themselves."""
    q, k, v = attn._qkv(x)
    if attn.qk_norm is not None:
        q, k = attn.qk_norm(q, k)
    if cache is None:
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal and mask is None)
    else:
        start, n = cache.length, x.shape[1]
        if start + n > cache.k.shape[2]:
            raise ValueError(f"KV cache holds {cache.k.shape[2]} tokens; {start + n} were fed")
        cache.k[:, :, start:start + n] = k
        cache.v[:, :, start:start + n] = v
        cache.length = start + n
        keys, values = cache.k[:, :, :start + n], cache.v[:, :, :start + n]
        causal = None
        if n > 1:  # one new token may attend to everything cached; several attend causally among themselves
            causal = (torch.arange(start + n, device=x.device)[None, :]
                      <= torch.arange(start, start + n, device=x.device)[:, None])
        out = F.scaled_dot_product_attention(q, keys, values, attn_mask=causal)
    return attn.proj(rearrange(out, "b h n d -> b n (h d)"))


def new_caches(blocks: list[DecoderBlock], context: torch.Tensor, valid: torch.Tensor,
               capacity: int) -> list[LayerCache]:
    """Empty self-attention buffers for ``capacity`` tokens and each layer's context K/V, computed once."""
    b = context.shape[0]
    mask, has = context_masks(valid, context.dtype)
    caches = []
    for block in blocks:
        attn = block.self_attn
        head_dim = attn.qkv.out_features // 3 // attn.heads
        buf = context.new_zeros(b, attn.heads, capacity, head_dim)
        ck, cv = context_kv(block.cross_attn, block.context_norm(context), valid)
        caches.append(LayerCache(buf, buf.clone(), ck, cv, mask, has))
    return caches


def decoder_block(block: DecoderBlock, x: torch.Tensor, context: torch.Tensor | None = None, *,
                  context_valid: torch.Tensor | None = None, self_mask: torch.Tensor | None = None,
                  is_causal: bool = False, cache: LayerCache | None = None) -> torch.Tensor:
    """One `DecoderBlock` on x (B, N, D), either with a cache (context K/V taken from it) or on the full context
    (B, M, D) with ``context_valid`` (B, M); rows without any valid context key get zero cross-attention."""
    x = x + self_attend(block.self_attn, block.norm1(x), mask=self_mask, is_causal=is_causal, cache=cache)
    if cache is not None:
        k, v, mask, has = cache.cross_k, cache.cross_v, cache.context_mask, cache.has_context
    else:
        k, v = context_kv(block.cross_attn, block.context_norm(context), context_valid)
        mask, has = context_masks(context_valid, x.dtype)
    x = x + cross_attend(block.cross_attn, block.query_norm(x), k, v, mask, has)
    return x + block.mlp(block.norm2(x))
