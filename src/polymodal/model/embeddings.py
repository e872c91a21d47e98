"""Per-kind input embeddings (encoder side) and query embeddings + output heads (decoder side).

Each module handles one modality: it selects the used positions of a `ModalityTokens`, embeds only those, and
returns them padded to the batch's largest count with a validity mask. Parameter names follow 4M's state dict
(``pos_emb, mod_emb, proj, token_emb, emb_proj, to_logits``), so official checkpoints load without renaming.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from einops import rearrange
from torch import nn

from ..data.batch import ModalityTokens
from ..modalities import Kind, Modality
from ..nn import pack_order, sincos_1d, sincos_2d, take
from ..nn.linear import Linear


class Embedded(NamedTuple):
    """Encoder tokens of one modality: content ``x`` and position+modality ``emb``, both (B, k, D)."""

    x: torch.Tensor
    emb: torch.Tensor
    valid: torch.Tensor  # (B, k) bool


class Queries(NamedTuple):
    """Decoder queries of one modality, rows in ascending position order."""

    x: torch.Tensor  # (B, k, D)
    valid: torch.Tensor  # (B, k) bool
    targets: torch.Tensor  # (B, k) int64, the id each query predicts (0 where not valid)
    positions: torch.Tensor  # (B, k) int64, the position of the predicted token in the modality's values


def select(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, N) bool -> indices (B, k) of the True positions in ascending order, padded, and their validity.

    k is the largest count in the batch; padded rows point at position 0.
    """
    idx = pack_order(mask)
    valid = torch.arange(idx.shape[1], device=mask.device)[None, :] < mask.sum(dim=1)[:, None]
    return idx.masked_fill(~valid, 0), valid


def _pos_table(mod: Modality, dim: int) -> torch.Tensor:
    if mod.is_grid:
        return sincos_2d(mod.grid[0], mod.grid[1], dim)
    return sincos_1d(mod.pos_table_len, dim)


class _Base(nn.Module):
    causal = False  # decoder self-attention inside this modality: full (image tokens) or causal (sequences)

    def __init__(self, mod: Modality, dim: int, *, mod_emb: nn.Parameter | None = None, init_std: float = 0.02):
        super().__init__()
        self.modality = mod
        self.dim = dim
        if mod.pos == "learned":
            self.pos_emb = nn.Parameter(torch.randn(1, mod.pos_len, dim) * init_std)
        else:
            self.register_buffer("pos_emb", _pos_table(mod, dim), persistent=True)
        self.mod_emb = mod_emb if mod_emb is not None else nn.Parameter(torch.randn(1, 1, dim) * init_std)

    def _pos(self, idx: torch.Tensor) -> torch.Tensor:
        """(B, k) position ids -> (B, k, D) position + modality embedding."""
        return self.pos_emb[0][idx] + self.mod_emb[0]


# ------------------------------------------------------------------------------------------------- encoder


class PixelEmbedding(_Base):
    """Linear projection of the image's input patches (no bias: the modality embedding carries the offset)."""

    def __init__(self, mod: Modality, dim: int, **kw):
        super().__init__(mod, dim, **kw)
        self.patch = mod.patch_size
        self.proj = Linear(mod.channels * mod.patch_size**2, dim, bias=False)

    def forward(self, tokens: ModalityTokens) -> Embedded:
        idx, valid = select(tokens.is_input)
        # 4M's patch layout: channel last inside a patch.
        patches = rearrange(tokens.values, "b c (nh ph) (nw pw) -> b (nh nw) (ph pw c)", ph=self.patch, pw=self.patch)
        x = self.proj(take(patches, idx).to(self.proj.weight.dtype))
        return Embedded(x, self._pos(idx), valid)


class ImageTokenEmbedding(_Base):
    def __init__(self, mod: Modality, dim: int, **kw):
        super().__init__(mod, dim, **kw)
        self.token_emb = nn.Embedding(mod.vocab_size, dim)

    def forward(self, tokens: ModalityTokens) -> Embedded:
        idx, valid = select(tokens.is_input)
        return Embedded(self.token_emb(take(tokens.values, idx)), self._pos(idx), valid)


class SequenceEmbedding(_Base):
    """Sequence ids; an input token's position is its rank among the sample's input tokens."""

    def __init__(self, mod: Modality, dim: int, **kw):
        super().__init__(mod, dim, **kw)
        self.token_emb = nn.Embedding(mod.vocab_size, dim)

    def _content(self, values: torch.Tensor) -> torch.Tensor:
        return self.token_emb(values)

    def forward(self, tokens: ModalityTokens) -> Embedded:
        idx, valid = select(tokens.is_input)
        k = idx.shape[1]
        if k > self.pos_emb.shape[1]:
            raise ValueError(f"{self.modality.name}: {k} input tokens exceed the {self.pos_emb.shape[1]} positions "
                             "of its table")
        ranks = torch.arange(k, device=idx.device).expand_as(idx)
        return Embedded(self._content(take(tokens.values, idx)), self._pos(ranks), valid)


class SequenceVectorEmbedding(SequenceEmbedding):
    """Sequences of vectors (T5 caption embeddings): a linear projection with bias instead of a table."""

    def __init__(self, mod: Modality, dim: int, **kw):
        _Base.__init__(self, mod, dim, **kw)
        self.emb_proj = Linear(mod.emb_dim, dim)

    def _content(self, values: torch.Tensor) -> torch.Tensor:
        return self.emb_proj(values.to(self.emb_proj.weight.dtype))


ENCODER_EMBEDDINGS = {
    Kind.PIXELS: PixelEmbedding,
    Kind.IMAGE_TOKENS: ImageTokenEmbedding,
    Kind.SEQUENCE: SequenceEmbedding,
    Kind.SEQUENCE_EMB: SequenceVectorEmbedding,
}


# ------------------------------------------------------------------------------------------------- decoder


class ImageTokenHead(_Base):
    """Queries = mask token + position + modality at every target position; predicts the id there.

    ``token_emb`` exists only to hold the (unused) table that official 4M files carry, so they round-trip.
    """

    def __init__(self, mod: Modality, dim: int, *, token_table: bool = False, **kw):
        super().__init__(mod, dim, **kw)
        self.token_emb = nn.Embedding(mod.vocab_size, dim) if token_table else None
        self.to_logits = Linear(dim, mod.vocab_size, bias=False)

    def forward(self, tokens: ModalityTokens, mask_token: torch.Tensor) -> Queries:
        idx, valid = select(tokens.is_target)
        x = mask_token[0] + self._pos(idx)
        targets = take(tokens.values, idx).masked_fill(~valid, 0)
        return Queries(x, valid, targets, idx)


class SequenceHead(_Base):
    """Teacher forcing: query j embeds the target token at j and predicts the one at j+1.

    j is a query iff j and j+1 are both targets. Its position is j's rank among the targets; ranks at or past
    the modality's embedding length use row 0 (4M's behaviour).
    """

    causal = True

    def __init__(self, mod: Modality, dim: int, **kw):
        super().__init__(mod, dim, **kw)
        self.token_emb = nn.Embedding(mod.vocab_size, dim)
        self.to_logits = Linear(dim, mod.vocab_size, bias=False)

    def forward(self, tokens: ModalityTokens, mask_token: torch.Tensor) -> Queries:
        tgt = tokens.is_target
        is_query = torch.zeros_like(tgt)
        is_query[:, :-1] = tgt[:, :-1] & tgt[:, 1:]
        idx, valid = select(is_query)
        ranks = take(tgt.long().cumsum(dim=1) - 1, idx).masked_fill(~valid, 0)
        x = self.embed(take(tokens.values, idx), ranks)
        targets = take(tokens.values, idx + 1).masked_fill(~valid, 0)
        return Queries(x, valid, targets, (idx + 1).masked_fill(~valid, 0))

    def embed(self, ids: torch.Tensor, ranks: torch.Tensor) -> torch.Tensor:
        """Queries (B, k, D) that feed ``ids`` (B, k) at ``ranks`` (B, k) among the sequence's targets (teacher
        forcing in training; the token just decoded in generation)."""
        ranks = ranks.masked_fill(ranks >= self.modality.decoder_pos_limit, 0)
        return self.token_emb(ids) + self._pos(ranks)


DECODER_HEADS = {Kind.IMAGE_TOKENS: ImageTokenHead, Kind.SEQUENCE: SequenceHead}
