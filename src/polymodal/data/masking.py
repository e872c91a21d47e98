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

Steps 1, 2 and 4 draw budgets (`data.budgets`: the mixtures, Dirichlet draws, `token_budgets`); this module
chooses the tokens that fill them. Randomness: every draw comes from the ``generator``; the same seed gives the
same batch. Dirichlet draws are normalized Gamma draws (`log_gamma`: numpy's sampler seeded by one draw of the
generator, in log space so that alphas like 0.01 do not underflow).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch.nn import functional as F

from ..config import MaskingConfig
from ..modalities import Kind, Modality
from .batch import Batch, ModalityTokens
from .budgets import (
    FOURM21_TABLE,
    FOURM21_WEIGHTS,
    KEEP_SCHEMES,
    MIXTURES,
    Mixture,
    build_mixture,
    dirichlet,
    fourm21_mixture,
    log_gamma,
    token_budgets,
    uniform_mixture,
)
from .spans import MAX_SPANNED_LENGTH, assemble, content_lengths, sample_keep

# The budgets' names are still imported from here, where they were before `data.budgets` held them.
__all__ = ["FOURM21_TABLE", "FOURM21_WEIGHTS", "KEEP_SCHEMES", "MIXTURES", "Mixture", "build_mixture", "dirichlet",
           "fourm21_mixture", "log_gamma", "sample_batch", "token_budgets", "uniform_mixture"]


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
