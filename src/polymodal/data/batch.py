"""The one batch type: modality name -> `ModalityTokens`.

Mask polarity everywhere in polymodal: **True means "this token is used"**. For a modality with N positions:

- image tokens: ``values`` (B, N) int64 ids on the grid (row-major); ``is_input`` and ``is_target`` (B, N) are
  disjoint subsets of the grid.
- pixels: ``values`` (B, C, H, W) float; ``is_input`` (B, N) over the patch grid; never a target.
- sequences: ``values`` (B, L) int64 ids holding the input span and the target span side by side (T5-style:
  the input carries sentinels ``[S_k]`` where spans were removed, the target is ``[S_1] span1 [S_2] ...``).
  ``is_input`` marks the input ids, ``is_target`` the target ids, padding is neither. An input token's position is
  its rank among the sample's inputs; a target token's, its rank among the targets.
- sequences of vectors: ``values`` (B, L, E) float, ``is_input`` (B, L); never a target.

Nothing in polymodal mutates a batch: transforms return new ones.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace

import torch

from ..modalities import Kind, Modality


@dataclass(frozen=True)
class ModalityTokens:
    values: torch.Tensor
    is_input: torch.Tensor
    is_target: torch.Tensor

    @property
    def batch_size(self) -> int:
        return self.values.shape[0]

    @property
    def num_positions(self) -> int:
        return self.is_input.shape[1]

    def to(self, device: torch.device | str) -> ModalityTokens:
        return ModalityTokens(self.values.to(device), self.is_input.to(device), self.is_target.to(device))

    def with_masks(self, *, is_input: torch.Tensor | None = None,
                   is_target: torch.Tensor | None = None) -> ModalityTokens:
        return replace(self, is_input=self.is_input if is_input is None else is_input,
                       is_target=self.is_target if is_target is None else is_target)

    @classmethod
    def full_input(cls, values: torch.Tensor, num_positions: int | None = None) -> ModalityTokens:
        """Every position an input, none a target (conditioning on a whole modality)."""
        b = values.shape[0]
        n = num_positions if num_positions is not None else values.shape[1]
        ones = torch.ones(b, n, dtype=torch.bool, device=values.device)
        return cls(values, ones, torch.zeros_like(ones))


class Batch(Mapping[str, ModalityTokens]):
    """An immutable mapping of modality name to `ModalityTokens`, all with the same batch size."""

    def __init__(self, items: Mapping[str, ModalityTokens] | None = None, **kw: ModalityTokens):
        data = dict(items or {}, **kw)
        sizes = {name: t.batch_size for name, t in data.items()}
        if len(set(sizes.values())) > 1:
            raise ValueError(f"batch sizes differ between modalities: {sizes}")
        for name, t in data.items():
            if not isinstance(t, ModalityTokens):
                raise TypeError(f"batch[{name!r}] must be ModalityTokens, got {type(t).__name__}")
        self._data = data

    def __getitem__(self, name: str) -> ModalityTokens:
        try:
            return self._data[name]
        except KeyError:
            raise KeyError(f"modality {name!r} is not in this batch (it has {', '.join(self._data) or 'nothing'})")\
                from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        parts = [f"{k}: {tuple(v.values.shape)} in={int(v.is_input.sum())} tgt={int(v.is_target.sum())}"
                 for k, v in self._data.items()]
        return "Batch(" + ", ".join(parts) + ")"

    @property
    def batch_size(self) -> int:
        return next(iter(self._data.values())).batch_size if self._data else 0

    @property
    def device(self) -> torch.device:
        return next(iter(self._data.values())).values.device

    def to(self, device: torch.device | str) -> Batch:
        return Batch({k: v.to(device) for k, v in self._data.items()})

    def replace(self, **items: ModalityTokens) -> Batch:
        return Batch({**self._data, **items})

    def select(self, names) -> Batch:
        return Batch({k: self._data[k] for k in names if k in self._data})


def validate_tokens(name: str, mod: Modality, tokens: ModalityTokens, *, check_ids: bool = True) -> None:
    """Raise a ValueError naming the modality, what was found and what was expected."""
    v, i, t = tokens.values, tokens.is_input, tokens.is_target
    b = v.shape[0]
    n = mod.num_tokens
    if i.dtype != torch.bool or t.dtype != torch.bool:
        raise ValueError(f"{name}: is_input/is_target must be bool tensors, got {i.dtype}/{t.dtype}")
    if i.shape != t.shape or i.shape[0] != b:
        raise ValueError(f"{name}: is_input {tuple(i.shape)} and is_target {tuple(t.shape)} must both be (B={b}, N)")
    if mod.kind is Kind.PIXELS:
        c = mod.channels
        h, w = mod.image_size
        if v.ndim != 4 or v.shape[1:] != (c, h, w):
            raise ValueError(f"{name}: expected pixels of shape (B, {c}, {h}, {w}), got {tuple(v.shape)}")
        if i.shape[1] != n:
            raise ValueError(f"{name}: masks must cover the {mod.grid[0]}x{mod.grid[1]} patch grid ({n}), "
                             f"got {i.shape[1]}")
    elif mod.kind is Kind.SEQUENCE_EMB:
        if v.ndim != 3 or v.shape[2] != mod.emb_dim or v.shape[1] != i.shape[1]:
            raise ValueError(f"{name}: expected vectors (B, L, {mod.emb_dim}) with L = mask length {i.shape[1]}, "
                             f"got {tuple(v.shape)}")
    else:
        if v.ndim != 2 or v.shape != i.shape:
            raise ValueError(f"{name}: expected ids of shape (B, N) = {tuple(i.shape)}, got {tuple(v.shape)}")
        if v.dtype.is_floating_point:
            raise ValueError(f"{name}: token ids must be integers, got {v.dtype}")
        if mod.kind is Kind.IMAGE_TOKENS and v.shape[1] != n:
            raise ValueError(f"{name}: expected {n} image tokens ({mod.grid[0]}x{mod.grid[1]}), got {v.shape[1]}")
        if check_ids:
            used = v[i | t]
            if used.numel() and (int(used.min()) < 0 or int(used.max()) >= mod.vocab_size):
                bad = used[(used < 0) | (used >= mod.vocab_size)]
                raise ValueError(f"{name}: token id {int(bad[0])} is outside the vocabulary [0, {mod.vocab_size}) "
                                 f"({bad.numel()} ids out of range)")
    if mod.is_input_only and bool(t.any()):
        raise ValueError(f"{name}: is an input-only modality ({mod.kind.value}) but has targets")
    if bool((i & t).any()):
        raise ValueError(f"{name}: a position is both input and target")


def _pad_to(t: torch.Tensor, length: int, value) -> torch.Tensor:
    if t.shape[1] == length:
        return t
    pad = torch.full((t.shape[0], length - t.shape[1], *t.shape[2:]), value, dtype=t.dtype, device=t.device)
    return torch.cat([t, pad], dim=1)


def collate(batches: list[Batch]) -> Batch:
    """Concatenate batches along the batch axis; sequences of different widths are padded with unused slots.

    Every batch must hold the same modalities.
    """
    if not batches:
        raise ValueError("collate needs at least one batch")
    names = list(batches[0])
    for b in batches[1:]:
        if list(b) != names:
            raise ValueError(f"cannot collate batches with different modalities: {names} vs {list(b)}")
    out = {}
    for name in names:
        parts = [b[name] for b in batches]
        n = max(p.num_positions for p in parts)
        same = all(p.num_positions == n for p in parts)
        values = [p.values if same or p.values.ndim == 4 else _pad_to(p.values, n, 0) for p in parts]
        is_in = [_pad_to(p.is_input, n, False) for p in parts]
        is_tg = [_pad_to(p.is_target, n, False) for p in parts]
        out[name] = ModalityTokens(torch.cat(values), torch.cat(is_in), torch.cat(is_tg))
    return Batch(out)
