"""Training-step throughput of polymodal's FourM against the reference implementation's computation path.

One step = forward + masked-modeling loss + backward + AdamW step, on a 4M-21-like batch (rgb@224 pixels, four
224 px token maps, the DINOv2 global tokens, caption, det, metadata) with fixed budgets of input and target tokens
per sample (128 + 128 by default, as in 4M pretraining). polymodal's step is the training loop's own:
`polymodal.train.step.train_step` (what `train.loop.train` calls each step) with a `FourMObjective` and the
optimizer of `train.optim.build_optimizer`. The reference path is `ref_fourm.RefFourM` loaded with the very same
weights (see that module for which of the reference's costs it reproduces).

Timing: per (preset, dtype) one subprocess holds both implementations (same weights, same batch) and alternates
their steps, so that other load on the machine hits both alike; warmup runs until each one's step time is steady
(fresh memory is slow to touch the first time on some VMs), then the median of ``--steps`` steps is reported.
Memory: one training step of one implementation in a fresh subprocess, so that the process's peak resident memory
(``ru_maxrss``) belongs to that configuration alone:
- ``peak``: the worker's peak RSS: Python + torch (~0.3 GiB), weights, gradients, AdamW state, activations, and
  whatever the CPU allocator keeps; it is what a machine must hold to train at this setting.
- ``+step``: peak RSS minus the RSS once the model, batch and optimizer exist (before the step): gradients,
  AdamW moments (allocated in the step), activations and temporaries.

Tokens/s = (input + target budget) * batch / median step time (forward + backward + gradient clipping where the
loop clips + AdamW + zero_grad); "speedup" is the ratio of the median step times, "best/best" that of the fastest
steps (other load only ever adds time, so the fastest step is each implementation's own cost), "pair range" the
spread of the per-pair speedups (each reference step over the polymodal step just before it).

Both run AdamW (lr 1e-4, betas 0.9/0.95, weight decay 0.05) under the same dtype policy (float32, or float32
weights under CPU bf16 autocast). The reference steps with ``torch.optim.AdamW`` over every parameter (dense
gradients), torch's own kernels and no clipping. polymodal steps as its training loop does with
``optim.sparse_embeddings=true optim.decay_embeddings=true`` (4M's decay set: norms and biases exempt) and the
loop's defaults ``optim.clip_grad=1.0 train.fused_loss=true train.bf16_via_fp32=true``: `RowSparseAdamW` with
row-sparse embedding gradients (the same update: tests/train/test_sparse_adamw.py), the vocabulary projection
fused with the cross-entropy (``forward(logits=False)``: tests/test_fused_loss.py, tests/train/test_train_step.py)
and, under bf16 autocast on a CPU without bf16 instructions, bf16 products by float32 kernels on bf16-rounded
operands (`polymodal.nn.gemm`: tests/test_bf16_gemm.py). ``--plain`` sets ``optim.sparse_embeddings``,
``train.fused_loss`` and ``train.bf16_via_fp32`` to false (an ablation: the loop with dense AdamW, logits then
cross-entropy, torch's bf16 kernels).

    python benchmarks/train_step.py                     # test, tiny, small; fp32 and bf16; batch 4; ~5 min idle
    python benchmarks/train_step.py --quick             # ~30 s (test and tiny, fp32, vocabularies capped)
    python benchmarks/train_step.py --presets small B --dtypes fp32 --batch 16 --steps 5 --max-vocab 4096
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, replace

import torch

from polymodal import modalities
from polymodal.config import ExperimentConfig, ModelConfig, OptimConfig, TrainConfig
from polymodal.data.batch import Batch, ModalityTokens
from polymodal.modalities import Kind
from polymodal.model import FourM
from polymodal.train.objectives import FourMObjective
from polymodal.train.optim import build_optimizer
from polymodal.train.step import train_step

try:  # run as `python -m benchmarks.train_step` or imported by tests
    from benchmarks.ref_fourm import RefFourM, mod_dict_from_batch
except ImportError:  # run as `python benchmarks/train_step.py`
    from ref_fourm import RefFourM, mod_dict_from_batch

DOMAINS_IN = ("rgb@224", "tok_rgb@224", "tok_depth@224", "tok_normal@224", "tok_semseg@224", "tok_dinov2_global",
              "caption", "det", "metadata")
DOMAINS_OUT = tuple(n for n in DOMAINS_IN if n != "rgb@224")
# Plausible content lengths (tokens before span masking) of the sequence domains: a caption, ~1-20 boxes of 5
# tokens, a metadata string.
SEQ_LENGTHS = {"caption": (8, 40), "det": (6, 100), "metadata": (10, 40)}


# --------------------------------------------------------------------------------------------- the batch


def _allot(budget: int, probs: list[float], caps: list[int]) -> list[int]:
    """Split ``budget`` by ``probs`` (floor, then largest remainders), never past ``caps``; what a capped
    modality cannot take goes to the others, as a fixed-budget sampler does."""
    n = [min(int(p * budget), c) for p, c in zip(probs, caps)]
    while sum(n) < budget:
        room = [i for i in range(len(n)) if n[i] < caps[i]]
        if not room:
            break
        i = max(room, key=lambda j: probs[j] * budget - n[j])
        n[i] += 1
    return n


def make_batch(config: ModelConfig, batch_size: int, *, num_input: int = 128, num_target: int = 128,
               seed: int = 0) -> Batch:
    """A 4M-style training batch: per sample, Dirichlet(1) shares of fixed input and target budgets over the
    modalities; image positions drawn at random (inputs and targets disjoint); a sequence holds its input span and
    then its target span (the first target id a sentinel) in a (2 * max_length + 2)-long tensor, as the
    reference's data pipeline lays it out."""
    g = torch.Generator().manual_seed(seed)
    names_in, names_out = list(config.domains_in), list(config.domains_out)
    values, is_in, is_tg = {}, {}, {}
    for name in dict.fromkeys(names_in + names_out):
        mod = config.modality(name)
        b = batch_size
        if mod.kind is Kind.PIXELS:
            values[name] = torch.randn(b, mod.channels, *mod.image_size, generator=g)
            length = mod.num_tokens
        elif mod.kind is Kind.SEQUENCE:
            length = 2 * mod.max_length + 2
            values[name] = torch.randint(204, mod.vocab_size, (b, length), generator=g) if mod.vocab_size > 204 \
                else torch.randint(0, mod.vocab_size, (b, length), generator=g)
        else:
            length = mod.num_tokens
            values[name] = torch.randint(0, mod.vocab_size, (b, length), generator=g)
        is_in[name] = torch.zeros(b, length, dtype=torch.bool)
        is_tg[name] = torch.zeros(b, length, dtype=torch.bool)

    def dirichlet(k: int) -> list[float]:  # Dirichlet(1, ..., 1) = normalized Exp(1) draws
        e = torch.empty(k).exponential_(generator=g)
        return (e / e.sum()).tolist()

    for i in range(batch_size):
        avail = {}
        for name in values:  # a fixed order: the same batch in every process
            mod = config.modality(name)
            if mod.kind is Kind.SEQUENCE:
                lo, hi = SEQ_LENGTHS.get(name, (4, mod.max_length))
                avail[name] = int(torch.randint(lo, hi + 1, (1,), generator=g))
            else:
                avail[name] = mod.num_tokens
        n_in = dict(zip(names_in, _allot(num_input, dirichlet(len(names_in)),
                                         [avail[n] for n in names_in])))
        n_tg = dict(zip(names_out, _allot(num_target, dirichlet(len(names_out)),
                                          [avail[n] - n_in.get(n, 0) for n in names_out])))
        for name in avail:
            k_in, k_tg = n_in.get(name, 0), n_tg.get(name, 0)
            mod = config.modality(name)
            if mod.kind is Kind.SEQUENCE:
                is_in[name][i, :k_in] = True
                is_tg[name][i, k_in:k_in + k_tg] = True
                if k_tg:
                    values[name][i, k_in] = min(5, mod.vocab_size - 1)  # [S_1]: a target span opens with a sentinel
            else:
                perm = torch.randperm(mod.num_tokens, generator=g)
                is_in[name][i, perm[:k_in]] = True
                is_tg[name][i, perm[k_in:k_in + k_tg]] = True
    return Batch({n: ModalityTokens(values[n], is_in[n], is_tg[n]) for n in values})


def model_config(preset: str, *, max_vocab: int | None = None) -> ModelConfig:
    vocab = {}
    if max_vocab:
        vocab = {n: max_vocab for n in DOMAINS_IN if (modalities.get(n).vocab_size or 0) > max_vocab}
    return ModelConfig.preset(preset, domains_in=DOMAINS_IN, domains_out=DOMAINS_OUT, vocab_sizes=vocab)


# ---------------------------------------------------------------------------------------------- a worker


@dataclass(frozen=True)
class Spec:
    mode: str  # "time": both implementations, steps alternated; "polymodal" / "reference": memory of one
    preset: str
    dtype: str  # "fp32" or "bf16"
    batch: int
    num_input: int
    num_target: int
    warmup: int
    steps: int
    max_warmup: int
    max_vocab: int | None
    fused: bool  # the reference's AdamW: torch's fused CPU kernel (else foreach)
    threads: int
    plain_optimizer: bool = False  # polymodal's loop without its step optimizations (an ablation): see --plain


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


LR = 1e-4


def experiment(config: ModelConfig, spec: Spec) -> ExperimentConfig:
    """The training-loop config polymodal's step runs under: its batch, precision and step options."""
    fast = not spec.plain_optimizer
    return ExperimentConfig(
        objective="fourm", model=config,
        train=TrainConfig(batch_size=spec.batch, precision=spec.dtype, fused_loss=fast, bf16_via_fp32=fast),
        optim=OptimConfig(base_lr=LR * 256 / spec.batch, betas=(0.9, 0.95), weight_decay=0.05, decay_embeddings=True,
                          sparse_embeddings=fast))


def _trainer(impl: str, model: FourM, batch: Batch, spec: Spec):
    """A ``step()`` closure for one implementation: returns (step seconds, loss)."""
    if impl == "polymodal":
        # The training loop's step, as `train.loop.train` calls it (one micro-batch, one process).
        model.check_batch(batch)
        model.train()
        cfg = experiment(model.config, spec)
        objective = FourMObjective(cfg)
        optimizer = build_optimizer(model, cfg.optim, spec.batch)
        micro = [batch]
        stats = objective.step_stats(micro)

        def step() -> tuple[float, float]:
            t0 = time.perf_counter()
            out = train_step(model, micro, optimizer, objective, cfg, stats=stats)
            seconds = time.perf_counter() - t0
            return seconds, objective.summarize(out.sums, stats)["loss"]

        return step

    net = RefFourM.from_polymodal(model)  # its own copy of the same weights
    mod_dict = mod_dict_from_batch(batch, model.config)
    net.train()
    # The reference's optimizer: torch's AdamW over all parameters, every one decayed, dense gradients.
    opt = torch.optim.AdamW(net.parameters(), lr=LR, betas=(0.9, 0.95), weight_decay=0.05, fused=spec.fused or None,
                            foreach=None if spec.fused else True)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if spec.dtype == "bf16" else nullcontext()

    def ref_step() -> tuple[float, float]:
        t0 = time.perf_counter()
        with autocast:
            loss = net(mod_dict, spec.num_input, spec.num_target)[0]
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return time.perf_counter() - t0, loss.item()

    return ref_step


def _steady(times: list[float]) -> bool:
    return len(times) >= 2 and abs(times[-1] - times[-2]) <= 0.15 * min(times[-2:])


def run(spec: Spec) -> dict:
    """One worker. ``mode="time"``: both implementations on the same weights and batch, steps alternated so that
    any other load on the machine hits both alike; warmup continues (up to ``max_warmup`` rounds) until each step time
    is steady (fresh memory is slow to touch the first time on some VMs). Otherwise: one implementation alone,
    ``warmup + steps`` steps, for its peak memory."""
    torch.set_num_threads(spec.threads)
    cfg = model_config(spec.preset, max_vocab=spec.max_vocab)
    torch.manual_seed(0)
    # The 4M-21 files hold (unused) decoder token tables for image domains; the reference looks them up.
    model = FourM(cfg, image_decoder_token_tables=True)
    batch = make_batch(cfg, spec.batch, num_input=spec.num_input, num_target=spec.num_target)
    params = sum(p.numel() for p in model.parameters())
    impls = ("polymodal", "reference") if spec.mode == "time" else (spec.mode,)
    steps = {impl: _trainer(impl, model, batch, spec) for impl in impls}
    if spec.mode != "time":
        del model  # the reference holds its own copy of the weights; polymodal's closure holds the model
        gc.collect()
        rss_setup = _rss_bytes()
        losses = [steps[spec.mode]()[1] for _ in range(spec.warmup + spec.steps)]
        return {"spec": asdict(spec), "loss0": losses[0], "rss_setup": rss_setup,
                "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    warm = {impl: [] for impl in impls}
    for r in range(max(spec.warmup, spec.max_warmup)):
        for impl in impls:
            warm[impl].append(steps[impl]()[0])
        if r + 1 >= spec.warmup and all(_steady(t) for t in warm.values()):
            break
    out = {impl: {"step_s": []} for impl in impls}
    for _ in range(spec.steps):
        for impl in impls:
            out[impl]["step_s"].append(steps[impl]()[0])
    return {"spec": asdict(spec), "params": params, "warmup_rounds": len(warm["polymodal"]), **out}


def run_in_subprocess(spec: Spec) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(asdict(spec))]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {spec} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------- the table


def _mib(n: float) -> str:
    return f"{n / 2**20:,.0f}"


def _spread(ours: list[float], ref: list[float]) -> str:
    """Range of the speedups of the alternated step pairs (each reference step over the polymodal step before)."""
    pairs = sorted(r / o for o, r in zip(ours, ref))
    return f"{pairs[0]:.2f}-{pairs[-1]:.2f}x"


def report(rows: list[tuple[dict, dict, dict]]) -> str:
    """One line per (preset, dtype) from a timing result and the two memory results."""
    head = ("preset", "dtype", "batch", "tok/step", "polymodal tok/s", "reference tok/s", "speedup", "best/best",
            "pair range",
            "poly step ms", "ref step ms", "poly peak MiB (+step)", "ref peak MiB (+step)")
    lines = []
    for timing, mem_ours, mem_ref in rows:
        s = timing["spec"]
        tokens = (s["num_input"] + s["num_target"]) * s["batch"]
        ours, ref = timing["polymodal"], timing["reference"]
        t_ours, t_ref = statistics.median(ours["step_s"]), statistics.median(ref["step_s"])
        lines.append((s["preset"], s["dtype"], str(s["batch"]), str(tokens), f"{tokens / t_ours:,.0f}",
                      f"{tokens / t_ref:,.0f}", f"{t_ref / t_ours:.2f}x",
                      f"{min(ref['step_s']) / min(ours['step_s']):.2f}x", _spread(ours["step_s"], ref["step_s"]),
                      f"{t_ours * 1e3:,.0f}", f"{t_ref * 1e3:,.0f}",
                      f"{_mib(mem_ours['peak_rss'])} (+{_mib(mem_ours['peak_rss'] - mem_ours['rss_setup'])})",
                      f"{_mib(mem_ref['peak_rss'])} (+{_mib(mem_ref['peak_rss'] - mem_ref['rss_setup'])})"))
    widths = [max(len(h), *(len(r[i]) for r in lines)) for i, h in enumerate(head)]
    fmt = lambda r: "| " + " | ".join(c.rjust(w) for c, w in zip(r, widths)) + " |"
    out = [fmt(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    return "\n".join(out + [fmt(r) for r in lines])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--presets", nargs="+", default=["test", "tiny", "small"], help="model sizes (config.MODEL_PRESETS)")
    p.add_argument("--dtypes", nargs="+", default=None, choices=["fp32", "bf16"], help="default: fp32 bf16")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--num-input", type=int, default=128, help="input tokens per sample")
    p.add_argument("--num-target", type=int, default=128, help="target tokens per sample")
    p.add_argument("--warmup", type=int, default=1, help="minimum warmup steps (more until step times settle)")
    p.add_argument("--max-warmup", type=int, default=4, help="give up waiting for steady step times after this")
    p.add_argument("--steps", type=int, default=3, help="timed steps of each implementation; the median is reported")
    p.add_argument("--max-vocab", type=int, default=None, help="cap every vocabulary (default: the real sizes)")
    p.add_argument("--foreach", action="store_true",
                   help="the reference's AdamW by the foreach kernels instead of the fused CPU kernel")
    p.add_argument("--plain", dest="plain_optimizer", action="store_true",
                   help="polymodal's loop step without its optimizations (optim.sparse_embeddings, train.fused_loss "
                        "and train.bf16_via_fp32 false: dense AdamW, logits then cross-entropy, torch's bf16 "
                        "kernels): an ablation")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--quick", action="store_true",
                   help="~30 s: test and tiny in fp32, batch 4, vocabularies capped at 4096, 2 timed steps")
    p.add_argument("--json", help="also write every worker's raw result to this file")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(run(Spec(**json.loads(args.worker)))))
        return
    if args.quick:
        args.presets, args.warmup, args.max_warmup, args.steps = ["test", "tiny"], 1, 3, 2
        args.max_vocab = args.max_vocab or 4096
        args.dtypes = args.dtypes or ["fp32"]
    args.dtypes = args.dtypes or ["fp32", "bf16"]
    print(f"torch {torch.__version__}, {args.threads} threads, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}; batch {args.batch} x ({args.num_input} input + "
          f"{args.num_target} target tokens); reference AdamW {'foreach' if args.foreach else 'fused'}"
          f"{' (polymodal plain, an ablation)' if args.plain_optimizer else ''}; "
          f"{'vocabularies capped at ' + str(args.max_vocab) + '; ' if args.max_vocab else ''}"
          f"median of {args.steps} alternated steps; load average {os.getloadavg()[0]:.1f}", flush=True)
    rows, raw = [], []
    for preset in args.presets:
        for dtype in args.dtypes:
            base = Spec("time", preset, dtype, args.batch, args.num_input, args.num_target, args.warmup,
                        args.steps, args.max_warmup, args.max_vocab, not args.foreach, args.threads,
                        args.plain_optimizer)
            timing = run_in_subprocess(base)
            # Memory: one step in a fresh process per implementation (AdamW allocates its state in that step).
            mem = [run_in_subprocess(replace(base, mode=impl, warmup=1, steps=0))
                   for impl in ("polymodal", "reference")]
            rows.append((timing, *mem))
            raw.append({"timing": timing, "memory": mem})
            print(f"  {preset} {dtype}: {timing['params'] / 1e6:.1f}M parameters, "
                  f"{timing['warmup_rounds']} warmup rounds; first loss polymodal {mem[0]['loss0']:.4f}, "
                  f"reference {mem[1]['loss0']:.4f}", flush=True)
    load = os.getloadavg()[0]
    print(f"\nload average at the end {load:.1f}"
          + (f": other processes shared the {args.threads} cores, timings are unreliable\n" if load > args.threads + 0.5
             else " (timings assume an otherwise idle machine)\n"))
    print(report(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(raw, f, indent=1)


if __name__ == "__main__":
    main()
