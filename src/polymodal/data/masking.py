"""4M's multimodal masking sampler: which tokens of a batch are inputs and which are targets.

Per sample (as in 4M's ``UnifiedMasking``):

1. pick a component of a mixture of Dirichlets (`Mixture`, by its weights);
2. spread ``num_input_tokens`` over the modalities by a Dirichlet draw with the component's input alphas: the floor
   of each share, the rest one token at a time to the argmax of a fresh draw; clamp to each modality's size;
3. span-mask each sequence within its input budget (`spans.sample_keep`; keep schemes "random", "all", "binary");
4. spread ``num_target_tokens`` likewise with the target alphas; an image modality's room is what its inputs left
   (inputs and targets are disjoint), a sequence's room is its size (4M does not reduce it); cut each sequence's
   target to its budget (`spans.assemble`);
5. choose random grid positions: the first ``input budget`` of a random order are inputs, the next ``target budget``
   are targets.

Budgets are counted in model tokens: grid cells, and for a sequence the tokens of its input (kept tokens plus one
sentinel per span) and of its target (sentinels included); a sequence's budget is an upper bound on them.

Leftovers (``MaskingConfig.refill``). 4M drops what the clamp to a modality's size removes, and what a sequence's
keep scheme leaves unused of its budget (``"none"``). By default (``"clamped"``) the clamped part is handed out
again, the same way, over the modalities that still have room, so a sample gets exactly its budgets unless
sequences leave some unused. ``"all"`` also hands out the sequences' unused budget (to image modalities), giving
exact totals whenever the tokens exist. Both change what biased components mean: in 4M-21's T5-biased component
the T5 caption (77 tokens) draws ~86% of 256 inputs; 4M then trains on ~77 text + ~37 image tokens, "clamped" on
77 text + ~180 image tokens.

A modality with alpha 0 for a role never receives tokens in it; a modality missing from a sample (an all-PAD
sequence, a length of 0 in ``lengths``) receives none (4M zeroes the alphas of missing modalities). Input-only
modalities (pixels, sequences of vectors) never receive targets.

Randomness: every draw comes from the ``generator``; the same seed gives the same batch. Dirichlet draws are
normalized Gamma draws (`log_gamma`: numpy's sampler seeded by one draw of the generator, in log space so that
alphas like 0.01 do not underflow).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from torch.nn import functional as F

from ..config import ConfigError, MaskingConfig
from ..modalities import Kind, Modality, is_registered
from .batch import Batch, ModalityTokens
from .spans import MAX_SPANNED_LENGTH, assemble, content_lengths, sample_keep

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


# -------------------------------------------------------------------------------------------- the sampler


def _check(name: str, mod: Modality, x: torch.Tensor, b: int) -> None:
    expect = {Kind.PIXELS: 4, Kind.IMAGE_TOKENS: 2, Kind.SEQUENCE: 2, Kind.SEQUENCE_EMB: 3}[mod.kind]
    if x.ndim != expect or x.shape[0] != b:
        raise ValueError(f"raw[{name!r}] ({mod.kind.value}) must have {expect} dims with batch size {b}, "
                         f"got {tuple(x.shape)}")
    if mod.kind is Kind.IMAGE_TOKENS and x.shape[1] != mod.num_tokens:
        raise ValueError(f"raw[{name!r}]: expected {mod.num_tokens} image tokens, got {x.shape[1]}")
    if mod.kind is Kind.PIXELS and tuple(x.shape[2:]) != mod.image_size:
        raise ValueError(f"raw[{name!r}]: expected {mod.image_size} pixels, got {tuple(x.shape[2:])}")
    if mod.kind in (Kind.IMAGE_TOKENS, Kind.SEQUENCE) and x.dtype.is_floating_point:
        raise ValueError(f"raw[{name!r}]: token ids must be integers, got {x.dtype}")
    if mod.kind is Kind.SEQUENCE and mod.max_length > MAX_SPANNED_LENGTH:
        raise ValueError(f"{name}: span masking has sentinels for sequences of up to {MAX_SPANNED_LENGTH} tokens, "
                         f"max_length is {mod.max_length}")


def _held(raw: Mapping[str, torch.Tensor], names: list[str], ms: list[Modality], b: int,
          lengths: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """(B, M) int64: tokens each sample holds of each modality (0: missing from the sample)."""
    cols = []
    for n, mod in zip(names, ms):
        if mod.kind is Kind.SEQUENCE:
            held = content_lengths(raw[n])
        else:
            held = torch.full((b,), raw[n].shape[1] if mod.kind is Kind.SEQUENCE_EMB else mod.num_tokens)
        if n in lengths:
            ln = torch.as_tensor(lengths[n], dtype=torch.long).reshape(-1)
            if ln.shape[0] != b or bool((ln < 0).any()) or bool((ln > held).any()):
                raise ValueError(f"lengths[{n!r}] must be (B={b},) within 0..{raw[n].shape[1]}, got {ln.tolist()}")
            if mod.is_grid and bool(((ln != 0) & (ln != mod.num_tokens)).any()):
                raise ValueError(f"lengths[{n!r}]: a grid modality is either present ({mod.num_tokens}) or not (0)")
            held = ln
        if mod.is_sequence_like and bool((held > mod.max_length).any()):
            raise ValueError(f"{n}: a sequence of {int(held.max())} tokens exceeds max_length {mod.max_length}")
        cols.append(held)
    return torch.stack(cols, dim=1) if cols else torch.zeros(b, 0, dtype=torch.long)


def _keep_probs(schemes: tuple[str, ...], comp: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """(B,) starting keep probability per sample: uniform ("random"), 1 ("all"), 0 or 1 ("binary")."""
    u = torch.rand(comp.shape[0], generator=generator, dtype=torch.float64)
    scheme = torch.tensor([KEEP_SCHEMES.index(s) for s in schemes])[comp]
    return torch.where(scheme == 0, u, torch.where(scheme == 1, 1.0, (u >= 0.5).double()))


def _span_starts(keep: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    masked = (torch.arange(keep.shape[1]) < lengths[:, None]) & ~keep
    return masked & ~F.pad(masked[:, :-1], (1, 0), value=False)


def _vector_tokens(x: torch.Tensor, keep: torch.Tensor, starts: torch.Tensor, with_input: torch.Tensor
                   ) -> ModalityTokens:
    """Vectors stay in place: kept positions and each span's first are inputs; the latter's vector is zeroed
    (4M's sentinel for sequences of vectors), which copies ``x`` when there is one."""
    pad = x.shape[1] - keep.shape[1]
    is_in = F.pad((keep | starts) & with_input[:, None], (0, pad), value=False)
    rows, cols = (starts & with_input[:, None]).nonzero(as_tuple=True)
    if rows.numel():
        x = x.clone()
        x[rows, cols] = 0.0
    return ModalityTokens(x, is_in, torch.zeros_like(is_in))


def _grid_masks(b_in: torch.Tensor, b_tg: torch.Tensor, sizes: torch.Tensor, generator: torch.Generator
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """(G, B, max size) input and target masks: per grid and sample, the first ``b_in`` positions of a random order
    are inputs, the next ``b_tg`` targets. b_in, b_tg: (B, G); noise past a grid's size sorts last."""
    g, b, width = sizes.shape[0], b_in.shape[0], int(sizes.max())
    noise = torch.rand(g, b, width, generator=generator)
    noise.masked_fill_(torch.arange(width) >= sizes[:, None, None], 2.0)
    order = noise.argsort(dim=2)
    rank = torch.arange(width)
    n_in = b_in.T[..., None]
    n_io = n_in + b_tg.T[..., None]
    is_in = torch.zeros(order.shape, dtype=torch.bool).scatter_(2, order, (rank < n_in).expand_as(order))
    is_tg = torch.zeros(order.shape, dtype=torch.bool).scatter_(2, order, (rank >= n_in) & (rank < n_io))
    return is_in, is_tg


def sample_batch(raw: Mapping[str, torch.Tensor], mods: Mapping[str, Modality], cfg: MaskingConfig, *,
                 generator: torch.Generator, lengths: Mapping[str, torch.Tensor] | None = None) -> Batch:
    """Mask a batch of full, unmasked modalities the way 4M trains (see the module docstring).

    raw[name]: image tokens (B, N) int64; pixels (B, C, H, W) float; sequences (B, L) int64 ids padded with PAD
    after their ``[EOS]`` (an all-PAD row: the modality is missing from that sample); sequences of vectors
    (B, L, E) float; CPU tensors (the sampler runs in data-loader workers). mods: the modality of every name in
    ``raw`` (others are ignored).
    lengths: optional (B,) int64 per name: the valid prefix of a sequence of vectors (default: all L); for any
    modality, 0 marks it missing from that sample (grids take 0 or N). Sequence ids need none.

    Returns a `Batch` over the names of ``raw``: grids keep their values with disjoint ``is_input``/``is_target``;
    pixels and vectors have inputs only (vectors: span-masked in place, each span's first position kept as an input
    whose vector is zeroed, 4M's sentinel); sequences hold the input ids from position 0 and the target right after,
    in a width of ``max(input + target)`` over the batch (``cfg.sequence_width="tight"``) or ``2 * max_length + 2``.
    """
    names = sorted(raw)  # sampling order, independent of dict order (4M sorts its domains too)
    missing = [n for n in names if n not in mods]
    if missing:
        raise ValueError(f"no modality given for raw data {missing}")
    lengths = dict(lengths or {})
    unknown = [n for n in lengths if n not in raw]
    if unknown:
        raise ValueError(f"lengths given for {unknown}, which are not in raw")
    ms = [mods[n] for n in names]
    b = raw[names[0]].shape[0] if names else 0
    for n, mod in zip(names, ms):
        _check(n, mod, raw[n], b)
    mix = build_mixture(cfg, tuple(ms))
    g = generator
    held = _held(raw, names, ms, b, lengths)
    present = held > 0
    size = torch.tensor([m.num_tokens for m in ms], dtype=torch.long)  # caps budgets (4M: max_tokens)
    seq_cols = [i for i, m in enumerate(ms) if m.is_sequence_like]
    grid_cols = [i for i, m in enumerate(ms) if m.is_grid]

    comp = torch.multinomial(mix.weights, b, replacement=True, generator=g) if b else torch.zeros(0, dtype=torch.long)
    a_in = mix.input_alphas[comp] * present
    a_tg = mix.target_alphas[comp] * present
    cap_in = size * present
    rounds = 1 if cfg.refill == "none" else None
    b_in = token_budgets(cfg.num_input_tokens, cap_in, a_in, generator=g, rounds=rounds)

    # Sequences: which content tokens stay in the input, within each input budget.
    keeps = {}
    for i in seq_cols:
        p = _keep_probs(mix.keep[names[i]], comp, g)
        keep = sample_keep(held[:, i], b_in[:, i], p, generator=g)
        keeps[i] = (keep, _span_starts(keep, held[:, i]))
    if cfg.refill == "all" and seq_cols:
        for i in seq_cols:
            keep, starts = keeps[i]
            b_in[:, i] = (keep.sum(dim=1) + starts.sum(dim=1)) * (b_in[:, i] > 0)
        b_in = token_budgets(cfg.num_input_tokens, cap_in, a_in.index_fill(1, torch.tensor(seq_cols), 0.0),
                             generator=g, start=b_in)

    # Targets: image tokens have the room their inputs left; sequences their size (4M); input-only ones none.
    kind = torch.tensor([{Kind.IMAGE_TOKENS: 1, Kind.SEQUENCE: 2}.get(m.kind, 0) for m in ms])
    cap_tg = torch.where(kind == 1, size - b_in, torch.where(kind == 2, size, 0)) * present
    b_tg = token_budgets(cfg.num_target_tokens, cap_tg, a_tg, generator=g, rounds=rounds)

    out: dict[str, ModalityTokens] = {}
    for i in seq_cols:
        n, mod, (keep, starts) = names[i], ms[i], keeps[i]
        if mod.kind is Kind.SEQUENCE_EMB:
            out[n] = _vector_tokens(raw[n], keep, starts, b_in[:, i] > 0)
            continue
        width = 2 * mod.max_length + 2 if cfg.sequence_width == "fixed" else None
        values, is_in, is_tg = assemble(raw[n][:, :keep.shape[1]].long(), keep, held[:, i], b_in[:, i] > 0, b_tg[:, i],
                                        generator=g, width=width)
        b_tg[:, i] = is_tg.sum(dim=1)
        out[n] = ModalityTokens(values, is_in, is_tg)
    if cfg.refill == "all" and seq_cols:
        b_tg = token_budgets(cfg.num_target_tokens, cap_tg, a_tg.index_fill(1, torch.tensor(seq_cols), 0.0),
                             generator=g, start=b_tg)

    if grid_cols:
        is_in, is_tg = _grid_masks(b_in[:, grid_cols], b_tg[:, grid_cols], size[grid_cols], g)
        for j, i in enumerate(grid_cols):
            k = ms[i].num_tokens
            out[names[i]] = ModalityTokens(raw[names[i]], is_in[j, :, :k].contiguous(), is_tg[j, :, :k].contiguous())
    return Batch({n: out[n] for n in raw})
