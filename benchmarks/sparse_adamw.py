"""One embedding table's optimizer step by `RowSparseAdamW`, by the share of its rows that are active (have ever
had a gradient): the active rows gathered and written back, against the table's dense update (its gradient
scattered into a zero table, then the fused AdamW kernel over all of it). Where the two cross is where
``dense_above`` belongs.

    python benchmarks/sparse_adamw.py                  # a (30000, 384) table: 4M-21's vocabulary at dim 384
    python benchmarks/sparse_adamw.py --rows 8192 --threads 1
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from polymodal.train.optim import RowSparseAdamW
from polymodal.train.step import keep_freed_memory


def step_ms(rows: int, dim: int, active: float, dense_above: float, lookups: int, steps: int) -> float:
    """Median milliseconds of ``optimizer.step()`` for a table with ``active`` of its rows active and ``lookups``
    rows (among the active ones) looked up per step."""
    g = torch.Generator().manual_seed(0)
    emb = torch.nn.Embedding(rows, dim, sparse=True)
    opt = RowSparseAdamW(emb.parameters(), lr=1e-3, weight_decay=0.0, dense_above=dense_above)
    act = torch.randperm(rows, generator=g)[: max(1, int(active * rows))]
    emb(act).sum().backward()  # every one of them active from here on
    opt.step()
    opt.zero_grad(set_to_none=True)
    ids = act[torch.randint(0, len(act), (lookups,), generator=g)]
    times = []
    for _ in range(steps):
        emb(ids).sum().backward()
        t = time.perf_counter()
        opt.step()
        times.append(time.perf_counter() - t)
        opt.zero_grad(set_to_none=True)
    return sorted(times)[len(times) // 2] * 1e3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=30000)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--lookups", type=int, default=400, help="rows looked up per step")
    p.add_argument("--steps", type=int, default=7)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as the training loop does on a CPU
    print(f"torch {torch.__version__}, {args.threads} threads, table ({args.rows}, {args.dim}), "
          f"{args.lookups} lookups per step; load average {os.getloadavg()[0]:.2f}\n")
    print("| active rows | gathered ms | dense ms | faster |")
    print("|---|---|---|---|")
    for active in (0.01, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5):
        sparse = step_ms(args.rows, args.dim, active, 1.0, args.lookups, args.steps)
        dense = step_ms(args.rows, args.dim, active, 0.0, args.lookups, args.steps)
        print(f"| {active:.0%} | {sparse:.1f} | {dense:.1f} | {'gathered' if sparse < dense else 'dense'} |")


if __name__ == "__main__":
    main()
