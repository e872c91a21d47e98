"""What a bf16 training step of polymodal could cost at best on this machine: its own matrix products replayed
alone (every mm/bmm/addmm of one step, recorded with their shapes, strides and dtypes, then run on random operands
without anything between them) plus the fused AdamW kernel alone over the parameters that step updates, against
the whole step. The products and the optimizer are work no implementation of the same step avoids, so their sum
bounds the fraction of the matmul peak the step can reach.

    python benchmarks/train_floor.py                    # 4M-21 domains, dim 384, 6+6 layers, batch 8 x (128+128)
    python benchmarks/train_floor.py --dtype fp32 --threads 1
    python benchmarks/train_floor.py --compile          # and the step with train.compile's compiled blocks

The model and batch are those of `benchmarks/vs_reference.py` (polymodal's side only, no reference needed).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.append(str(Path(__file__).resolve().parent))

MATMULS = {torch.ops.aten.mm.default, torch.ops.aten.bmm.default, torch.ops.aten.addmm.default}


class Record(TorchDispatchMode):
    """The matrix products one step runs: (op, [(shape, stride, dtype) of each tensor argument])."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in MATMULS:
            self.calls.append((func, [(a.shape, a.stride(), a.dtype) for a in args if isinstance(a, torch.Tensor)]))
        return func(*args, **(kwargs or {}))


def replay(calls) -> float:
    """Seconds to run the recorded products back to back on random operands (median of 5)."""
    def operand(shape, stride, dtype):
        base = torch.randn(max(sum((n - 1) * s for n, s in zip(shape, stride)) + 1, 1)).to(dtype)
        return base.as_strided(shape, stride)

    work = [(f, [operand(*a) for a in args]) for f, args in calls]
    times = []
    for _ in range(6):
        t = time.perf_counter()
        for f, args in work:
            f(*args)
        times.append(time.perf_counter() - t)
    return statistics.median(times[1:])


def main() -> None:
    import vs_reference as V

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dtype", default="bf16", choices=["fp32", "bf16"])
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--compile", action="store_true", help="then the same step with the blocks torch.compile'd")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    from polymodal.config import ExperimentConfig, ModelConfig, OptimConfig, TrainConfig
    from polymodal.model import FourM
    from polymodal.train import optim as poly_optim
    from polymodal.train.objectives import make_objective
    from polymodal.train.step import keep_freed_memory, train_step

    keep_freed_memory()
    d_in, d_out = V.DOMAINS["4m21"]  # the config the reference's model loads as (vs_reference.py)
    mcfg = ModelConfig.preset("tiny", domains_in=d_in, domains_out=d_out)
    model = FourM(mcfg).train()
    batch = V.make_batch(mcfg, 8, 128, 128)
    cfg = ExperimentConfig(objective="fourm", model=mcfg, optim=OptimConfig(), train=TrainConfig(precision=args.dtype))
    objective = make_objective(cfg)
    opt = poly_optim.build_optimizer(model, cfg.optim, 256)
    stats = objective.step_stats([batch])

    def step():
        train_step(model, [batch], opt, objective, cfg, stats=stats, device=torch.device("cpu"))

    for _ in range(3):
        step()
    times = []
    for _ in range(args.steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    whole = statistics.median(times)
    rec = Record()
    with rec:
        step()
    flops = 0
    for f, a in rec.calls:
        (s0, _, _), (s1, _, _) = a[-2], a[-1]
        flops += 2 * s0[-2] * s0[-1] * s1[-1] * (s0[0] if f is torch.ops.aten.bmm.default else 1)
    mm = replay(rec.calls)

    # the optimizer alone: the fused AdamW kernel over what this step updates (dense parameters, active rows)
    sizes = []
    for q in model.parameters():
        st = opt.state.get(q, {})
        if "exp_avg" not in st:
            continue
        active = st.get("active")
        rows = int(active.sum()) if active is not None and active.float().mean() <= opt.dense_above else q.shape[0]
        sizes.append(rows * (q.numel() // q.shape[0]) if q.ndim else 1)
    ps = [torch.randn(n) for n in sizes]
    gs, ms, vs = [torch.randn(n) for n in sizes], [torch.zeros(n) for n in sizes], [torch.zeros(n) for n in sizes]
    steps_t = [torch.zeros(()) for _ in sizes]
    from torch.optim.adam import adam
    adam_t = []
    for _ in range(6):
        t = time.perf_counter()
        adam(ps, gs, ms, vs, [], steps_t, fused=True, decoupled_weight_decay=True, amsgrad=False, beta1=0.9,
             beta2=0.95, lr=1e-4, weight_decay=0.05, eps=1e-8, maximize=False)
        adam_t.append(time.perf_counter() - t)
    adamw = statistics.median(adam_t[1:])

    compiled = None
    if args.compile:  # the same model and optimizer, its blocks compiled as train.compile=true does
        from polymodal.train.parallelize import transformer_blocks

        for block in transformer_blocks(model):
            block.compile(dynamic=True)  # token counts vary from batch to batch
        t = time.perf_counter()
        step()
        first = time.perf_counter() - t
        for _ in range(2):
            step()
        ctimes = []
        for _ in range(args.steps):
            t = time.perf_counter()
            step()
            ctimes.append(time.perf_counter() - t)
        compiled = (first, statistics.median(ctimes))

    a = torch.randn(2048, 2048).to(torch.bfloat16 if args.dtype == "bf16" else torch.float32)
    peak_t = []
    for _ in range(5):
        t = time.perf_counter()
        a @ a
        peak_t.append(time.perf_counter() - t)
    peak = 2 * 2048 ** 3 / min(peak_t)
    print(f"torch {torch.__version__}, {args.threads} threads, {args.dtype}; load average {os.getloadavg()[0]:.2f}; "
          f"{sum(q.numel() for q in model.parameters()) / 1e6:.1f}M parameters, {sum(sizes) / 1e6:.1f}M updated; "
          f"{len(rec.calls)} products, {flops / 1e9:.1f} GFLOP; matmul peak {peak / 1e9:.0f} GFLOP/s\n")
    print("| part | seconds | the step's FLOPs in this time, % of peak |")
    print("|---|---|---|")
    for name, sec in (("whole step (median)", whole), ("its matrix products alone", mm),
                      ("fused AdamW alone", adamw), ("products + AdamW (the floor)", mm + adamw)):
        share = "" if name.startswith("fused") else f"{100 * flops / sec / peak:.1f}%"  # no products in it
        print(f"| {name} | {sec:.3f} | {share} |")
    if compiled is not None:
        print(f"| whole step, blocks compiled (median; the first step, compiling, took {compiled[0]:.0f} s) | "
              f"{compiled[1]:.3f} | {100 * flops / compiled[1] / peak:.1f}% |")


if __name__ == "__main__":
    main()
