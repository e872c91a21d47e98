"""Generation speed: autoregressive decoding with and without the KV cache, MaskGIT with and without guidance.

Model: ``ModelConfig.preset(size)`` (random weights) with inputs rgb@224 pixels, tok_rgb@224 (16384 ids, 14x14)
and a caption-like sequence (30k ids, room for 256 tokens); batch 1 by default. Scenarios:

- ``ar cached`` / ``ar uncached``: greedy decoding of 256 caption tokens from RGB (``Step(max_tokens=256)``); the
  uncached path re-runs the decoder over the whole prefix for every token, as ml-4m does;
- ``maskgit N`` / ``maskgit N cfg``: RGB -> tok_rgb@224 in N greedy steps, without and with classifier-free
  guidance (scale 3, RGB dropped in the unconditional pass, both passes in one forward).

Timing: the two scenarios of a pair (cached/uncached, unguided/guided) run in one subprocess, alternating, after a
warmup run each, so that other load on the machine hits both alike; the median of ``--repeats`` runs (one for the
AR pair). Memory: ``+mem`` is the peak RSS of one run in a fresh subprocess minus its RSS once the model exists
(activations, caches, temporaries, and torch's first-call allocations). Ratios: KV-cache speed-up = uncached /
cached time; guidance overhead = guided / unguided time.

    python benchmarks/generate.py                 # tiny and small, batch 1, one thread
    python benchmarks/generate.py --presets test --repeats 1 --no-memory
    python benchmarks/generate.py --presets tiny --threads 2 --batch 4

Measured 2026-11-29 (torch 2.13 CPU, batch 1, one thread, 2 CPU cores shared with a training run, load 2.3-3.9
during the MaskGIT rows, ~7 during the AR rows, which are from an earlier run of this script; absolute times are
up to ~3x those of an idle core, and single runs swing by up to 1.7x, so read the ratios from the per-round
spread: each round runs the pair back to back under the same load). MaskGIT: 5 alternating rounds after a warmup.

    preset scenario          seconds  ms/token  +mem MiB  tokens
    tiny   ar cached           2.878     11.24      16.7     256
    tiny   ar uncached        22.841     89.22      46.1     256      KV cache speed-up 7.9x
    tiny   maskgit 8           1.037      5.29        -      196
    tiny   maskgit 8 cfg       1.754      8.95        -      196      guidance 1.46x per round (1.45-2.21)
    tiny   maskgit 16          1.896      9.67        -      196
    tiny   maskgit 16 cfg      2.789     14.23        -      196      guidance 1.52x per round (1.11-1.86)
    small  ar cached           9.168     35.81      21.4     256
    small  ar uncached        51.544    201.34      54.9     256      KV cache speed-up 5.6x
    small  maskgit 8           1.994     10.17        -      196
    small  maskgit 8 cfg       2.909     14.84        -      196      guidance 1.46x per round (1.11-1.50)
    small  maskgit 16          4.094     20.89        -      196
    small  maskgit 16 cfg      6.164     31.45        -      196      guidance 1.54x per round (1.14-1.65)

(Medians of rounds; "per round" is the median of the 5 guided/unguided ratios and their range. Memory was not
re-measured; the earlier run gave +28-46 MiB for MaskGIT, guided 6-13 MiB more.)

Measured again later on 2026-11-29 on an idle machine (training paused), two threads, 3 alternating runs
(``python benchmarks/generate.py --threads 2``); the second thread does not hide the second pass either:

    preset scenario          seconds  ms/token  +mem MiB  tokens
    tiny   ar cached           1.231      4.81      21.1     256
    tiny   ar uncached         6.484     25.33      46.5     256
           KV cache speed-up (uncached / cached): 5.27x
    tiny   maskgit 8           0.482      2.46      28.0     196
    tiny   maskgit 8 cfg       0.763      3.89      39.1     196
           guidance overhead: 1.58x (per round 1.55-1.60x, n=3)
    tiny   maskgit 16          0.992      5.06      28.8     196
    tiny   maskgit 16 cfg      1.478      7.54      34.9     196
           guidance overhead: 1.49x (per round 1.45-1.54x, n=3)
    small  ar cached           2.425      9.47      23.9     256
    small  ar uncached        14.382     56.18      68.1     256
           KV cache speed-up (uncached / cached): 5.93x
    small  maskgit 8           1.026      5.24      35.8     196
    small  maskgit 8 cfg       1.526      7.79      46.8     196
           guidance overhead: 1.49x (per round 1.47-1.52x, n=3)
    small  maskgit 16          2.102     10.73      37.1     196
    small  maskgit 16 cfg      3.179     16.22      49.6     196
           guidance overhead: 1.51x (per round 1.50-1.52x, n=3)

Guidance: the target of <= 1.3x is not met on a CPU, and exact computation cannot meet it there: the time is
matrix products (75% of it in `aten::mm`), and guidance adds a fixed share of them. Counting token rows through
the layers for 196 tokens in 8 cosine steps (commits 7, 21, 32, 38, 38, 32, 21, 7): the conditional encoder sees
2254 rows (RGB + committed tokens, every step), the unconditional one 686 (committed tokens only); the decoder
runs 882 query rows per pass (every position still to come: MaskGIT samples all of them), and the passes differ
from the first cross-attention on, so the second pass repeats all of it. In units of D^2 multiply-adds (encoder
row ~12 per layer, decoder query ~14, context K/V ~2, vocabulary 16384/384 ~43 per projected row, tiny: 6 + 6
layers) that is 272k unguided and 132k more guided: 1.48x; at 16 steps 1.49x. The measured per-round ratios
(1.46-1.54x) sit on that floor. What has been taken out, all token-identical: the two passes share one packed
encoder row per sample (no padding of the short unconditional pass; splitting it into per-pass encoder calls was
measured, A/B interleaved, at 1.43x vs 1.44x: no gain), context K/V are projected for valid rows only, the passes'
decoder states are mixed before one vocabulary projection, and greedy MaskGIT projects only the rows it commits
(0.90x the unguided and 0.96x the guided time, A/B paired medians over 11 rounds; it lowers both times by the
same amount, so it raises the ratio from ~1.42x to ~1.48x). Left: approximations (reusing the unconditional
pass across steps, as some samplers do) would change tokens; on a GPU at batch 1 the second pass mostly fills
idle parallelism (not measured: no device in this task).

2026-12-06, generation moved onto FourM's own entry points (issue 20: no copy of the encoder, blocks or
attention in generation/): same tokens (greedy and seeded sampling), same speed. This script, tiny, 3 runs of
each version alternating (load 4.7-7.6 on the 2 shared cores; absolute times swing 2x with it), medians
before -> after: ar cached 5.57 -> 3.25 s, ar uncached 29.8 -> 24.0 s, maskgit 8 2.11 -> 2.72 s, maskgit 8 cfg
3.19 -> 4.23 s, maskgit 16 4.79 -> 5.11 s, maskgit 16 cfg 8.71 -> 8.95 s: the load, not the code. Both versions
in one process instead (the previous commit imported as a second package, same weights, calls alternating, load
7-10), after/before per-round medians: ar 256 cached 1.03 (0.97-1.26, n=8), maskgit 8 0.99 (0.72-1.25, n=10),
maskgit 8 cfg 0.99 (0.95-1.13, n=8), maskgit 16 cfg 1.03 (0.87-1.32, n=8).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch

from polymodal import modalities
from polymodal.config import ModelConfig
from polymodal.generation import Plan, Step, generate_iter
from polymodal.modalities import Kind, Modality
from polymodal.model import FourM

TEXT = "caption@bench"
SCENARIOS = ("ar cached", "ar uncached", "maskgit 8", "maskgit 8 cfg", "maskgit 16", "maskgit 16 cfg")


def _register() -> None:
    modalities.register(Modality(TEXT, Kind.SEQUENCE, vocab_size=30_000, max_length=257, pos_table_len=512))


def _plan(scenario: str) -> tuple[Plan, bool]:
    words = scenario.split()
    if words[0] == "ar":
        return Plan((Step(TEXT, "autoregressive", temperature=0.0, max_tokens=256),)), words[1] == "cached"
    scale = 3.0 if words[-1] == "cfg" else 1.0
    return Plan((Step("tok_rgb@224", num_steps=int(words[1]), temperature=0.0, guidance_scale=scale),)), True


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def _setup(preset: str, batch: int, threads: int):
    torch.set_num_threads(threads)
    _register()
    torch.manual_seed(0)
    cfg = ModelConfig.preset(preset, domains_in=("rgb@224", "tok_rgb@224", TEXT), domains_out=("tok_rgb@224", TEXT))
    return FourM(cfg).eval(), {"rgb@224": torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(0))}


def _run(model, conditions, scenario: str) -> int:
    """One generation; returns the number of tokens decoded per sample."""
    plan, cache = _plan(scenario)
    *_, last = generate_iter(model, conditions, plan, cache=cache)
    return int((last.tokens != 0).sum(1).max()) - 1 if last.tokens is not None else 196


def time_worker(preset: str, pair: list[str], batch: int, repeats: int, threads: int) -> dict:
    """Both scenarios of a pair in one process, alternating, so that load on the machine hits both alike."""
    model, cond = _setup(preset, batch, threads)
    times: dict[str, list[float]] = {s: [] for s in pair}
    tokens = {s: _run(model, cond, s) for s in pair}  # warmup
    for _ in range(repeats):
        for s in pair:
            t = time.perf_counter()
            _run(model, cond, s)
            times[s].append(time.perf_counter() - t)
    return {s: {"seconds": statistics.median(times[s]), "tokens": tokens[s], "runs": times[s]} for s in pair}


def memory_worker(preset: str, scenario: str, batch: int, threads: int) -> dict:
    """Peak RSS of one run above the RSS once the model exists (a fresh process per scenario: the allocator has
    nothing cached yet, so the peak is what the run needs)."""
    model, cond = _setup(preset, batch, threads)
    base = _rss_bytes()
    _run(model, cond, scenario)
    return {"mem_mib": max(0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base) / 2**20}


def _call(*args: str) -> dict:
    cmd = [sys.executable, __file__, *args]
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])


PAIRS = (("ar cached", "ar uncached"), ("maskgit 8", "maskgit 8 cfg"), ("maskgit 16", "maskgit 16 cfg"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--presets", nargs="+", default=["tiny", "small"])
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-memory", action="store_true", help="skip the memory workers")
    p.add_argument("--time-worker", nargs=3, help=argparse.SUPPRESS)
    p.add_argument("--memory-worker", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.time_worker:
        preset, a, b = args.time_worker
        print(json.dumps(time_worker(preset, [a, b], args.batch, args.repeats, args.threads)))
        return
    if args.memory_worker:
        print(json.dumps(memory_worker(*args.memory_worker, args.batch, args.threads)))
        return
    common = ["--batch", str(args.batch), "--threads", str(args.threads)]
    print(f"batch {args.batch}, threads {args.threads}, median of {args.repeats} alternating runs")
    print(f"{'preset':<7}{'scenario':<16}{'seconds':>9}{'ms/token':>10}{'+mem MiB':>10}{'tokens':>8}")
    for preset in args.presets:
        for pair in PAIRS:
            reps = 1 if pair[0] == "ar cached" else args.repeats  # uncached decoding is slow by design
            res = _call("--time-worker", preset, *pair, "--repeats", str(reps), *common)
            for s in pair:
                mem = float("nan") if args.no_memory else _call("--memory-worker", preset, s, *common)["mem_mib"]
                r = res[s]
                print(f"{preset:<7}{s:<16}{r['seconds']:>9.3f}{1000 * r['seconds'] / r['tokens']:>10.2f}"
                      f"{mem:>10.1f}{r['tokens']:>8}", flush=True)
            ratio = res[pair[1]]["seconds"] / res[pair[0]]["seconds"]
            label = "KV cache speed-up (uncached / cached)" if pair[0] == "ar cached" else "guidance overhead"
            # the runs alternate, so each round's ratio saw the same load: their spread says how far to trust it
            rounds = sorted(b / a for a, b in zip(res[pair[0]]["runs"], res[pair[1]]["runs"]))
            spread = f" (per round {rounds[0]:.2f}-{rounds[-1]:.2f}x, n={len(rounds)})" if len(rounds) > 1 else ""
            print(f"{'':<7}{label}: {ratio:.2f}x{spread}", flush=True)


if __name__ == "__main__":
    main()
