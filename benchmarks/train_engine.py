"""Throughput of the training engine on the CPU recipe: 1 and 2 processes (torchrun, gloo), bf16 on and off, row-sparse
embedding gradients (``optim.sparse_embeddings``) off and on.

    python benchmarks/train_engine.py [--steps 40] [--batch 32] [--recipe configs/fourm_tiny_cpu.py] [--sparse off on]

Each configuration is a real `polymodal train` run (data, masking, forward, backward, AdamW, logging); the table
reports the median of the logged tokens/s after the first logging window (warm-up) and the wall time of the run.
Processes share the machine's cores: 2 processes on 2 cores use one thread each.

Measured 2026-11-29 (2 cores, idle, torch 2.13 CPU): tokens/s 53,705 fp32 / 18,021 bf16 with one process (bf16 is
3x slower on a CPU without bf16 instructions), 54,985 / 18,080 with sparse embeddings (+2%: this recipe's vocabularies
are small; with 4M-21's the training step gains far more, benchmarks/train_step.py), 54,057 / 18,360 with two
processes; final losses equal to 1e-3.

Measured 2026-12-06 (2 cores with AVX512-BF16, idle, torch 2.13 CPU; row-sparse tables now the one-process default):
tokens/s 68,908 fp32 / 76,762 bf16 with dense tables, 76,992 / 78,595 with row-sparse ones (+12% / +2%), 65,920 /
71,821 with two processes (dense: sparse tables are one process only); final losses equal to 1e-3.

Measured 2026-12-06 10:09 (same machine, idle, ``--sparse on``), float32 linear layers by BLAS against oneDNN
(``POLYMODAL_FP32_LINEAR=blas`` / ``auto``, which chose oneDNN): fp32 tokens/s 62,722 / 61,776 with one process,
65,273 / 64,443 with two: no gain on this recipe, whose ``test``-preset model (dim 64) makes products too small for the
kernel to matter; final losses 2.2082 either way. The 4M-21-shaped step gains 2.0-2.5x (README, Speed and memory).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(recipe: str, nproc: int, precision: str, steps: int, batch: int, out: Path, sparse: bool = False) -> dict:
    threads = max(1, (os.cpu_count() or 2) // nproc)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "polymodal", "train", recipe, f"train.out_dir={out}", f"train.steps={steps}",
           f"train.batch_size={batch}", f"train.precision={precision}", "train.log_every=5", "train.eval_every=0",
           f"train.save_every={steps}", "train.progress=false", "train.tensorboard=false", "data.val_samples=0",
           f"optim.sparse_embeddings={str(sparse).lower()}"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"run failed ({nproc} proc, {precision}, sparse {sparse}):\n{proc.stderr[-2000:]}")
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    rates = [r["tokens_per_s"] for r in records if "tokens_per_s" in r][1:]
    return {"tokens_per_s": statistics.median(rates), "wall_s": wall, "loss": records[-1].get("train/loss")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", default=str(ROOT / "configs" / "fourm_tiny_cpu.py"))
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--sparse", nargs="+", default=["off", "on"], choices=["off", "on"])
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for nproc in (1, 2):
            for precision in ("fp32", "bf16"):
                for sparse in args.sparse if nproc == 1 else ["off"]:  # sparse tables: one process only
                    r = run(args.recipe, nproc, precision, args.steps, args.batch,
                            Path(tmp) / f"{nproc}-{precision}-{sparse}", sparse=sparse == "on")
                    rows.append((nproc, precision, sparse, r))
    print(f"\nrecipe {Path(args.recipe).name}, global batch {args.batch}, {args.steps} steps, "
          f"{os.cpu_count()} cores\n")
    print(f"{'processes':>9} {'precision':>9} {'sparse':>6} {'tokens/s':>10} {'wall s':>8} {'final loss':>10}")
    for nproc, precision, sparse, r in rows:
        print(f"{nproc:>9} {precision:>9} {sparse:>6} {r['tokens_per_s']:>10,.0f} {r['wall_s']:>8.1f} "
              f"{r['loss']:>10.4f}")


if __name__ == "__main__":
    main()
