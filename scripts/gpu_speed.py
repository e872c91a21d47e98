"""Speed sections of scripts/gpu_check.sh: training-step MFU and generation throughput at 4M-21 B shapes.

    torchrun --standalone --nproc_per_node 1 scripts/gpu_speed.py train OUT [--smoke]
    python scripts/gpu_speed.py generate OUT [--smoke]

``train``: the training loop's own step (`polymodal.train.step.train_step`: the FourM objective's fused loss,
backward, clipping, AdamW of `train.optim.build_optimizer`) in bf16 autocast, FSDP2 over a process group of one
process (`train.parallelize`, as a run under torchrun applies it), without and with ``torch.compile`` (the
transformer blocks, as ``train.compile=true``). The model: dim 768, 12 + 12 layers, 12 heads, the 4M-21 domains and
vocabularies (4M-21 B, random weights); the batch: ``--batch`` samples of 128 input + 128 target tokens sampled by
4M-21's masking (`data.masking.sample_batch`, the "4m21" mixture) from random full samples. Figures: the median
step time of ``--steps`` steps after ``--warmup``, tokens/s (inputs + targets), the FLOPs of one step counted by
torch's FlopCounterMode (matrix products and attention, forward and backward), and MFU = FLOPs / step time over
(a) the card's nominal dense bf16 peak (from its name, `NOMINAL_BF16`; H100 SXM 989 TFLOP/s) and (b) the
achievable peak: the best of a few (8192 x 8192) @ (8192 x 8192) bf16 products on the card, measured here.

``generate``: the model in bfloat16 (weights held in bf16, as ``generate --dtype bfloat16``): RGB -> tok_depth@224
by MaskGIT in 8 steps, greedy, without and with guidance (scale 2: a second, unconditional pass per step), and
RGB -> caption greedy to 64 tokens, at batch 1, 8 and 32: images/s and tokens/s, median of ``--runs`` runs after
one warm-up. The caption head's weights are zeroed, so that greedy decoding never writes the closing sentinel
and every run writes all 64 tokens (the cost of a step does not depend on the weights' values).

``--smoke``: the same code on the CPU at tiny shapes (dim 64, 2 + 2 layers, vocabularies capped at 512, batch 4,
matrices of 256), in seconds (compiled by dynamo with the "eager" backend: inductor's C++ build of the blocks took
136 s on this 2-core machine): tests/test_gpu_check.py runs it. Each prints ``name: value`` lines and writes
OUT/<section>.json with every figure (rewritten after each run, so a timeout leaves what was measured) and adds
it to OUT/speed.json (both sections).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

DOMAINS_IN = ("caption", "t5_caption", "det", "metadata", "rgb@224", "tok_rgb@224", "tok_normal@224", "tok_depth@224",
              "tok_semseg@224", "tok_clip@224", "human_poses", "tok_dinov2@224", "tok_dinov2_global",
              "tok_imagebind@224", "tok_imagebind_global", "tok_sam_edge@224", "tok_canny_edge@224", "color_palette",
              "sam_instance")
DOMAINS_OUT = tuple(d for d in DOMAINS_IN if d not in ("rgb@224", "t5_caption"))
# Dense bf16 tensor-core peaks from the vendor's data sheets (without sparsity), by a substring of the card's name;
# the first match wins, so the specific names come first.
NOMINAL_BF16 = (("H100 PCIe", 756e12), ("H100 NVL", 835e12), ("H100", 989e12), ("H200", 989e12),
                ("GH200", 989e12), ("A100", 312e12), ("L40S", 362e12), ("A10G", 70e12))


def model_config(smoke: bool):
    from polymodal import modalities
    from polymodal.config import ModelConfig

    if not smoke:
        return ModelConfig.preset("B", domains_in=DOMAINS_IN, domains_out=DOMAINS_OUT)
    capped = {d: 512 for d in DOMAINS_IN if (modalities.get(d).vocab_size or 0) > 512}
    return ModelConfig(domains_in=DOMAINS_IN, domains_out=DOMAINS_OUT, dim=64, encoder_depth=2, decoder_depth=2,
                       num_heads=2, vocab_sizes=capped)


def masked_batch(cfg, batch_size: int, seed: int = 0):
    """Random full samples of every domain (sequences: 8-48 random words then [EOS]), masked by 4M-21's sampler."""
    from polymodal.config import MaskingConfig
    from polymodal.data.masking import sample_batch
    from polymodal.data.spans import EOS
    from polymodal.modalities import Kind

    g = torch.Generator().manual_seed(seed)
    raw, mods = {}, {}
    for name in dict.fromkeys(cfg.domains_in + cfg.domains_out):
        mod = mods[name] = cfg.modality(name)
        if mod.kind is Kind.PIXELS:
            raw[name] = torch.randn(batch_size, mod.channels, *mod.image_size, generator=g)
        elif mod.kind is Kind.SEQUENCE_EMB:
            raw[name] = torch.randn(batch_size, mod.max_length, mod.emb_dim, generator=g)
        elif mod.kind is Kind.SEQUENCE:
            ids = torch.zeros(batch_size, mod.max_length, dtype=torch.long)  # PAD after [EOS]
            for i in range(batch_size):
                n = int(torch.randint(8, min(48, mod.max_length - 1), (1,), generator=g))
                ids[i, :n] = torch.randint(204, mod.vocab_size, (n,), generator=g)  # past the special ids
                ids[i, n] = EOS
            raw[name] = ids
        else:
            raw[name] = torch.randint(0, mod.vocab_size, (batch_size, mod.num_tokens), generator=g)
    masking = MaskingConfig(num_input_tokens=128, num_target_tokens=128, mixture="4m21")
    return sample_batch(raw, mods, masking, generator=g)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device: torch.device, n: int, reps: int = 5) -> float:
    """FLOP/s of the fastest of ``reps`` bf16 (n x n) @ (n x n) products on ``device``."""
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(reps):
        sync(device)
        t = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def card(device: torch.device) -> tuple[str, float | None]:
    """(the device's name, its nominal dense bf16 FLOP/s or None when `NOMINAL_BF16` does not know it)."""
    if device.type != "cuda":
        return "cpu", None
    name = torch.cuda.get_device_name(device)
    return name, nominal_peak(name)


def nominal_peak(name: str) -> float | None:
    """The nominal dense bf16 FLOP/s of a card by its CUDA name (``NVIDIA H100 80GB HBM3``), None if unknown."""
    return next((peak for key, peak in NOMINAL_BF16 if key in name), None)


def train(out: Path, smoke: bool, batch_size: int, warmup: int, steps: int) -> dict:
    from torch.utils.flop_counter import FlopCounterMode

    from polymodal.config import ExperimentConfig, OptimConfig, TrainConfig
    from polymodal.model import FourM
    from polymodal.train.dist import init_distributed
    from polymodal.train.objectives import make_objective
    from polymodal.train.optim import build_optimizer
    from polymodal.train.parallelize import parallelize, resolve_mode, transformer_blocks
    from polymodal.train.step import forward_context, train_step

    info = init_distributed("cpu" if smoke else "cuda")
    device = info.device
    mcfg = model_config(smoke)
    cfg = ExperimentConfig(objective="fourm", model=mcfg, optim=OptimConfig(),
                           train=TrainConfig(precision="bf16", parallel="fsdp", device=device.type))
    objective = make_objective(cfg)
    batch = masked_batch(mcfg, batch_size).to(device)
    tokens = sum(int(t.is_input.sum()) + int(t.is_target.sum()) for t in batch.values())
    stats = objective.step_stats([batch])
    name, nominal = card(device)
    peak = matmul_peak(device, 256 if smoke else 8192)
    result = {"device": name, "nominal_bf16_flops": nominal, "matmul_bf16_flops": peak, "batch": batch_size,
              "tokens_per_step": tokens, "fsdp": resolve_mode("fsdp", info) == "fsdp", "runs": {}}
    print(f"device: {name}; nominal bf16 peak {f'{nominal / 1e12:.0f}' if nominal else 'unknown'} TFLOP/s; "
          f"bf16 matmul measured {peak / 1e12:.1f} TFLOP/s; FSDP2 {'on' if result['fsdp'] else 'OFF'}", flush=True)
    for compiled in (False, True):
        torch.manual_seed(0)
        model = FourM(mcfg).to(device).train()
        if not compiled:  # the FLOPs of one step, on the plain model (the same products either way)
            result["params"] = sum(p.numel() for p in model.parameters())
            counter = FlopCounterMode(display=False)
            with counter, forward_context(cfg, device):
                loss, _ = objective.loss(model, batch, stats, 1, device)
                loss.backward()
            result["flops_per_step"] = counter.get_total_flops()
            model.zero_grad(set_to_none=True)
            print(f"model: {result['params'] / 1e6:.1f}M parameters; batch {batch_size}, {tokens} tokens per step, "
                  f"{result['flops_per_step'] / 1e12:.3f} TFLOP per step", flush=True)
        if compiled and smoke:  # inductor's C++ code generation takes minutes on a CPU: dynamo's tracing only
            for block in transformer_blocks(model):
                block.compile(dynamic=True, backend="eager")
        model = parallelize(model, info, mode="fsdp", compile=compiled and not smoke)
        opt = build_optimizer(model, cfg.optim, batch_size, sparse=False)  # FSDP2 shards dense gradients
        times = []
        t0 = time.perf_counter()
        for i in range(warmup + steps):
            sync(device)
            t = time.perf_counter()
            train_step(model, [batch], opt, objective, cfg, stats=stats, device=device)
            sync(device)
            times.append(time.perf_counter() - t)
            if i == warmup - 1:
                first = time.perf_counter() - t0
        step = statistics.median(times[warmup:])
        flops = result["flops_per_step"] / step
        run = {"step_s": step, "warmup_s": first, "tokens_per_s": tokens / step, "tflops": flops / 1e12,
               "mfu_nominal": flops / nominal if nominal else None, "mfu_matmul": flops / peak}
        key = "compiled" if compiled else "eager"
        result["runs"][key] = run
        (out / "train.json").write_text(json.dumps(result, indent=1) + "\n")  # what a timeout leaves
        nominal_mfu = f"{100 * run['mfu_nominal']:.1f}%" if run["mfu_nominal"] is not None else "n/a"
        print(f"train {key}: step {step * 1e3:.1f} ms, {run['tokens_per_s']:.0f} tokens/s, {run['tflops']:.2f} "
              f"TFLOP/s, MFU {nominal_mfu} of nominal, {100 * run['mfu_matmul']:.1f}% of measured matmul "
              f"(warm-up {first:.1f} s)", flush=True)
        del model, opt
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return result


def generation(out: Path, smoke: bool, runs: int, batches: list[int]) -> dict:
    from polymodal.generation import Plan, Step, generate
    from polymodal.model import FourM

    device = torch.device("cpu" if smoke or not torch.cuda.is_available() else "cuda")
    torch.manual_seed(0)
    model = FourM(model_config(smoke)).eval().to(device=device, dtype=torch.bfloat16)
    with torch.no_grad():
        model.decoder_embeddings["caption"].to_logits.weight.zero_()  # greedy never closes: all 64 tokens written
    caption_tokens = 16 if smoke else 64
    work = {"maskgit": (Plan((Step("tok_depth@224", "maskgit", temperature=0.0, num_steps=8),)), "tok_depth@224"),
            "maskgit_guided": (Plan((Step("tok_depth@224", "maskgit", temperature=0.0, num_steps=8,
                                          guidance_scale=2.0),)), "tok_depth@224"),
            "caption": (Plan((Step("caption", "autoregressive", temperature=0.0, max_tokens=caption_tokens),)),
                        "caption")}
    result = {"device": card(device)[0], "dtype": "bfloat16", "runs": {}}
    for b in batches:
        rgb = torch.randn(b, 3, 224, 224, device=device, generator=torch.Generator(device).manual_seed(b))
        for key, (plan, target) in work.items():
            times, written = [], 0
            for _ in range(1 + runs):
                sync(device)
                t = time.perf_counter()
                with torch.no_grad():
                    ids = generate(model, {"rgb@224": rgb}, plan, seed=0)[target]
                sync(device)
                times.append(time.perf_counter() - t)
                written = ids.shape[0] * ids.shape[1]
            s = statistics.median(times[1:])
            row = {"batch": b, "s": s, "images_per_s": b / s, "tokens_per_s": written / s, "tokens": written}
            result["runs"][f"{key}@{b}"] = row
            unit = (f"{row['tokens_per_s']:.0f} tokens/s ({written // b} per image)" if key == "caption"
                    else f"{row['images_per_s']:.2f} images/s")
            print(f"generate {key} batch {b}: {s * 1e3:.1f} ms per batch, {unit}", flush=True)
            (out / "generate.json").write_text(json.dumps(result, indent=1) + "\n")  # what a timeout leaves
    return result


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("section", choices=("train", "generate"))
    p.add_argument("out", help="folder for <section>.json")
    p.add_argument("--smoke", action="store_true", help="CPU, tiny shapes (seconds)")
    p.add_argument("--batch", type=int, default=0, help="train: samples per step (default 64; smoke 4)")
    p.add_argument("--warmup", type=int, default=0, help="train: untimed steps (default 3; smoke 1)")
    p.add_argument("--steps", type=int, default=0, help="train: timed steps (default 10; smoke 2)")
    p.add_argument("--runs", type=int, default=0, help="generate: timed runs per work (default 3; smoke 1)")
    p.add_argument("--batches", type=int, nargs="+", help="generate: batch sizes (default 1 8 32; smoke 1 4)")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.section == "train":
        result = train(out, args.smoke, args.batch or (4 if args.smoke else 64), args.warmup or (1 if args.smoke
                       else 3), args.steps or (2 if args.smoke else 10))
    else:
        result = generation(out, args.smoke, args.runs or (1 if args.smoke else 3),
                            args.batches or ([1, 4] if args.smoke else [1, 8, 32]))
    (out / f"{args.section}.json").write_text(json.dumps(result, indent=1) + "\n")
    merged = out / "speed.json"  # both sections in one file, to paste from
    both = json.loads(merged.read_text()) if merged.is_file() else {}
    merged.write_text(json.dumps({**both, args.section: result}, indent=1) + "\n")
    print(f"figures written to {out / (args.section + '.json')} and {merged}")


if __name__ == "__main__":
    main()
