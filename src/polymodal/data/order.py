"""Which sample goes where in a training run: epoch permutations, per-step seeds, a step's positions by rank.

Every objective of the training loop shares these rules, which make a run exact across process counts: global
position j of step s reads sample ``sample_index(seed, n, batch, s, j)`` (an epoch's permutation of the ``n``
training samples, walked in order) and is masked by a generator seeded from (seed, s, chunk), whatever the number of
ranks; each rank takes a contiguous share of the step's positions, split into its accumulation micro-batches.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..config import ConfigError

# The masking "step" of validation samples: no training step uses it, so held-out masks never repeat a training one.
VAL_STEP = 2**31 - 1


def sample_seed(seed: int, step: int, j: int) -> int:
    """A generator seed for chunk ``j`` of ``step``: distinct, stable, independent of ranks."""
    return int(np.random.SeedSequence([seed, step, j]).generate_state(1, dtype=np.uint64)[0] >> 1)


@lru_cache(maxsize=4)
def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """(n,) the order of the ``n`` training samples in ``epoch``: a permutation seeded by (seed, epoch)."""
    return np.random.default_rng([seed, epoch, 7]).permutation(n)


def sample_index(seed: int, n: int, batch_size: int, step: int, j: int) -> int:
    """The training sample at global position ``j`` of ``step`` (batches of ``batch_size`` walk the epochs)."""
    flat = step * batch_size + j
    return int(epoch_order(seed, flat // n, n)[flat % n])


def check_accumulation(batch_size: int, grad_accum: int) -> None:
    if batch_size % grad_accum:
        raise ConfigError(f"train.batch_size {batch_size} is not divisible by train.grad_accum {grad_accum}")


def micro_positions(batch_size: int, grad_accum: int, rank: int, world: int) -> list[list[int]]:
    """This rank's global positions of a step, as ``grad_accum`` micro-batches of ``batch_size / world /
    grad_accum`` positions each: rank r takes positions [r * B/world, (r + 1) * B/world)."""
    if batch_size % (world * grad_accum):
        raise ConfigError(f"train.batch_size {batch_size} must divide into {world} ranks x {grad_accum} "
                         "accumulation steps")
    per_rank = batch_size // world
    m = per_rank // grad_accum
    mine = list(range(rank * per_rank, (rank + 1) * per_rank))
    return [mine[i:i + m] for i in range(0, per_rank, m)]
