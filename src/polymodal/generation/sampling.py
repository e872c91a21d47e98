"""Schedules and sampling: small pure functions.

Token schedules say how many tokens each decoding step commits: they sum exactly to the count and every step
commits at least one token, for any step count from 1 to the count. Temperature schedules give one temperature per
step. Both follow apple/ml-4m (``fourm/utils/generation.py``) number for number wherever ml-4m's schedule is one
of these: the cosine schedule rounds each step's share half to even (Python's and numpy's ``round``) and puts the
remainder in the last step; the linear schedule floors ``linspace`` and hands out the larger shares first (with
steps <= count, every share is >= 1). ml-4m's cosine rounding can leave a step with 0 tokens, or a negative last
step (16 tokens in 8 steps: 1 per step rounded up seven times overshoots the tail), which it then cannot run;
those counts are repaired by `at_least_one_per_step`, which leaves a valid schedule as it is.

Sampling follows ml-4m's ``GenerationSampler`` as well: a temperature of 0 (within 1e-10) is greedy (argmax, and a
confidence of 1 for every position); otherwise top-k then top-p filter the *untempered* logits, the softmax of
``filtered / temperature`` is sampled with `torch.multinomial` (one draw per row, rows in (batch, position) order)
and the confidence is the sampled token's probability. With the same generator state, the draws are ml-4m's.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.nn import functional as F

TOKEN_SCHEDULES = ("cosine", "linear")


class ScheduleError(ValueError):
    """A schedule that cannot be built (unknown name, more steps than tokens, bad parameters)."""


# ---------------------------------------------------------------------------------------------- schedules


def cosine_schedule(steps: int, total: int) -> list[int]:
    """Tokens per step under a cosine decay of the masked fraction; sums to ``total``, each step >= 1."""
    _check_steps(steps, total)
    masked = [0.5 * (1 + math.cos(math.pi * i / steps)) for i in range(steps)]
    out = [round(total * (a - b)) for a, b in zip(masked[:-1], masked[1:])]
    out.append(total - sum(out))
    return at_least_one_per_step(out)


def at_least_one_per_step(counts: list[int]) -> list[int]:
    """``counts`` with the same total and length where every step commits >= 1 token (needs total >= length).

    Works on the cumulative counts: each is pushed up to one past the previous and capped so that every later
    step still has a token, so a schedule that already commits >= 1 a step comes back unchanged (ml-4m's
    numbers), and a broken one stays as close to its curve as the constraint allows.
    """
    total, n = sum(counts), len(counts)
    out, done, target = [], 0, 0
    for i, c in enumerate(counts):
        target += c
        now = min(max(target, done + 1), total - (n - 1 - i))
        out.append(now - done)
        done = now
    return out


def linear_schedule(steps: int, total: int) -> list[int]:
    """Near-equal shares, larger first; trailing empty steps are dropped (ml-4m's behaviour)."""
    _check_steps(steps, total)
    shares = sorted(np.diff(np.linspace(0, total, steps + 1, dtype=int)).tolist(), reverse=True)
    while shares and shares[-1] == 0:
        shares.pop()
    return shares


def token_schedule(name: str, steps: int, total: int) -> list[int]:
    if name == "cosine":
        return cosine_schedule(steps, total)
    if name == "linear":
        return linear_schedule(steps, total)
    raise ScheduleError(f"unknown token schedule {name!r}; choose one of {', '.join(TOKEN_SCHEDULES)}")


def _check_steps(steps: int, total: int) -> None:
    if total < 1:
        raise ScheduleError(f"a schedule needs at least one token to decode, got {total}")
    if not 1 <= steps <= total:
        raise ScheduleError(f"{steps} steps for {total} tokens: use 1 to {total} steps (at least one token a step)")


def temperature_schedule(name: str, temperature: float, tokens: list[int]) -> list[float]:
    """One temperature per step of the token schedule ``tokens``.

    ``constant``: ``temperature`` throughout. ``linear``: falls with the fraction of tokens still masked before
    each step (ml-4m's ``linear_temp_schedule``). ``onex:{min_t}:{power}``: ``min_t + (temperature - min_t) * s``
    where s is a normalized ``1/x**power`` curve damped by the decoded fraction (ml-4m's ``onex_temp_schedule``).
    Non-constant schedules are clipped at 1e-9, as in ml-4m.
    """
    n, total = len(tokens), sum(tokens)
    done = np.cumsum(tokens)
    if name == "constant":
        return [float(temperature)] * n
    if name == "linear":
        t = np.concatenate([[temperature * 1.0], (temperature * (total - done) / total)[:-1]])
        return np.clip(t, 1e-9, None).tolist()
    if name.startswith("onex"):
        try:
            min_t, power = (float(f) for f in name.split(":")[1:])
        except ValueError:
            raise ScheduleError(f"onex temperature schedule must read 'onex:MIN_T:POWER', got {name!r}") from None
        y = 1 / np.linspace(1, 100, num=total) ** power
        span = (y - y.min()).max()
        y = (y - y.min()) / span if span > 0 else np.ones_like(y)  # one token: the curve is its first point, 1
        frac = done / total
        s = [(1 - f) * u for u, f in zip(y, frac)]  # the curve is indexed by step, as in ml-4m
        return np.clip([min_t + (temperature - min_t) * v for v in s], 1e-9, None).tolist()
    raise ScheduleError(f"unknown temperature schedule {name!r}; choose constant, linear or onex:MIN_T:POWER")


# ----------------------------------------------------------------------------------------------- sampling


def is_greedy(temperature: float) -> bool:
    return abs(temperature) <= 1e-10


def filter_top_k(logits: torch.Tensor, top_k: int | float) -> torch.Tensor:
    """(..., V) logits with everything below the k-th largest set to -inf (ties kept). An int is a count, a
    float in (0, 1) a fraction of the vocabulary; 0 keeps everything."""
    if top_k <= 0:
        return logits
    v = logits.shape[-1]
    # a fraction under one token keeps the most probable one (ml-4m asks torch.topk for 0 and fails)
    k = min(top_k, v) if isinstance(top_k, int) else max(1, min(int(top_k * v), v))
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def filter_top_p(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Nucleus filter on (N, V): keep the most probable tokens whose cumulative probability first reaches
    ``top_p`` (the token that crosses it included); 0 keeps everything."""
    if top_p <= 0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    cum = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    drop_sorted = torch.zeros_like(cum, dtype=torch.bool)
    drop_sorted[..., 1:] = cum[..., :-1] > top_p  # shifted: the token crossing the threshold stays
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def sample(logits: torch.Tensor, *, temperature: float = 1.0, top_k: int | float = 0, top_p: float = 0.0,
           generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """logits (..., V) -> sampled ids (...) int64 and their confidence (...) float32 (1 when greedy)."""
    shape = logits.shape[:-1]
    flat = logits.reshape(-1, logits.shape[-1])
    if is_greedy(temperature):
        ids = flat.float().argmax(dim=-1)  # the same ids; torch's bf16 argmax on the CPU is ~5x slower
        conf = torch.ones(ids.shape, dtype=torch.float32, device=ids.device)
    else:
        # bf16 weights give bf16 logits: filter and sample in float32 (the same draws as float32 logits would get)
        flat = flat.float()
        probs = F.softmax(filter_top_p(filter_top_k(flat, top_k), top_p) / temperature, dim=-1)
        ids = torch.multinomial(probs, 1, generator=generator)[:, 0]
        conf = probs.gather(1, ids[:, None])[:, 0].float()
    return ids.reshape(shape), conf.reshape(shape)


def select_confident(conf: torch.Tensor, valid: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """(B, Q) confidences of candidate rows -> (B, Q) bool: each sample's ``counts[b]`` most confident valid rows.

    Uses `torch.topk` over the rows, as ml-4m does, so that ties (every greedy confidence is 1) are broken the
    same way; when counts differ, each sample keeps the first counts[b] of the top max(counts).
    """
    k = int(counts.max()) if counts.numel() else 0
    chosen = torch.zeros_like(valid)
    if k == 0:
        return chosen
    conf = conf.masked_fill(~valid, -1.0)  # padding rows are never chosen while a valid row is left
    top = torch.topk(conf, k, dim=-1).indices
    keep = torch.arange(k, device=conf.device)[None, :] < counts[:, None]
    chosen.scatter_(1, top, keep)
    return chosen & valid
