"""Token budgets of 4M's masking: how many tokens of a sample each modality gives as inputs and as targets.

A `Mixture` of Dirichlets (4M-21's, `fourm21_mixture`; a uniform one; named in `MIXTURES` for
``MaskingConfig.mixture``, with the config's per-modality alphas applied by `build_mixture`) picks the alphas of a
sample; `token_budgets` spreads a total over the modalities by Dirichlet draws, within what each can hold.
`data.masking.sample_batch` then chooses which tokens fill each budget.

Randomness: every draw comes from the ``generator``. Dirichlet draws are normalized Gamma draws (`log_gamma`:
numpy's sampler seeded by one draw of the generator, in log space so that alphas like 0.01 do not underflow).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from ..config import ConfigError, MaskingConfig
from ..modalities import Modality, is_registered

KEEP_SCHEMES = ("random", "all", "binary")

# ------------------------------------------------------------------------------------------------ mixtures


@dataclass(frozen=True, eq=False)
class Mixture:
    """K Dirichlet components over M modalities: ``weights`` (K,), ``input_alphas`` and ``target_alphas`` (K, M)
    (float64, >= 0; 0 means "never in this role"), ``keep`` a scheme per component for each sequence modality."""

    names: tuple[str, ...]
    weights: torch.Tensor
    input_alphas: torch.Tensor
    target_alphas: torch.Tensor
    keep: dict[str, tuple[str, ...]]

    def __post_init__(self) -> None:
        k, m = len(self.weights), len(self.names)
        for role, a in (("input", self.input_alphas), ("target", self.target_alphas)):
            if tuple(a.shape) != (k, m):
                raise ValueError(f"{role}_alphas must be (components, modalities) = ({k}, {m}), got {tuple(a.shape)}")
            if bool((a < 0).any()):
                raise ValueError(f"{role}_alphas must be non-negative")
        if bool((self.weights < 0).any()) or float(self.weights.sum()) <= 0:
            raise ValueError("mixture weights must be non-negative with a positive sum")
        for name, schemes in self.keep.items():
            bad = [s for s in schemes if s not in KEEP_SCHEMES]
            if len(schemes) != k or bad:
                raise ValueError(f"keep schemes of {name!r}: need {k} of {KEEP_SCHEMES}, got {schemes}")

    @classmethod
    def from_table(cls, mods: Sequence[Modality], weights: Sequence[float],
                   table: Mapping[str, tuple[Sequence[float], Sequence[float], Sequence[str] | None]]) -> Mixture:
        """A mixture from ``name -> (input alphas, target alphas, keep schemes or None)``, one value per component;
        the row ``"*"`` serves modalities without their own. Input-only modalities get target alphas 0."""
        k = len(weights)
        rows_in, rows_tg, keep = [], [], {}
        for mod in mods:
            if mod.name not in table and "*" not in table:
                raise ValueError(f"the mixture has no alphas for {mod.name!r} and no '*' row")
            a_in, a_tg, schemes = table.get(mod.name, table.get("*"))
            rows_in.append([float(a) for a in a_in])
            rows_tg.append([0.0] * k if mod.is_input_only else [float(a) for a in a_tg])
            if mod.is_sequence_like:
                keep[mod.name] = tuple(schemes or ("random",) * k)
        as_t = lambda rows: torch.tensor(rows, dtype=torch.float64).reshape(len(mods), k).T.contiguous()
        return cls(tuple(m.name for m in mods), torch.tensor(weights, dtype=torch.float64), as_t(rows_in),
                   as_t(rows_tg), keep)


def uniform_mixture(mods: Sequence[Modality]) -> Mixture:
    """One component, alpha 1 for every modality in every role it can take, keep scheme "random"."""
    return Mixture.from_table(mods, [1.0], {"*": ([1.0], [1.0], None)})


_A2A = (0.01, 0.1, 1.0, 10.0)
_RANDOM7 = ("random",) * 7
# 4M-21's pre-training mixture (ml-4m cfgs/default/4m/alphas_mixture/main/mix_mod21_all2allmix_rgb2all_capT5bias.yaml):
# all-to-all with alphas 0.01, 0.1, 1, 10; RGB-to-all (target alpha 0.5); caption-biased; T5-caption-biased.
# The yaml gives t5_caption target alphas too; 4M allocates that budget and never uses it (a sequence of vectors has
# no target), here input-only modalities get none. "*" is every other domain (and any user modality).
FOURM21_WEIGHTS = (1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.5)
FOURM21_TABLE = {
    "rgb@224": (_A2A + (1000.0, 0.05, 0.05), (0.0,) * 7, None),
    "caption": (_A2A + (0.0, 5.0, 0.0), _A2A + (0.5, 0.0, 0.5), ("random",) * 5 + ("all", "random")),
    "t5_caption": (_A2A + (0.0, 0.0, 5.0), _A2A + (0.5, 0.5, 0.0), ("random",) * 6 + ("all",)),
    "color_palette": (_A2A + (0.0, 0.05, 0.05), _A2A + (0.5, 0.5, 0.5), ("binary",) * 7),
    "*": (_A2A + (0.0, 0.05, 0.05), _A2A + (0.5, 0.5, 0.5), _RANDOM7),
}


def fourm21_mixture(mods: Sequence[Modality]) -> Mixture:
    """4M-21's mixture. Its RGB-to-all component conditions on RGB pixels (any ``rgb@*``); a model without pixel
    RGB conditions on its RGB tokens (``tok_rgb@*``) instead, which keep their target alphas so RGB can still
    be generated."""
    table = dict(FOURM21_TABLE)
    for mod in mods:
        if mod.name.startswith("rgb@"):
            table[mod.name] = table["rgb@224"]
    if not any(m.name.startswith("rgb@") for m in mods):
        for mod in mods:
            if mod.name.startswith("tok_rgb@"):
                table[mod.name] = (table["rgb@224"][0], table["*"][1], None)
    return Mixture.from_table(mods, FOURM21_WEIGHTS, table)


# Named mixtures for ``MaskingConfig.mixture``: name -> builder from the modalities (in sampling order).
MIXTURES: dict[str, Callable[[Sequence[Modality]], Mixture]] = {"uniform": uniform_mixture, "4m21": fourm21_mixture}


def build_mixture(cfg: MaskingConfig, mods: Sequence[Modality]) -> Mixture:
    """The named mixture of ``cfg`` over ``mods``, with the config's per-modality alphas and keep schemes (applied to
    every component). Override names must be registered modalities; those not in ``mods`` are ignored."""
    key = (cfg.mixture, tuple(sorted(cfg.input_alphas.items())), tuple(sorted(cfg.target_alphas.items())),
           tuple(sorted(cfg.keep_schemes.items())), tuple(mods))
    return _build_mixture(key)


@lru_cache(maxsize=32)
def _build_mixture(key) -> Mixture:
    name, in_over, tg_over, keep_over, mods = key
    if name not in MIXTURES:
        raise ValueError(f"unknown masking mixture {name!r}; known: {', '.join(MIXTURES)}")
    mix = MIXTURES[name](mods)
    for field, over in (("input_alphas", in_over), ("target_alphas", tg_over), ("keep_schemes", keep_over)):
        for n, _ in over:
            if not is_registered(n):
                raise ConfigError(f"masking.{field}: {n!r} is not a registered modality")
    a_in, a_tg, keep = mix.input_alphas.clone(), mix.target_alphas.clone(), dict(mix.keep)
    col = {m.name: i for i, m in enumerate(mods)}
    for n, a in in_over:
        if n in col:
            a_in[:, col[n]] = float(a)
    for n, a in tg_over:
        if n in col and not mods[col[n]].is_input_only:
            a_tg[:, col[n]] = float(a)
    for n, s in keep_over:
        if n in keep:
            keep[n] = (s,) * len(mix.weights)
    return Mixture(mix.names, mix.weights, a_in, a_tg, keep)


# ---------------------------------------------------------------------------------------- Gamma, Dirichlet


def log_gamma(alpha: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
    """log of Gamma(alpha, 1) draws, elementwise (float64); alpha > 0.

    The draws come from numpy's Gamma sampler, seeded by one draw of ``generator`` (``torch.distributions`` takes no
    generator; numpy's sampler is ~10x faster than a torch Marsaglia–Tsang here). Alpha below 1 is drawn as
    Gamma(alpha + 1) * U^(1/alpha), in log space, so that alphas like 0.01 do not underflow to 0.
    """
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    rng = np.random.Generator(np.random.PCG64(seed))
    a = alpha.detach().double().cpu().numpy()
    small = a < 1
    out = np.log(rng.standard_gamma(np.where(small, a + 1.0, a)))
    with np.errstate(divide="ignore"):
        out += np.where(small, np.log(rng.random(a.shape)) / a, 0.0)
    return torch.from_numpy(out)


def dirichlet(alpha: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
    """Draws from Dirichlet(alpha) along the last axis (float64); entries with alpha 0 are exactly 0.

    A row whose alphas are all 0 is all 0.
    """
    alive = alpha > 0
    logs = log_gamma(torch.where(alive, alpha.double(), 1.0), generator=generator).masked_fill(~alive, -math.inf)
    return torch.softmax(logs, dim=-1).nan_to_num(0.0)


def token_budgets(total: torch.Tensor | int, cap: torch.Tensor, alpha: torch.Tensor, *,
                  generator: torch.Generator, start: torch.Tensor | None = None,
                  rounds: int | None = None) -> torch.Tensor:
    """Tokens per sample and modality: (B, M) int64 summing to ``total`` (B,) where ``cap`` (B, M) allows.

    Round after round, over the modalities with room (budget < cap) and alpha > 0: a Dirichlet draw gives each the
    floor of its share of what is left, the remainder goes one token at a time to the argmax of fresh draws (4M's
    scheme), then budgets are clamped to ``cap``. Each round ends the row or fills a modality, so at most M + 1.
    ``start``: budgets already given (added to, never reduced). ``rounds=1`` is 4M (the clamped part is dropped).
    """
    budget = torch.zeros_like(cap) if start is None else start.clone()
    total = torch.as_tensor(total).expand(cap.shape[0])
    for _ in range(rounds if rounds is not None else cap.shape[1] + 1):
        room = (budget < cap) & (alpha > 0)
        left = total - budget.sum(dim=1)
        rows = ((left > 0) & room.any(dim=1)).nonzero()[:, 0]
        if not rows.numel():
            break
        a, r, n = torch.where(room[rows], alpha[rows], 1.0), room[rows], left[rows]
        logs = log_gamma(a, generator=generator).masked_fill(~r, -math.inf)
        share = (torch.softmax(logs, dim=-1) * n[:, None]).floor().long()
        rest = (n - share.sum(dim=1)).clamp(min=0)  # fewer than the modalities with room
        if bool((rest > 0).any()):
            owner = torch.repeat_interleave(torch.arange(len(rows)), rest)
            winners = log_gamma(a[owner], generator=generator).masked_fill(~r[owner], -math.inf).argmax(dim=-1)
            share.index_put_((owner, winners), torch.ones_like(winners), accumulate=True)
        budget[rows] = torch.minimum(budget[rows] + share, cap[rows])
    return budget
