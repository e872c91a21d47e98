"""float32 linear layers: torch's F.linear (MKL's sgemm on x86) against oneDNN's kernel (polymodal.nn.linear).

For each shape of a 4M model (rows x in -> out: the blocks' layers at widths 384 and 768, a 30,000-word head;
rows 1 = one decoded token, 16-1024 = training and MaskGIT), the forward product and the two backward ones
(grad of input, grad of weight), each kernel timed alternately (median of ``--repeats``), with GFLOP/s, the
speedup and the largest difference between the two outputs. The header gives the CPU, what
`polymodal.nn.linear.backend` chose on this machine, and the 2048^3 product by each kernel.

    python benchmarks/linear_kernels.py --threads 2

Measured 2026-12-06 10:08 UTC on the 2-core AMD EPYC (family 26, Zen 5, AVX512-BF16), torch 2.13, 2 threads, load
1.7 (idle): 2048^3 torch @ 217 GFLOP/s, oneDNN 458; at the model's shapes (rows 16-1024) F.linear 134-228 GFLOP/s,
oneDNN 256-510 on the forward and grad-input products (1.9-2.4x) and 1.2-2.3x on grad-weight; one row: 0.9-1.2x on
the blocks' layers (why one row keeps F.linear), 3.2x / 2.7x on 30,000-word heads of width 384 / 768; outputs within
2.6e-4 (5.5e-4 on the head's grad-input). Log: the project's notes (linear_kernels_s10.log).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from torch.nn import functional as F

from polymodal.nn import linear as L

SHAPES = [  # (rows, in, out)
    (1, 384, 1152), (1, 384, 1536), (1, 1536, 384), (1, 384, 30000), (1, 768, 30000),
    (16, 384, 1536), (197, 384, 1152), (197, 384, 1536), (197, 1536, 384), (400, 768, 3072),
    (1024, 384, 1536), (1024, 1536, 384), (1024, 768, 2304), (128, 384, 30000),
]


def _time(f, repeats: int) -> float:
    f()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def _pair(blas, onednn, repeats: int) -> tuple[float, float]:
    """Alternated medians of the two kernels."""
    tb, to = [], []
    for _ in range(repeats):
        tb.append(_time(blas, 1))
        to.append(_time(onednn, 1))
    return statistics.median(tb), statistics.median(to)


def cpu_name() -> str:
    try:
        info = open("/proc/cpuinfo").read().split("\n\n")[0]
        fields = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in info.splitlines() if ":" in line)}
        return f"{fields.get('model name', '?')} (family {fields.get('cpu family', '?')})"
    except OSError:
        return "unknown CPU"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=15)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if L._op() is None or not torch.backends.mkldnn.is_available():
        print("linear_kernels: this torch has no oneDNN linear kernel; nothing to compare")
        return
    P = L._onednn
    print(f"{cpu_name()}, torch {torch.__version__}, {args.threads} threads, load {os.getloadavg()[0]:.2f}; "
          f"polymodal.nn.linear.backend() = {L.backend()}")
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(2048, 2048, generator=g), torch.randn(2048, 2048, generator=g)
    tb, to = _pair(lambda: a @ b, lambda: P(a, b.t()), 5)
    print(f"2048^3 product: torch @ {2 * 2048**3 / tb / 1e9:.0f} GFLOP/s, oneDNN {2 * 2048**3 / to / 1e9:.0f}\n")
    print("| rows x in -> out | pass | F.linear ms | oneDNN ms | GFLOP/s F.linear / oneDNN | speedup | max diff |")
    print("|---|---|---|---|---|---|---|")
    for m, k, n in SHAPES:
        x, w = torch.randn(m, k, generator=g), torch.randn(n, k, generator=g)
        gy = torch.randn(m, n, generator=g)
        passes = [("forward", lambda x=x, w=w: F.linear(x, w), lambda x=x, w=w: P(x, w))]
        if m > 1:
            passes += [("grad input", lambda gy=gy, w=w: gy @ w, lambda gy=gy, w=w: P(gy, w.t())),
                       ("grad weight", lambda gy=gy, x=x: gy.t() @ x, lambda gy=gy, x=x: P(gy.t(), x.t()))]
        for name, blas, onednn in passes:
            tb, to = _pair(blas, onednn, args.repeats)
            diff = (blas() - onednn()).abs().max().item()
            gf = 2 * m * k * n / 1e9
            print(f"| {m} x {k} -> {n} | {name} | {tb * 1e3:.3f} | {to * 1e3:.3f} | {gf / tb:.0f} / {gf / to:.0f} | "
                  f"{tb / to:.2f}x | {diff:.1e} |")
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
