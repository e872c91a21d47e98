"""T5-style span masking of token sequences, in 4M's text layout, batched and driven by a `torch.Generator`.

Text ids (4M's vocabulary, fixed): ``[PAD]=0 [UNK]=1 [SOS]=2 [EOS]=3`` and the sentinels ``[S_k] = 4 + k`` for
k in 0..199. A sequence's *content* is everything up to its last non-PAD id (the tokenizer writes ``[EOS]``).

Span masking keeps some content tokens and removes the others; each maximal run of removed tokens (a span) becomes
one sentinel in the input, and the target lists the spans behind their sentinels, closed by one more::

    content  a b c d e [EOS]          keep  a . . d . .
    input    a [S_1] d [S_2]
    target   [S_1] b c [S_2] e [EOS] [S_3]

Budgets count these tokens, sentinels included (as 4M counts them). `sample_keep` is 4M's keep-probability loop:
start from a keep probability, redraw with ``p * 0.9`` while the input is longer than its budget. `assemble` lays out
input then target side by side and applies 4M's rule for cutting a target that exceeds its budget.
`span_mask` and `merge_spans` are the single-sequence forms (generation and tests use them).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn import functional as F

PAD, UNK, SOS, EOS = 0, 1, 2, 3
SENTINEL_BASE = 4  # [S_k] = SENTINEL_BASE + k
NUM_SENTINELS = 200  # [S_0] .. [S_199]; 4M uses [S_1] onwards
MAX_SPANNED_LENGTH = 2 * (NUM_SENTINELS - 2)  # longest content whose spans (<= ceil(n/2)) + 1 all have a sentinel
KEEP_DECAY = 0.9  # 4M's factor on the keep probability while the input is over budget


def sentinel(k: int) -> int:
    """The id of ``[S_k]``."""
    return SENTINEL_BASE + k


def is_sentinel(ids: torch.Tensor) -> torch.Tensor:
    return (ids >= SENTINEL_BASE) & (ids < SENTINEL_BASE + NUM_SENTINELS)


def content_lengths(ids: torch.Tensor) -> torch.Tensor:
    """(B, L) padded ids -> (B,) int64: the position after each row's last non-PAD id (0 for an all-PAD row)."""
    if ids.shape[1] == 0:
        return torch.zeros(ids.shape[0], dtype=torch.long, device=ids.device)
    pos = torch.arange(1, ids.shape[1] + 1, device=ids.device)
    return ((ids != PAD) * pos).amax(dim=1)


def _input_lengths(keep: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Input tokens of a keep mask (..., W): kept tokens plus one sentinel per span of removed ones."""
    masked = valid & ~keep
    starts = masked & ~F.pad(masked[..., :-1], (1, 0), value=False)
    return keep.sum(-1) + starts.sum(-1)


def sample_keep(lengths: torch.Tensor, budgets: torch.Tensor, keep_prob: torch.Tensor, *,
                generator: torch.Generator, width: int | None = None) -> torch.Tensor:
    """Which content tokens stay in the input: (B, W) bool, W = ``width`` or ``max(lengths)``.

    Each token is kept with probability ``keep_prob`` (B,); while the input (kept tokens + one sentinel per span)
    is longer than ``budgets`` (B,), the draw is repeated with the probability times 0.9 (4M's loop). Rows with a
    budget of 0 keep nothing (the caller gives them no input at all). Trials are independent, so drawing a chunk
    of them at once and taking the first that fits is the same distribution as 4M's loop.
    """
    b = lengths.shape[0]
    w = int(lengths.max()) if width is None and b else (width or 0)
    valid = torch.arange(w) < lengths[:, None]
    p = keep_prob.float()
    # Trial 0 for every row; an input never exceeds its content length, so budget >= length always fits.
    keep = (torch.rand(b, w, generator=generator) < p[:, None]) & valid & (budgets > 0)[:, None]
    pending = (budgets > 0) & (budgets < lengths)
    if bool(pending.any()):
        pending &= _input_lengths(keep, valid) > budgets
    trial, chunk = 1, 4  # chunks of 4, 8, 16, 32, 32, ...: about as few draws as a per-row estimate gives
    while bool(pending.any()):
        rows = pending.nonzero()[:, 0]
        decay = KEEP_DECAY ** torch.arange(trial, trial + chunk, dtype=torch.float64)
        u = torch.rand(len(rows), chunk, w, generator=generator)
        k = (u < (p[rows, None] * decay.float())[..., None]) & valid[rows, None]
        fits = _input_lengths(k, valid[rows, None]) <= budgets[rows, None]
        done = fits.any(dim=1)
        first = fits.to(torch.uint8).argmax(dim=1)
        keep[rows[done]] = k[done, first[done]]
        pending[rows[done]] = False
        trial, chunk = trial + chunk, min(2 * chunk, 32)
    return keep


def _window(full_len: torch.Tensor, sent_pos: torch.Tensor, num_sent: torch.Tensor, budget: torch.Tensor,
            generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """4M's cut of a target longer than its budget: (start, length), both (B,).

    A random sentinel other than the closing one (unless it is the only one) starts the window; if fewer than
    ``budget`` tokens follow it, the window instead starts at the earliest sentinel after which the rest fits.
    """
    u = torch.rand(full_len.shape[0], generator=generator, dtype=torch.float64)
    choice = (u * (num_sent - 1).clamp(min=1)).long()
    chosen = sent_pos.gather(1, choice[:, None])[:, 0]
    room = full_len - chosen
    # sent_pos is increasing, padded with a large value, so the first fitting sentinel is the minimum that fits.
    fits = (full_len[:, None] - sent_pos <= budget[:, None]) & (torch.arange(sent_pos.shape[1]) < num_sent[:, None])
    earliest = torch.where(fits, sent_pos, torch.iinfo(torch.long).max).amin(dim=1)
    start = torch.where(room >= budget, chosen, earliest)
    length = torch.where(room >= budget, budget, full_len - earliest)
    over = full_len > budget
    return torch.where(over, start, 0), torch.where(over, length, full_len)


def assemble(content: torch.Tensor, keep: torch.Tensor, lengths: torch.Tensor, with_input: torch.Tensor,
             target_budgets: torch.Tensor | None, *, generator: torch.Generator, width: int | None = None
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Input and target of every row, side by side: (values, is_input, is_target), each (B, W).

    content: (B, Lc) ids whose first ``lengths`` (B,) are the content; keep: (B, Lc) from `sample_keep`;
    with_input: (B,) bool, False gives the row no input (4M's input budget of 0: the whole content is target);
    target_budgets: (B,) maximum target tokens (None: no limit). W = ``width``, or the tight
    ``max(input + target)`` (at least 1). Positions after a row's target are PAD, neither input nor target.
    """
    b, lc = content.shape
    pos = torch.arange(lc)
    valid = pos < lengths[:, None]
    keep = keep & valid
    masked = valid & ~keep
    starts = masked & ~F.pad(masked[:, :-1], (1, 0), value=False)
    span_no = starts.long().cumsum(dim=1)  # 1-based span index at masked positions
    num_spans = starts.sum(dim=1)
    if b and int(num_spans.max()) + 1 >= NUM_SENTINELS:
        raise ValueError(f"a sequence of {int(lengths.max())} tokens needs more than the {NUM_SENTINELS - 1} "
                         "sentinels [S_1].. of 4M's vocabulary")

    # Input: kept tokens and one sentinel per span, compacted (column lc collects what is not written).
    emit = (keep | starts) & with_input[:, None]
    in_len = emit.sum(dim=1)
    in_buf = torch.zeros(b, lc + 1, dtype=content.dtype)
    in_val = torch.where(keep, content, SENTINEL_BASE + span_no)
    in_buf.scatter_(1, torch.where(emit, emit.long().cumsum(dim=1) - 1, lc), in_val)

    # Full target: [S_1] span_1 [S_2] span_2 ... [S_n] span_n [S_{n+1}] (column lc + 2 collects the rest).
    tok_pos = (masked.long() + starts.long()).cumsum(dim=1) - 1
    full_len = masked.sum(dim=1) + num_spans + 1
    full = torch.zeros(b, lc + 3, dtype=content.dtype)
    full.scatter_(1, torch.where(masked, tok_pos, lc + 2), content)
    full.scatter_(1, torch.where(starts, tok_pos - 1, lc + 2), SENTINEL_BASE + span_no)
    full.scatter_(1, (full_len - 1)[:, None], (SENTINEL_BASE + num_spans + 1)[:, None])

    if target_budgets is None:
        start, tgt_len = torch.zeros_like(full_len), full_len
    else:
        s = int(num_spans.max()) + 1 if b else 1
        sent_pos = torch.full((b, s + 1), torch.iinfo(torch.long).max)
        sent_pos.scatter_(1, torch.where(starts, span_no - 1, s), tok_pos - 1)
        sent_pos.scatter_(1, num_spans[:, None], (full_len - 1)[:, None])
        start, tgt_len = _window(full_len, sent_pos[:, :s], num_spans + 1, target_budgets, generator)

    total = in_len + tgt_len
    w = width if width is not None else max(1, int(total.max()) if b else 1)
    if bool((total > w).any()):
        raise ValueError(f"sequence of {int(total.max())} input + target tokens does not fit width {w}")
    j = torch.arange(w)
    is_input = j < in_len[:, None]
    is_target = ~is_input & (j < total[:, None])
    src = torch.cat([in_buf[:, :lc], full[:, :lc + 2]], dim=1)
    idx = torch.where(is_input, j, lc + start[:, None] + j - in_len[:, None]).clamp(0, src.shape[1] - 1)
    values = src.gather(1, idx).masked_fill(~(is_input | is_target), PAD)
    return values, is_input, is_target


def span_mask(ids: Sequence[int] | torch.Tensor, *, generator: torch.Generator,
              num_input_tokens: int | None = None, num_target_tokens: int | None = None,
              keep_prob: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Span-mask one sequence: (input ids, target ids), 1-D int64.

    ids: the content (no padding; usually ending with ``[EOS]``). keep_prob: the starting keep probability
    (None: uniform in [0, 1), 4M's "random"); it decays by 0.9 while the input exceeds ``num_input_tokens``
    (None: no limit; 0: no input, the whole content is target). ``num_target_tokens`` cuts the target as 4M does.
    """
    content = torch.as_tensor(ids, dtype=torch.long).reshape(1, -1)
    n = content.shape[1]
    if n > MAX_SPANNED_LENGTH:
        raise ValueError(f"span masking supports sequences of at most {MAX_SPANNED_LENGTH} tokens, got {n}")
    lengths = torch.tensor([n])
    budget = torch.tensor([n if num_input_tokens is None else num_input_tokens])
    if keep_prob is None:
        p = torch.rand(1, generator=generator, dtype=torch.float64)
    else:
        p = torch.tensor([float(keep_prob)], dtype=torch.float64)
    keep = sample_keep(lengths, budget, p, generator=generator, width=n)
    tb = None if num_target_tokens is None else torch.tensor([num_target_tokens])
    values, is_in, is_tg = assemble(content, keep, lengths, budget > 0, tb, generator=generator)
    return values[0][is_in[0]], values[0][is_tg[0]]


def merge_spans(input_ids: Sequence[int] | torch.Tensor, target_ids: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """The inverse of span masking: each ``[S_k]`` of the input replaced by the target tokens behind ``[S_k]``.

    An empty input with a target (4M's input budget of 0) gives the target's first span. Raises a ValueError when
    the target lacks a span the input refers to.
    """
    inp = torch.as_tensor(input_ids, dtype=torch.long).tolist()
    tgt = torch.as_tensor(target_ids, dtype=torch.long).tolist()
    lo, hi = SENTINEL_BASE, SENTINEL_BASE + NUM_SENTINELS
    spans: dict[int, list[int]] = {}
    current = None
    for t in tgt:
        if lo <= t < hi:
            current = spans.setdefault(t, [])
        elif current is not None:
            current.append(t)
    if not inp and tgt:
        inp = [sentinel(1)]
    out: list[int] = []
    for t in inp:
        if lo <= t < hi:
            if t not in spans:
                raise ValueError(f"the input refers to [S_{t - SENTINEL_BASE}] but the target has no such span")
            out.extend(spans[t])
        else:
            out.append(t)
    return torch.tensor(out, dtype=torch.long)
