"""How sure a score is: percentile-bootstrap intervals over test scenes, and paired gaps between two models.

    scores = evaluate(pipe, samples, bootstrap=500)            # scores["tasks"]["semseg"]["ci95"]["miou"] = [lo, hi]
    gaps = paired_gaps(a["rescore"]["semseg"], b["rescore"]["semseg"], n=len(samples), rounds=500)
    gaps["miou"]  # {"gap": -0.102, "lo": -0.16, "hi": -0.04}: a is 10.2% worse than b, and the interval says how sure

A *rescorer* is a task's scoring applied to a subset of the test scenes, ``rescore(indices) -> {metric: value}``
(`runner.evaluate` keeps one per task: the predictions are made once, only the scoring is repeated). Each bootstrap
round draws the scenes with replacement and rescores; the interval is the ``(1 - level) / 2`` and
``(1 + level) / 2`` percentiles of the rounds. Scenes are the unit, not pixels or boxes: pixels of one scene are not
independent draws, so a per-pixel interval would be far too narrow.

A paired gap rescores both models on the *same* draw each round, so the scenes both find hard do not widen the
interval of their difference (a model 10% worse on every one of very unequal scenes gets a paired interval under a
point wide: tests/eval/test_bootstrap.py). The gap is relative, signed so that positive means ``a`` is better:
``(a - b) / |b|`` for higher-is-better metrics, ``(b - a) / |b|`` for `LOWER_IS_BETTER` ones; 4M-21's claim
"within 10% of a specialist" is ``gap >= -0.10``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np

Rescore = Callable[[np.ndarray], Mapping[str, object]]

LOWER_IS_BETTER = ("abs_rel", "angle_deg")
LEVEL = 0.95


def draws(n: int, rounds: int, seed: int = 0) -> np.ndarray:
    """(rounds, n) scene indices drawn with replacement; the same (n, rounds, seed) gives the same draws."""
    if n < 1 or rounds < 1:
        raise ValueError(f"bootstrap needs at least one scene and one round, got n={n}, rounds={rounds}")
    return np.random.default_rng(seed).integers(0, n, size=(rounds, n))


def _scalars(scores: Mapping[str, object]) -> dict[str, float]:
    return {m: float(v) for m, v in scores.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _bounds(values: Sequence[float], level: float) -> list[float]:
    a = np.asarray(values, np.float64)
    a = a[np.isfinite(a)]
    if not a.size:
        return [math.nan, math.nan]
    lo, hi = np.percentile(a, [50 * (1 - level), 50 * (1 + level)])
    return [float(lo), float(hi)]


def intervals(rescore: Rescore, n: int, *, rounds: int = 200, seed: int = 0, level: float = LEVEL
              ) -> dict[str, list[float]]:
    """``{metric: [lo, hi]}``: the percentile-bootstrap interval of every scalar metric of ``rescore``."""
    rounds_out: dict[str, list[float]] = {}
    for idx in draws(n, rounds, seed):
        for m, v in _scalars(rescore(idx)).items():
            rounds_out.setdefault(m, []).append(v)
    return {m: _bounds(v, level) for m, v in rounds_out.items()}


def relative_gap(a: float, b: float, metric: str) -> float:
    """How much better ``a`` is than ``b``, relative to ``b`` (negative: worse); NaN when ``b`` is 0 or NaN."""
    if not (math.isfinite(a) and math.isfinite(b)) or b == 0:
        return math.nan
    return (b - a) / abs(b) if metric in LOWER_IS_BETTER else (a - b) / abs(b)


def paired_gaps(a: Rescore, b: Rescore, n: int, *, rounds: int = 200, seed: int = 0, level: float = LEVEL
                ) -> dict[str, dict[str, float]]:
    """``{metric: {"gap", "lo", "hi"}}`` of model ``a`` against ``b`` on every metric both score (see the module
    doc): the gap on all ``n`` scenes and its paired-bootstrap interval."""
    full_a, full_b = _scalars(a(np.arange(n))), _scalars(b(np.arange(n)))
    shared = [m for m in full_a if m in full_b]
    per_round: dict[str, list[float]] = {m: [] for m in shared}
    for idx in draws(n, rounds, seed):
        sa, sb = _scalars(a(idx)), _scalars(b(idx))
        for m in shared:
            per_round[m].append(relative_gap(sa.get(m, math.nan), sb.get(m, math.nan), m))
    out = {}
    for m in shared:
        lo, hi = _bounds(per_round[m], level)
        out[m] = {"gap": relative_gap(full_a[m], full_b[m], m), "lo": lo, "hi": hi}
    return out
