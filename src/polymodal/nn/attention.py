"""Multi-head attention on `scaled_dot_product_attention`, with 4M's parameter layout.

Self-attention packs q, k, v in one `qkv` projection; cross-attention has `q` and a packed `kv`. Masks are
boolean with True = "may attend" (SDPA's convention and polymodal's).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange
from torch import nn
from torch.nn import functional as F


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


def key_padding_mask(valid: torch.Tensor | None) -> torch.Tensor | None:
    """(B, M) valid keys -> (B, 1, 1, M) SDPA mask, or None if every key is valid.

    A row with no valid key at all would give NaN; such rows (samples with nothing to attend to) keep key 0,
    which holds padding, so their output is finite and ignored downstream.
    """
    if valid is None or bool(valid.all()):
        return None
    valid = valid.clone()
    valid[:, 0] |= ~valid.any(dim=1)
    return valid[:, None, None, :]


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
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim, bias=proj_bias)
        self.qk_norm = QKNorm(dim // heads, norm_eps, norm_bias) if qk_norm else None

    def forward(self, x: torch.Tensor, *, key_mask: torch.Tensor | None = None,
                segments: list[Segment] | None = None) -> torch.Tensor:
        """x (B, N, D) -> (B, N, D).

        ``key_mask`` (B, 1, 1, N) applies to full attention over all N; ``segments`` instead splits N into
        independent runs (the decoder's per-modality attention): cheaper than one (N, N) block-diagonal mask,
        and causal runs take SDPA's fast causal path.
        """
        q, k, v = self._qkv(x)
        if self.qk_norm is not None:
            q, k = self.qk_norm(q, k)
        if segments is None:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask)
        else:
            # split (not slicing): its backward concatenates, where a slice's backward fills a full-size zero
            # gradient per segment, which dominated the decoder's backward pass.
            sizes = [s.end - s.start for s in segments]
            if segments[0].start != 0 or sum(sizes) != x.shape[1]:
                raise ValueError("decoder segments must tile the query axis in order")
            parts = [F.scaled_dot_product_attention(qs, ks, vs, is_causal=s.causal)
                     for s, qs, ks, vs in zip(segments, q.split(sizes, 2), k.split(sizes, 2), v.split(sizes, 2))]
            out = torch.cat(parts, dim=2)
        return self.proj(rearrange(out, "b h n d -> b n (h d)"))

    def _qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        q, k, v = rearrange(self.qkv(x), "b n (three h d) -> three b h n d", three=3, h=self.heads).unbind(0)
        return q, k, v


class CrossAttention(nn.Module):
    def __init__(self, dim: int, heads: int, *, qkv_bias: bool = True, proj_bias: bool = True,
                 qk_norm: bool = False, norm_eps: float = 1e-6, norm_bias: bool = True):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim, bias=proj_bias)
        self.qk_norm = QKNorm(dim // heads, norm_eps, norm_bias) if qk_norm else None

    def forward(self, x: torch.Tensor, context: torch.Tensor, *,
                key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, N, D) queries, context (B, M, D), key_mask (B, 1, 1, M) -> (B, N, D)."""
        q = _split_heads(self.q(x), self.heads)
        k, v = rearrange(self.kv(context), "b m (two h d) -> two b h m d", two=2, h=self.heads).unbind(0)
        if self.qk_norm is not None:
            q, k = self.qk_norm(q, k)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask)
        return self.proj(rearrange(out, "b h n d -> b n (h d)"))
