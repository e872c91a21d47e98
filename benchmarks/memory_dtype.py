"""Where bf16 inference's extra memory goes: one process per setting builds a model of a released size (random
weights, 4M-21's domains) in float32 or bfloat16, runs a short chain (RGB -> depth, caption, normals, boxes) and
reports the resident memory above the weights at its peak and after it (VmHWM reset through /proc/self/clear_refs).
bf16 runs again without oneDNN's primitive cache (``ONEDNN_PRIMITIVE_CACHE_CAPACITY=0``): on the CPU torch's bf16
products go through oneDNN, which keeps each compiled product (one per distinct shape) for reuse, and the chain's
lengths change every step; float32 products go through the BLAS, which keeps nothing.

    python benchmarks/memory_dtype.py                 # size B, 2 threads
    python benchmarks/memory_dtype.py --size L --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

SETTINGS = (("fp32", {}), ("bf16", {}), ("bf16, no oneDNN cache", {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "0"}),
            ("bf16 under autocast", {}))


def _gib(kind: str) -> float:
    return int(re.search(rf"{kind}:\s+(\d+)", Path("/proc/self/status").read_text()).group(1)) / 2**20


def worker(size: str, setting: str, threads: int) -> dict:
    import torch

    from polymodal.config import ModelConfig
    from polymodal.generation import Plan, Step, generate
    from polymodal.model import FourM

    sys.path.append(str(Path(__file__).resolve().parent))
    from vs_reference import DOMAINS

    torch.set_num_threads(threads)
    dtype = torch.float32 if setting == "fp32" else torch.bfloat16
    d_in, d_out = DOMAINS["4m21"]
    with torch.device("meta"):
        model = FourM(ModelConfig.preset(size, domains_in=d_in, domains_out=d_out))
    model = model.to_empty(device="cpu").to(dtype).eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.02, generator=g)
    rgb = torch.randn(1, 3, 224, 224, generator=g).to(dtype)
    plan = Plan((Step("tok_depth@224", "maskgit", temperature=0.0, num_steps=8),
                 Step("caption", "autoregressive", temperature=0.0, max_tokens=64),
                 Step("tok_normal@224", "maskgit", temperature=0.0, num_steps=8),
                 Step("det", "autoregressive", temperature=0.0, max_tokens=64)))
    weights = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**30
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    before = _gib("VmRSS")
    t = time.perf_counter()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=setting.endswith("autocast")):
        generate(model, {"rgb@224": rgb}, plan, seed=0)
    return {"setting": setting, "weights": weights, "s": time.perf_counter() - t,
            "peak": _gib("VmHWM") - before, "after": _gib("VmRSS") - before}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", default="B", help="polymodal.config.MODEL_PRESETS name")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args.size, args.worker, args.threads)))
        return
    print(f"size {args.size}, {args.threads} threads; load average {os.getloadavg()[0]:.2f}\n")
    print("| setting | weights GiB | chain s | above the weights at the peak, GiB | after the chain, GiB |")
    print("|---|---|---|---|---|")
    for setting, env in SETTINGS:
        out = subprocess.run([sys.executable, __file__, "--size", args.size, "--threads", str(args.threads),
                              "--worker", setting], env={**os.environ, **env}, capture_output=True, text=True)
        if out.returncode:
            print(f"| {setting} | failed: {out.stderr.strip().splitlines()[-1]} | | | |")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"| {setting} | {r['weights']:.2f} | {r['s']:.1f} | {r['peak']:.2f} | {r['after']:.2f} |")


if __name__ == "__main__":
    main()
