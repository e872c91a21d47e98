"""The quantizers of the released 4M tokenizers, under the weights' own names, for inference.

Both take and give 2D grids, as the released models do:

- `LucidVQ` (``quantize._codebook.{embed, cluster_size, initted}``): one codebook of V codes. With ``norm_codes``
  (every release) the latent and the codes are l2-normalized and the id is the cosine argmax; without, the
  Euclidean nearest code. The code handed to the decoder is the *stored* row of ``embed`` (not re-normalized).
  The codebook was trained by EMA; loading it for training is not supported here (`tokenizers.quantizers`
  trains polymodal's own).
- `Memcodes` (``quantize.{codes, to_k.weight, to_v.weight}``): ``heads`` parallel codebooks; the latent's
  channels split into one query per head, which picks the code whose key ``codes[h] @ to_k[h]`` scores
  highest; the decoder gets the chosen code's value ``codes[h] @ to_v[h]``, heads concatenated.

``ids(z)`` maps (B, D, H, W) latents to ids: (B, H, W) for one codebook, (B, NC, H, W) for several (the
reference's ``tokenize`` layout); ``lookup(ids)`` maps them back to (B, D, H, W).
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn
from torch.nn import functional as F


def check_code_ids(ids: torch.Tensor, codebook_size: int, what: str) -> torch.Tensor:
    """Integer ids in [0, codebook_size), else ValueError naming the range found and the range allowed."""
    if ids.dtype.is_floating_point or ids.dtype == torch.bool:
        raise ValueError(f"{what}: ids must be integers, got {ids.dtype}")
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= codebook_size):
        raise ValueError(f"{what}: ids outside the codebook (from {int(ids.min())} to {int(ids.max())}); "
                         f"valid ids are 0 to {codebook_size - 1}")
    return ids.long()


class _Codebook(nn.Module):
    """The buffers of the reference's codebook module (kept so its state dict loads strictly)."""

    def __init__(self, dim: int, codebook_size: int, *, norm_codes: bool):
        super().__init__()
        self.register_buffer("embed", F.normalize(torch.randn(codebook_size, dim), dim=-1))
        self.register_buffer("cluster_size", torch.zeros(codebook_size))
        self.register_buffer("initted", torch.ones(1))
        if not norm_codes:  # the Euclidean codebook also keeps the EMA of its sums
            self.register_buffer("embed_avg", self.embed.clone())


class LucidVQ(nn.Module):
    """Nearest-code VQ: (B, D, H, W) -> ids (B, H, W); ids -> codes (B, D, H, W)."""

    def __init__(self, dim: int, codebook_size: int, *, norm_codes: bool = True):
        super().__init__()
        self.dim, self.codebook_size, self.norm_codes = dim, codebook_size, norm_codes
        self._codebook = _Codebook(dim, codebook_size, norm_codes=norm_codes)

    @property
    def num_codebooks(self) -> int:
        return 1

    @torch.no_grad()
    def ids(self, z: torch.Tensor) -> torch.Tensor:
        h, w = z.shape[-2:]
        flat = rearrange(z.float(), "b d h w -> (b h w) d")
        embed = self._codebook.embed.float()  # the search in float32, also for a tokenizer held in bf16 / fp16
        if self.norm_codes:
            score = F.normalize(flat, dim=-1) @ F.normalize(embed, dim=-1).t()
        else:  # minus the squared distance
            score = 2 * flat @ embed.t() - flat.pow(2).sum(1, keepdim=True) - embed.pow(2).sum(1)[None]
        return rearrange(score.argmax(-1), "(b h w) -> b h w", h=h, w=w)

    def lookup(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, H, W) ids -> (B, D, H, W) codes."""
        ids = check_code_ids(ids, self.codebook_size, "VQ codes")
        return rearrange(F.embedding(ids, self._codebook.embed), "b h w d -> b d h w")


class HeadLinear(nn.Module):
    """A separate (d, d) matrix per head, no bias: (H, V, d) -> (H, V, d). Named ``weight`` as the reference's."""

    def __init__(self, heads: int, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(heads, dim, dim) * dim ** -0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("hvd,hde->hve", x, self.weight)


class Memcodes(nn.Module):
    """``heads`` codebooks of ``codebook_size`` codes of ``dim / heads`` channels, chosen by argmax attention."""

    def __init__(self, dim: int, codebook_size: int, *, heads: int = 1):
        super().__init__()
        if dim % heads:
            raise ValueError(f"Memcodes latent dim {dim} is not divisible by its {heads} codebooks")
        self.dim, self.codebook_size, self.heads = dim, codebook_size, heads
        d = dim // heads
        self.codes = nn.Parameter(torch.randn(heads, codebook_size, d))
        self.to_k = HeadLinear(heads, d)
        self.to_v = HeadLinear(heads, d)

    @property
    def num_codebooks(self) -> int:
        return self.heads

    @torch.no_grad()
    def ids(self, z: torch.Tensor) -> torch.Tensor:
        h, w = z.shape[-2:]
        # Scaled as the reference does it (a positive scale moves no argmax, but float rounding of near ties may).
        q = rearrange(z.float(), "b (nc d) h w -> b nc (h w) d", nc=self.heads) * (self.dim // self.heads) ** -0.5
        logits = torch.einsum("bcnd,cvd->bcnv", q, self.to_k(self.codes).float())  # float32 also for bf16 weights
        ids = rearrange(logits.argmax(-1), "b nc (h w) -> b nc h w", h=h, w=w)
        return ids[:, 0] if self.heads == 1 else ids

    def lookup(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, H, W) ids (one codebook) or (B, NC, H, W) -> (B, D, H, W) codes: each head's chosen value."""
        ids = check_code_ids(ids, self.codebook_size, "Memcodes codes")
        if ids.ndim == 3:
            ids = ids[:, None]
        values = self.to_v(self.codes)  # (NC, V, d)
        picked = torch.stack([values[c][ids[:, c]] for c in range(self.heads)], dim=1)  # (B, NC, H, W, d)
        return rearrange(picked, "b nc h w d -> b (nc d) h w")
