"""Speed of the built-in world: scenes per second per core, every modality, at 64, 128 and 224 px.

    python benchmarks/world.py [--scenes 300] [--repeats 3] [--res 64 128 224]

Runs in one process with numpy's threads pinned to one, and times with the process's CPU clock, so the figure is
per core whatever else the machine runs. Each resolution renders the same ``--scenes`` scenes ``--repeats``
times and keeps the fastest pass (the usual timeit rule: slower passes measure interference, not the code).
Columns: ``render`` is `render_sample` (scene, ray casting, every label); ``+encode`` adds the PNG/JSON bytes a
shard stores, i.e. what `polymodal data synth` does per scene and core.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import time  # noqa: E402

import cv2  # noqa: E402

from polymodal.data.world import render_sample  # noqa: E402
from polymodal.data.world.codec import encode  # noqa: E402
from polymodal.data.world.sample import MODALITIES  # noqa: E402


def _rate(fn, n: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        for i in range(n):
            fn(i)
        best = min(best, time.process_time() - start)
    return n / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenes", type=int, default=300, help="scenes per pass at 64 px (fewer at larger sizes)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--res", type=int, nargs="+", default=[64, 128, 224])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    cv2.setNumThreads(1)

    def encoded(res):
        def run(i):
            sample = render_sample(args.seed, i, res)
            for m in MODALITIES:
                encode(m, sample[m])
        return run

    print(f"world benchmark: seed {args.seed}, best of {args.repeats} passes, CPU time of one process\n")
    print(f"{'res':>5} {'scenes':>7} {'render/s':>9} {'ms/scene':>9} {'+encode/s':>10} {'ms/scene':>9}")
    for res in args.res:
        n = max(20, args.scenes * 64 * 64 // (res * res) * 2)  # keep each pass a few seconds long
        n = min(n, args.scenes)
        render_sample(args.seed, 0, res)  # warm caches and imports
        r = _rate(lambda i, res=res: render_sample(args.seed, i, res), n, args.repeats)
        e = _rate(encoded(res), n, args.repeats)
        print(f"{res:>5} {n:>7} {r:>9.1f} {1e3 / r:>9.2f} {e:>10.1f} {1e3 / e:>9.2f}")


if __name__ == "__main__":
    main()
