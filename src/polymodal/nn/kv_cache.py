"""What incremental decoding keeps between steps: the attention modules read and write these, nothing else does.

Autoregressive decoding without a cache re-runs the decoder over the whole prefix for every new token (O(T^2)
query rows over T steps). With a cache each step feeds only the new token: `SelfAttention` appends its keys and
values to the layer's `KVCache` and attends to everything cached, and `CrossAttention` reads the `ContextKV` of
the fixed context that `DecoderBlock.new_cache` projected once. The arithmetic is the modules' own, so a cached
step computes what the uncached decoder computes for the same token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import torch

if TYPE_CHECKING:
    from .attention import ContextMask


@dataclass
class KVCache:
    """One self-attention layer's keys and values of the tokens fed so far: buffers (B, H, capacity, Dh), filled
    up to ``length``."""

    k: torch.Tensor
    v: torch.Tensor
    length: int = 0

    @classmethod
    def empty(cls, batch: int, heads: int, head_dim: int, capacity: int, *, like: torch.Tensor) -> KVCache:
        """Zero buffers for ``capacity`` tokens, on the device and in the dtype of ``like``."""
        buf = like.new_zeros(batch, heads, capacity, head_dim)
        return cls(buf, buf.clone())

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store the keys and values (B, H, n, Dh) of the next n tokens; return those of every token so far,
        (B, H, length, Dh)."""
        start, n = self.length, k.shape[2]
        if start + n > self.k.shape[2]:
            raise ValueError(f"KV cache holds {self.k.shape[2]} tokens; {start + n} were fed")
        self.k[:, :, start:start + n] = k
        self.v[:, :, start:start + n] = v
        self.length = start + n
        return self.k[:, :, :self.length], self.v[:, :, :self.length]


class ContextKV(NamedTuple):
    """Cross-attention keys and values (B, H, M, Dh) of a fixed context, projected once, and which keys each
    sample may read."""

    k: torch.Tensor
    v: torch.Tensor
    mask: ContextMask


class LayerCache(NamedTuple):
    """One decoder layer's state: the `ContextKV` its cross-attention reads and, for autoregressive decoding, its
    self-attention `KVCache` (None: the queries are decoded all at once, only the context's K/V are kept)."""

    self_kv: KVCache | None
    context: ContextKV
