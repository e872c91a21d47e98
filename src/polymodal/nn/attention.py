"""Multi-head attention on `scaled_dot_product_attention`, with 4M's parameter layout.

Self-attention packs q, k, v in one `qkv` projection; cross-attention has `q` and a packed `kv`. Masks are
boolean with True = "may attend" (SDPA's convention and polymodal's). Both modules take a cache (`nn.kv_cache`)
for incremental decoding, so generation runs these same modules rather than a copy of their arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from einops import rearrange
from torch import nn

from .kv_cache import ContextKV, KVCache
from .linear import Linear
from .low_precision import attend


@dataclass(frozen=True)
class Segment:
    """A run of query positions [start, end) that attend only among themselves (one modality in the decoder).

    Segments carry no padding: the decoder uses them only when every query is real, and packs queries under a
    block-diagonal mask otherwise.
    """

    start: int
    end: int
    causal: bool = False


def _split_heads(t: torch.Tensor, heads: int) -> torch.Tensor:
    return rearrange(t, "b n (h d) -> b h n d", h=heads)


class ContextMask(NamedTuple):
    """Which context keys each sample's queries may read (`context_mask`), built once per decoder pass."""

    mask: torch.Tensor | None  # (B, 1, 1, M) True = may attend; None when every key is valid
    empty: torch.Tensor | None  # (B, 1, 1, 1) True where a sample has no valid key; None when none is empty


def context_mask(valid: torch.Tensor) -> ContextMask:
    """(B, M) valid context keys -> `ContextMask`.

    A sample without any valid key reads nothing: its cross-attention output is zero, which is attention over an
    empty set (ml-4m's pass with no encoder token: an unconditional guidance pass, generation from nothing). Its
    mask keeps key 0 so that the softmax stays finite before the output is zeroed.
    """
    has = valid.any(dim=1)
    every_key, every_sample = torch.stack([valid.all(), has.all()]).tolist()  # one device sync for both
    if every_key:
        return ContextMask(None, None)
    mask = valid.clone()
    mask[:, 0] |= ~has
    return ContextMask(mask[:, None, None, :], None if every_sample else ~has[:, None, None, None])


def key_padding_mask(valid: torch.Tensor | None) -> torch.Tensor | None:
    """(B, M) valid keys -> (B, 1, 1, M) SDPA mask, or None if every key is valid.

    A row with no valid key at all would give NaN; such rows (samples with nothing to attend to) keep key 0,
    which holds padding, so their output is finite and ignored downstream.
    """
    return None if valid is None else context_mask(valid).mask


class QKNorm(nn.Module):
    """LayerNorm on each head's queries and keys (optional; stabilizes large models)."""

    def __init__(self, head_dim: int, eps: float, bias: bool):
        super().__init__()
        self.q_norm = nn.LayerNorm(head_dim, eps=eps, bias=bias)
        self.k_norm = nn.LayerNorm(head_dim, eps=eps, bias=bias)

    def forward(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.q_norm(q), self.k_norm(k)


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, *, qkv_bias: bool = True, proj_bias: bool = True,
                 qk_norm: bool = False, norm_eps: float = 1e-6, norm_bias: bool = True):
        super().__init__()
        self.heads = heads
        self.qkv = Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = Linear(dim, dim, bias=proj_bias)
        self.qk_norm = QKNorm(dim // heads, norm_eps, norm_bias) if qk_norm else None

    def forward(self, x: torch.Tensor, *, key_mask: torch.Tensor | None = None,
                segments: list[Segment] | None = None, cache: KVCache | None = None) -> torch.Tensor:
        """x (B, N, D) -> (B, N, D).

        ``key_mask`` (B, 1, 1 or N, N) applies to full attention over all N; ``segments`` instead splits N into
        independent runs (the decoder's per-modality attention): cheaper than one (N, N) block-diagonal mask,
        and causal runs take SDPA's fast causal path. With ``cache``, x are the next N tokens of a sequence whose
        earlier tokens the cache holds: they attend to every cached token and causally among themselves, and
        their keys and values join the cache (what a causal segment over the whole prefix computes).
        """
        q, k, v = rearrange(self.qkv(x), "b n (three h d) -> three b h n d", three=3, h=self.heads).unbind(0)
        if self.qk_norm is not None:
            q, k = self.qk_norm(q, k)
        if cache is not None:
            start, n = cache.length, x.shape[1]
            k, v = cache.append(k, v)
            causal = None
            if n > 1:  # one new token may attend to everything cached; several attend causally among themselves
                causal = (torch.arange(start + n, device=x.device)[None, :]
                          <= torch.arange(start, start + n, device=x.device)[:, None])
            out = attend(q, k, v, attn_mask=causal)
        elif segments is None:
            out = attend(q, k, v, attn_mask=key_mask)
        else:
            # split (not slicing): its backward concatenates, where a slice's backward fills a full-size zero
            # gradient per segment, which dominated the decoder's backward pass.
            sizes = [s.end - s.start for s in segments]
            if segments[0].start != 0 or sum(sizes) != x.shape[1]:
                raise ValueError("decoder segments must tile the query axis in order")
            parts = [attend(qs, ks, vs, is_causal=s.causal)
                     for s, qs, ks, vs in zip(segments, q.split(sizes, 2), k.split(sizes, 2), v.split(sizes, 2))]
            out = torch.cat(parts, dim=2)
        return self.proj(rearrange(out, "b h n d -> b n (h d)"))

    def new_cache(self, batch: int, capacity: int, *, like: torch.Tensor) -> KVCache:
        """An empty `KVCache` for ``capacity`` tokens of ``batch`` rows (device and dtype of ``like``)."""
        return KVCache.empty(batch, self.heads, self.qkv.out_features // 3 // self.heads, capacity, like=like)


class CrossAttention(nn.Module):
    def __init__(self, dim: int, heads: int, *, qkv_bias: bool = True, proj_bias: bool = True,
                 qk_norm: bool = False, norm_eps: float = 1e-6, norm_bias: bool = True):
        super().__init__()
        self.heads = heads
        self.q = Linear(dim, dim, bias=qkv_bias)
        self.kv = Linear(dim, 2 * dim, bias=qkv_bias)
        self.proj = Linear(dim, dim, bias=proj_bias)
        self.qk_norm = QKNorm(dim // heads, norm_eps, norm_bias) if qk_norm else None

    def forward(self, x: torch.Tensor, context: torch.Tensor | None, *, key_mask: ContextMask | None = None,
                cache: ContextKV | None = None) -> torch.Tensor:
        """x (B, N, D) queries, context (B, M, D), ``key_mask`` from `context_mask` -> (B, N, D).

        With ``cache`` (`project`), the context's keys, values and mask are the cache's; ``context`` is unused.
        """
        q = _split_heads(self.q(x), self.heads)
        if self.qk_norm is not None:
            q = self.qk_norm.q_norm(q)
        if cache is not None:
            k, v, key_mask = cache
        else:
            k, v = self._keys_values(self.kv(context))
        out = attend(q, k, v, attn_mask=None if key_mask is None else key_mask.mask)
        if key_mask is not None and key_mask.empty is not None:
            out = out.masked_fill(key_mask.empty, 0.0)
        return self.proj(rearrange(out, "b h n d -> b n (h d)"))

    def project(self, context: torch.Tensor, valid: torch.Tensor, mask: ContextMask | None = None) -> ContextKV:
        """The `ContextKV` of a context (B, M, D) with valid rows (B, M), for steps that all read one context.

        Only valid rows are projected (padding rows get zero keys and values; they are masked anyway): a guided
        batch pads its short unconditional context to the conditional one's length.
        """
        # a given mask already knows whether every key is valid: no device sync per layer
        all_valid = mask.mask is None if mask is not None else bool(valid.all())
        if all_valid:
            kv = self.kv(context)
        else:
            rows = self.kv(context[valid])
            kv = rows.new_zeros(*context.shape[:2], rows.shape[-1])
            kv[valid] = rows
        k, v = self._keys_values(kv)
        return ContextKV(k, v, mask if mask is not None else context_mask(valid))

    def _keys_values(self, kv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k, v = rearrange(kv, "b m (two h d) -> two b h m d", two=2, h=self.heads).unbind(0)
        if self.qk_norm is not None:
            k = self.qk_norm.k_norm(k)
        return k, v
