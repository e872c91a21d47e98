"""4M as an encoder: the token features of any inputs and their pooled vector (`FourM.encode_features`).

    feats = model.encode_features(batch)       # every input token of the batch (targets are ignored)
    feats.tokens      # (B, N, D) encoder output after ``encoder_norm``, zeros on padding rows
    feats.valid       # (B, N) bool, True on a token (each sample's tokens first, padding after)
    feats.modality    # (B, N) int64 index into ``feats.names`` (-1 on padding)
    feats.positions   # (B, N) int64 position of the token in its modality (grid cell, patch, sequence index)
    feats.pooled      # (B, D) mean over each sample's tokens
    feats.modality_mean("tok_rgb@64")          # (B, D) mean over that modality's tokens (zeros where it has none)

The features are the encoder's own states (blocks then ``encoder_norm``), what ml-4m's encoder-only ``FMViT``
computes, not the decoder's context (which adds a projection and the position embeddings back). A sample's tokens
come modality by modality in ``domains_in`` order, each modality's in ascending position, so with full images the
layout is the same for every sample. The encoder runs on the packed tokens as `FourM.encode` does: padding rows are
keys of no one, so a sample's features do not depend on what else is in the batch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import torch

from ..nn import key_padding_mask, pack_order, take
from .embeddings import select

if TYPE_CHECKING:
    from ..data.batch import Batch
    from .fourm import FourM


class EncoderFeatures(NamedTuple):
    """The encoder's features of a batch (see the module docstring for each field's shape)."""

    tokens: torch.Tensor  # (B, N, D)
    valid: torch.Tensor  # (B, N) bool
    modality: torch.Tensor  # (B, N) int64 index into ``names``, -1 on padding
    positions: torch.Tensor  # (B, N) int64 position within the token's modality, 0 on padding
    names: tuple[str, ...]  # the input modalities that gave tokens, in ``domains_in`` order
    pooled: torch.Tensor  # (B, D) mean over valid tokens

    def has(self, name: str) -> torch.Tensor:
        """(B,) bool: the samples with at least one token of modality ``name``."""
        return self._rows(name).any(dim=1)

    def modality_mean(self, name: str) -> torch.Tensor:
        """(B, D) mean over the tokens of modality ``name``; zeros for a sample without any (see `has`)."""
        return masked_mean(self.tokens, self._rows(name))

    def _rows(self, name: str) -> torch.Tensor:
        if name not in self.names:
            raise KeyError(f"no tokens of modality {name!r} in these features (modalities: {', '.join(self.names)})")
        return self.modality == self.names.index(name)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of x (B, N, D) over the rows where mask (B, N) is True: (B, D); zeros where a sample has none."""
    weights = mask.to(x.dtype)
    return (x * weights[..., None]).sum(dim=1) / weights.sum(dim=1, keepdim=True).clamp(min=1)


def encoder_features(model: FourM, batch: Batch) -> EncoderFeatures:
    """`FourM.encode_features` (which checks the batch first): a ValueError if a sample has no input token."""
    parts = model.embed_inputs(batch)
    names = tuple(parts)
    if not names:
        raise ValueError("no input tokens: give at least one input modality (inputs of this model: "
                         f"{', '.join(model.config.domains_in)})")
    x, emb, valid = (torch.cat(t, dim=1) for t in zip(*parts.values()))
    empty = (~valid.any(dim=1)).nonzero()
    if len(empty):
        raise ValueError(f"sample {int(empty[0])} has no input token; every sample needs at least one to encode")
    modality = torch.cat([torch.full_like(p.valid, i, dtype=torch.long) for i, p in enumerate(parts.values())], 1)
    # The embeddings select each modality's input positions with the same `select`, in the same order.
    positions = torch.cat([select(batch[n].is_input)[0] for n in names], dim=1)
    order = pack_order(valid)  # each sample's tokens first, in order, as wide as the largest count
    x, emb, valid, modality, positions = (take(t, order) for t in (x, emb, valid, modality, positions))
    mask = None if bool(valid.all()) else key_padding_mask(valid)
    tokens = model.encoder_states(x + emb, mask).masked_fill(~valid[..., None], 0.0)
    return EncoderFeatures(tokens, valid, modality.masked_fill(~valid, -1), positions.masked_fill(~valid, 0), names,
                           masked_mean(tokens, valid))
