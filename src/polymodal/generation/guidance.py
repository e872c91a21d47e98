"""Classifier-free guidance as a wrapper around any scheme: which passes to run and how to combine their logits.

A step's passes are variants of the same generation state (a `Batch`) that differ only in which conditions the
encoder sees. They are concatenated along the batch axis and run as one forward; `combine` then mixes the logits:

- no guidance (scale 1, or nothing to drop): one pass, the logits as they are;
- classifier-free guidance with scale s: passes (conditional, unconditional), ``u + s * (c - u)``;
- weighted multi-condition guidance, weights w_i (negative allowed): passes (cond_1, ..., cond_K, unconditional),
  ``u + sum_i w_i * (c_i - u)`` (Liu et al. 2022, composable diffusion; ml-4m's ``generate_multi_guided``).

"Unconditional" follows ml-4m (``empty_img_modality``, ``empty_seq_modality``, ``empty_seq_emb_modality``):
a dropped image or pixel condition has no input token; a dropped sequence keeps one input token, the sentinel
``[S_1]``; a dropped sequence of vectors keeps one zero vector at position 0. Tokens that the chain has already
committed for the current target stay inputs in every pass.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from ..data.batch import Batch, ModalityTokens, collate
from ..modalities import Kind, Modality
from ..tokenizers.text_layout import SENTINEL_BASE

S_1 = SENTINEL_BASE + 1  # the sentinel that opens a span ([S_1], id 5 in 4M's vocabulary)


class GuidanceError(ValueError):
    """Guidance that names a condition the state does not hold."""


def drop_condition(tokens: ModalityTokens, mod: Modality) -> ModalityTokens:
    """The "unconditional" stand-in for one condition (see the module docstring)."""
    b = tokens.batch_size
    dev = tokens.values.device
    if mod.kind is Kind.SEQUENCE:
        one = torch.ones(b, 1, dtype=torch.bool, device=dev)
        return ModalityTokens(torch.full((b, 1), S_1, dtype=tokens.values.dtype, device=dev), one,
                              torch.zeros_like(one))
    if mod.kind is Kind.SEQUENCE_EMB:
        is_input = torch.zeros_like(tokens.is_input)
        is_input[:, 0] = True
        return ModalityTokens(torch.zeros_like(tokens.values), is_input, torch.zeros_like(is_input))
    none = torch.zeros_like(tokens.is_input)
    return ModalityTokens(tokens.values, none, none)


def without(state: Batch, names: Sequence[str], modality_of) -> Batch:
    """``state`` with every condition in ``names`` dropped."""
    return state.replace(**{n: drop_condition(state[n], modality_of(n)) for n in names})


@dataclass(frozen=True)
class Guidance:
    """What one step runs: ``scale`` with ``drop`` (classifier-free guidance), or ``weights`` (multi-condition)."""

    scale: float = 1.0
    drop: tuple[str, ...] = ()
    weights: Mapping[str, float] | None = None

    @property
    def num_passes(self) -> int:
        if self.weights:
            return len(self.weights) + 1
        return 2 if self.active else 1

    @property
    def active(self) -> bool:
        # ml-4m skips the unconditional pass at scale 1 or with nothing to drop; so do we (bit-identical logits).
        return bool(self.weights) or (self.scale != 1.0 and len(self.drop) > 0)

    def passes(self, state: Batch, modality_of) -> Batch:
        """The passes of this step concatenated along the batch axis: (P * B) rows, pass-major."""
        names = list(self.weights) if self.weights else list(self.drop)
        missing = [n for n in names if n not in state]
        if missing:
            raise GuidanceError(f"guidance names {', '.join(map(repr, missing))}, which the generation state does "
                                f"not hold (it has {', '.join(state)})")
        if not self.active:
            return state
        uncond = without(state, names, modality_of)
        if not self.weights:
            return collate([state, uncond])
        conds = [without(state, [m for m in names if m != n], modality_of) for n in names]
        return collate([*conds, uncond])

    def combine(self, logits: torch.Tensor) -> torch.Tensor:
        """(P * B, ...) logits of `passes` -> (B, ...) guided logits. The combination is linear, so it may as well
        mix the decoder states before a bias-free vocabulary projection (equal up to float rounding)."""
        if not self.active:
            return logits
        parts = logits.chunk(self.num_passes, dim=0)
        u = parts[-1]
        if not self.weights:
            return u + (parts[0] - u) * self.scale
        return u + torch.stack([w * (c - u) for w, c in zip(self.weights.values(), parts[:-1])]).sum(dim=0)
