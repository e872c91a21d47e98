"""Quantizers: continuous latents (B, N, D) -> discrete ids and the codes that stand for them.

Three kinds, as 4M uses them:

- `VectorQuantizer`: nearest code by cosine similarity on l2-normalized vectors; the codebook is an exponential
  moving average of the vectors assigned to each code (no codebook gradient), and codes that fall out of use are
  restarted on vectors of the current batch (van den Oord et al. 2017; Yu et al. 2021 for the cosine codebook).
- `FSQ`: finite scalar quantization, each of d channels bounded and rounded to a few levels; the id is the
  mixed-radix number of the levels (Mentzer et al. 2023). No codebook, no auxiliary loss.
- `Memcodes`: each head attends over a fixed learned codebook and picks one code (hard Gumbel-softmax in
  training, argmax in eval); used by 4M's global-embedding tokenizers (one vector -> 16 heads -> 16 ids).

Every quantizer maps ``z (B, N, D)`` to a `Quantized` with straight-through ``codes`` (gradients reach ``z``),
``ids`` and an auxiliary ``loss`` (B,) per item; ``ids(z)`` is the pure, deterministic path (no state update);
``ids_to_codes(ids)`` inverts it. Randomness (dead-code restarts, Gumbel noise) draws from torch's global
generator (deterministic given ``torch.manual_seed``) or from ``generator`` where a function takes one.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.distributed as torch_dist
from einops import rearrange
from torch import nn
from torch.nn import functional as F


class Quantized(NamedTuple):
    """Output of a quantizer's forward.

    codes: (B, N, D) quantized latents with straight-through gradients to the input.
    ids: (B, N) codebook ids, or (B, N, H) for multi-head Memcodes.
    loss: (B,) auxiliary loss per item (VQ commitment; zero for FSQ and Memcodes).
    """

    codes: torch.Tensor
    ids: torch.Tensor
    loss: torch.Tensor


# ------------------------------------------------------------------------------------------ pure functions


def l2norm(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Unit vectors along the last axis (zero vectors stay zero)."""
    return F.normalize(x, dim=-1, eps=eps)


def straight_through(x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Value of ``q``, gradient of ``x`` (the straight-through estimator)."""
    return x + (q - x).detach()


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Rounding with an identity gradient."""
    return straight_through(x, x.round())


def cosine_nearest(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """(..., D) unit vectors, (V, D) unit codes -> (...) id of the most similar code."""
    return (z @ codebook.t().to(z.dtype)).argmax(dim=-1)  # a bf16 tokenizer's codebook, float32 search


def code_histogram(ids: torch.Tensor, vocab_size: int, *, per_head: bool = False) -> torch.Tensor:
    """(...) ids -> (V,) float64 counts; with ``per_head``, (..., H) ids of H codebooks (Memcodes heads, one per
    token of an MLP tokenizer) -> (H, V) counts, a row per codebook."""
    if not per_head:
        return torch.bincount(ids.reshape(-1).long(), minlength=vocab_size).double()
    heads = ids.shape[-1]
    flat = ids.reshape(-1, heads).long() + torch.arange(heads, device=ids.device) * vocab_size
    return torch.bincount(flat.reshape(-1), minlength=heads * vocab_size).double().reshape(heads, vocab_size)


def codebook_usage(counts: torch.Tensor) -> dict[str, float]:
    """(V,) code counts -> fraction of codes used at least once, and perplexity exp(entropy) of the usage.
    (H, V) counts of H codebooks -> both averaged over the codebooks (pooling the heads' ids into one histogram
    would count a code as used when any head uses its id).

    Perplexity is the effective number of codes in use: V for a uniform use, 1 when every id is the same code.
    """
    if counts.ndim == 2:
        rows = [codebook_usage(c) for c in counts]
        return {k: sum(r[k] for r in rows) / max(len(rows), 1) for k in ("usage", "perplexity")}
    total = float(counts.sum())
    if total == 0:
        return {"usage": 0.0, "perplexity": 0.0}
    p = counts.double() / total
    entropy = -(p[p > 0] * p[p > 0].log()).sum()
    return {"usage": float((counts > 0).double().mean()), "perplexity": float(entropy.exp())}


def ema_(average: torch.Tensor, value: torch.Tensor, decay: float) -> None:
    """average <- decay * average + (1 - decay) * value, in place."""
    average.mul_(decay).add_(value, alpha=1.0 - decay)


def dead_codes(cluster_size: torch.Tensor, threshold: float) -> torch.Tensor:
    """(V,) EMA counts -> (V,) bool: codes assigned fewer than ``threshold`` vectors per batch on average."""
    return cluster_size < threshold


def restart_codes(codebook: torch.Tensor, dead: torch.Tensor, samples: torch.Tensor, *,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """A new (V, D) codebook whose dead rows are replaced by random rows of ``samples`` (M, D), l2-normalized."""
    n_dead = int(dead.sum())
    if n_dead == 0 or samples.shape[0] == 0:
        return codebook
    pick = torch.randint(0, samples.shape[0], (n_dead,), generator=generator, device=samples.device)
    out = codebook.clone()
    out[dead] = l2norm(samples[pick].to(out.dtype))
    return out


def _all_reduce_(t: torch.Tensor) -> torch.Tensor:
    """Sum over ranks in place when running distributed (so every rank keeps the same codebook)."""
    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.all_reduce(t)
    return t


def _broadcast_(t: torch.Tensor) -> torch.Tensor:
    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.broadcast(t, src=0)
    return t


def check_ids(ids: torch.Tensor, vocab_size: int, what: str = "ids") -> None:
    """Raise a ValueError if ``ids`` are not integers in [0, vocab_size)."""
    if ids.dtype.is_floating_point or ids.dtype == torch.bool:
        raise ValueError(f"{what} must be an integer tensor, got {ids.dtype}")
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= vocab_size):
        raise ValueError(f"{what} outside the codebook: values from {int(ids.min())} to {int(ids.max())}, "
                         f"the codebook holds ids 0 to {vocab_size - 1}")


# ------------------------------------------------------------------------------------- VQ, EMA codebook


class VectorQuantizer(nn.Module):
    """Cosine-similarity VQ with an EMA codebook and dead-code restarts.

    Buffers: ``codebook`` (V, D) unit rows; ``cluster_size`` (V,) EMA of the vectors assigned to each code per
    batch and ``embed_sum`` (V, D) EMA of their sums, both started at zero and read bias-corrected (as Adam's
    moments) through ``updates``. The codebook gets no gradient; the encoder gets the commitment loss
    ``commitment * |z - sg(code)|^2`` (per item: mean over positions, sum over channels).

    A code whose corrected EMA count falls under ``dead_threshold`` vectors per batch is restarted on a random
    vector of the current batch; at the first training step that is every unused code (a data-dependent init).
    """

    def __init__(self, dim: int, codebook_size: int, *, decay: float = 0.99, commitment: float = 0.25,
                 dead_threshold: float = 1.0, eps: float = 1e-5):
        super().__init__()
        self.dim, self.codebook_size = dim, codebook_size
        self.decay, self.commitment, self.dead_threshold, self.eps = decay, commitment, dead_threshold, eps
        self.generator: torch.Generator | None = None  # restarts draw from it when set
        init = l2norm(torch.randn(codebook_size, dim))
        self.register_buffer("codebook", init)
        self.register_buffer("cluster_size", torch.zeros(codebook_size))
        self.register_buffer("embed_sum", init * eps)  # direction of the initial codes until they are used
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    def ids(self, z: torch.Tensor) -> torch.Tensor:
        """(B, N, D) -> (B, N) ids; pure (no codebook update)."""
        return cosine_nearest(l2norm(z.float()), self.codebook)

    def ids_to_codes(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, N) -> (B, N, D) unit codes."""
        check_ids(ids, self.codebook_size)
        return F.embedding(ids, self.codebook)

    def forward(self, z: torch.Tensor) -> Quantized:
        zn = l2norm(z.float())
        ids = cosine_nearest(zn, self.codebook)
        if self.training:
            self.update(rearrange(zn, "b n d -> (b n) d").detach(), ids.reshape(-1))
        q = F.embedding(ids, self.codebook)
        loss = self.commitment * (zn - q).pow(2).sum(-1).mean(-1)
        return Quantized(straight_through(zn, q).to(z.dtype), ids, loss)

    def corrected_cluster_size(self) -> torch.Tensor:
        """(V,) bias-corrected EMA of the vectors per batch assigned to each code."""
        t = max(int(self.updates), 1)
        return self.cluster_size / (1.0 - self.decay ** t)

    @torch.no_grad()
    def update(self, flat: torch.Tensor, ids: torch.Tensor) -> None:
        """EMA step on a batch of unit vectors ``flat`` (M, D) assigned ``ids`` (M,), then restart dead codes."""
        onehot = F.one_hot(ids, self.codebook_size).to(flat.dtype)  # (M, V)
        counts = _all_reduce_(onehot.sum(0))
        sums = _all_reduce_(onehot.t() @ flat)
        self.updates += 1
        ema_(self.cluster_size, counts, self.decay)
        ema_(self.embed_sum, sums, self.decay)
        # Cosine codebook: only the direction of the mean matters (no Laplace smoothing needed).
        norm = self.embed_sum.norm(dim=-1, keepdim=True)
        self.codebook.copy_(torch.where(norm > 0, self.embed_sum / norm.clamp(min=1e-30), self.codebook))
        dead = dead_codes(self.corrected_cluster_size(), self.dead_threshold)
        if bool(dead.any()):
            fresh = _broadcast_(restart_codes(self.codebook, dead, flat, generator=self.generator))
            self.codebook.copy_(fresh)
            # A restarted code gets a grace period: twice the threshold, decaying unless vectors come to it.
            raw = 2 * self.dead_threshold * (1.0 - self.decay ** int(self.updates))
            self.cluster_size[dead] = raw
            self.embed_sum[dead] = fresh[dead] * raw


# ----------------------------------------------------------------------------------------------------- FSQ


def fsq_bound(z: torch.Tensor, levels: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """(..., d) -> (..., d) in the open interval that rounds to exactly ``levels[i]`` integers per channel.

    Odd L rounds to -(L-1)/2 .. (L-1)/2; even L is shifted by half a step so that it also has L values.
    """
    half = (levels - 1) * (1 + eps) / 2
    offset = torch.where(levels % 2 == 0, 0.5, 0.0)
    shift = torch.atanh(offset / half)
    return torch.tanh(z + shift) * half - offset


def fsq_quantize(z: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """(..., d) -> (..., d) codes in [-1, 1] (straight-through rounding)."""
    half_width = (levels // 2).to(z.dtype)
    return round_ste(fsq_bound(z, levels)) / half_width


def fsq_codes_to_ids(codes: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """(..., d) codes in [-1, 1] -> (...) mixed-radix ids in [0, prod(levels))."""
    half_width = levels // 2
    digits = (codes * half_width + half_width).round().long()
    basis = torch.cumprod(torch.cat([levels.new_ones(1), levels[:-1]]), 0)
    return (digits * basis).sum(-1)


def fsq_ids_to_codes(ids: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """(...) ids -> (..., d) codes in [-1, 1]; the inverse of `fsq_codes_to_ids`."""
    basis = torch.cumprod(torch.cat([levels.new_ones(1), levels[:-1]]), 0)
    digits = (ids[..., None] // basis) % levels
    half_width = levels // 2
    return (digits - half_width).float() / half_width


class FSQ(nn.Module):
    """Finite scalar quantization over ``len(levels)`` channels: vocabulary ``prod(levels)``."""

    def __init__(self, levels: tuple[int, ...]):
        super().__init__()
        if not levels or min(levels) < 2:
            raise ValueError(f"FSQ levels must be integers >= 2, got {levels}")
        self.register_buffer("levels", torch.tensor(list(levels), dtype=torch.long), persistent=False)
        self.dim = len(levels)
        self.codebook_size = int(math.prod(levels))

    def ids(self, z: torch.Tensor) -> torch.Tensor:
        return fsq_codes_to_ids(fsq_quantize(z.float(), self.levels), self.levels)

    def ids_to_codes(self, ids: torch.Tensor) -> torch.Tensor:
        check_ids(ids, self.codebook_size)
        return fsq_ids_to_codes(ids, self.levels)

    def forward(self, z: torch.Tensor) -> Quantized:
        codes = fsq_quantize(z.float(), self.levels)
        ids = fsq_codes_to_ids(codes.detach(), self.levels)
        return Quantized(codes.to(z.dtype), ids, z.new_zeros(z.shape[0], dtype=torch.float32))


# ------------------------------------------------------------------------------------------------ Memcodes


class Memcodes(nn.Module):
    """Attention over a fixed learned codebook per head: (B, N, H*d) -> ids (B, N, H), codes (B, N, H*d).

    Each head h scores its codebook's keys ``codes[h] @ to_k[h]`` with its query slice; training samples one code
    by hard Gumbel-softmax (straight-through), eval takes the argmax. The output is the chosen code's value.
    """

    def __init__(self, dim: int, codebook_size: int, *, heads: int = 1, temperature: float = 1.0):
        super().__init__()
        if dim % heads:
            raise ValueError(f"Memcodes dim {dim} is not divisible by heads {heads}")
        self.dim, self.codebook_size, self.heads, self.temperature = dim, codebook_size, heads, temperature
        d = dim // heads
        self.scale = d ** -0.5
        self.codes = nn.Parameter(torch.randn(heads, codebook_size, d))
        self.to_k = nn.Parameter(torch.randn(heads, d, d) * d ** -0.5)
        self.to_v = nn.Parameter(torch.randn(heads, d, d) * d ** -0.5)

    def _logits(self, z: torch.Tensor) -> torch.Tensor:
        q = rearrange(z, "b n (h d) -> b h n d", h=self.heads) * self.scale
        k = torch.einsum("hvd,hde->hve", self.codes, self.to_k)
        return torch.einsum("bhnd,hvd->bhnv", q, k)

    def _values(self) -> torch.Tensor:
        return torch.einsum("hvd,hde->hve", self.codes, self.to_v)  # (H, V, d)

    def ids(self, z: torch.Tensor) -> torch.Tensor:
        return rearrange(self._logits(z).argmax(-1), "b h n -> b n h")

    def ids_to_codes(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, N, H) -> (B, N, H*d)."""
        check_ids(ids, self.codebook_size)
        values = self._values()
        heads = [values[h][ids[..., h]] for h in range(self.heads)]  # each (B, N, d)
        return torch.cat(heads, dim=-1)

    def forward(self, z: torch.Tensor) -> Quantized:
        logits = self._logits(z)
        if self.training:
            attn = F.gumbel_softmax(logits, tau=self.temperature, dim=-1, hard=True)
        else:
            attn = F.one_hot(logits.argmax(-1), self.codebook_size).to(logits.dtype)
        out = torch.einsum("bhnv,hvd->bhnd", attn, self._values())
        ids = rearrange(attn.argmax(-1), "b h n -> b n h")
        return Quantized(rearrange(out, "b h n d -> b n (h d)"), ids, z.new_zeros(z.shape[0], dtype=torch.float32))


def build_quantizer(kind: str, *, dim: int, codebook_size: int, fsq_levels: tuple[int, ...] = (),
                    heads: int = 1, decay: float = 0.99, commitment: float = 0.25, dead_threshold: float = 1.0,
                    temperature: float = 1.0) -> nn.Module:
    """A quantizer by name: ``"vq"``, ``"fsq"`` (dim = len(fsq_levels)) or ``"memcodes"``."""
    if kind == "vq":
        return VectorQuantizer(dim, codebook_size, decay=decay, commitment=commitment, dead_threshold=dead_threshold)
    if kind == "fsq":
        if len(fsq_levels) != dim:
            raise ValueError(f"FSQ needs one level per code channel: {len(fsq_levels)} levels for code_dim {dim}")
        return FSQ(tuple(fsq_levels))
    if kind == "memcodes":
        return Memcodes(dim, codebook_size, heads=heads, temperature=temperature)
    raise ValueError(f"unknown quantizer {kind!r}; choose vq, fsq or memcodes")


def quantizer_from_config(cfg, *, dim: int, heads: int = 1) -> nn.Module:
    """The quantizer a tokenizer config names, on latents of ``dim`` channels (``heads`` Memcodes heads).

    ``cfg`` is any config with the quantizer fields of `VQVAEConfig` and `MLPTokenizerConfig`: ``quantizer``,
    ``codebook_size``, ``fsq_levels``, ``ema_decay``, ``commitment``, ``dead_threshold``, ``temperature``.
    """
    return build_quantizer(cfg.quantizer, dim=dim, codebook_size=cfg.codebook_size, fsq_levels=cfg.fsq_levels,
                           heads=heads, decay=cfg.ema_decay, commitment=cfg.commitment,
                           dead_threshold=cfg.dead_threshold, temperature=cfg.temperature)
