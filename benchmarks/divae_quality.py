"""What fewer diffusion steps cost on a TRAINED DiVAE-style decoder: the world's depth tokenizer's tokens.

There is no trained DiVAE for the world (its depth tokenizer, ``tok_depth@64`` of the shipped default model, is a
ViT VQ-VAE), so this trains one (`polymodal.train.diffusion_decoder`: the patched UNet of the released DiVAEs,
x0 prediction, linear betas with zero terminal SNR, conditioned on the frozen tokenizer's quantized codes) on
world scenes of seed 0, on the CPU, one thread, resuming from ``--folder`` if a run is there (a finished run is
only loaded). Then, on held-out scenes (seed 1): the true depth is tokenized and decoded by each sampler and by the
VQ-VAE's own decoder, against the true depth in metres over pixels with a surface (sky excluded): abs-rel (mean
|d - d*| / d*) and RMSE (m); time per image of a batched decode, one thread.

    python benchmarks/divae_quality.py                          # train (or resume) then measure
    python benchmarks/divae_quality.py --train-only             # e.g. nice -n 10 ... & in the background
    python benchmarks/divae_quality.py --scenes 16 --samplers ddim-10,ddpm-25   # a quick look

Measured 2026-12-06, torch 2.13 CPU, one thread, 2 cores shared with other agents' jobs (load 4.4-8, so the
times are provisional). Training: the config below, 2000 steps (stopped there from a 4000-step plan: at nice 5-10
under load 5-8 it ran at 0.3-1.5 s per step wall; ~0.3 s of CPU per step, ~10 min of CPU in all plus ~30 s to
render and encode 3000 scenes); loss (x0 MSE, model units) first 50 steps 0.085, last 50 0.0017.
``python benchmarks/divae_quality.py --scenes 32`` (measured at load 4.4-5.3; 32 scenes, not 64, for time):

    decode           abs-rel  RMSE m  s/batch  ms/image    seed 1: abs-rel  RMSE m
    VQ-VAE decoder    0.0430   0.781      0.0       0.9
    DDPM-1000         0.0453   0.863    303.6    9488.3
    DDPM-250          0.0453   0.863     88.3    2758.7
    DDPM-50           0.0453   0.863     16.2     506.4             0.0453   0.863
    DDPM-25           0.0453   0.861      8.1     253.8             0.0453   0.862
    DDIM-50           0.0453   0.860     17.3     540.7
    DDIM-25           0.0452   0.863     12.3     385.9
    DDIM-10           0.0454   0.864      2.5      78.2             0.0454   0.857
    DDIM-5            0.0460   0.872      1.2      36.9             0.0460   0.863

(the seed-1 columns: ``--samplers ddpm-50,ddpm-25,ddim-10,ddim-5 --seed 1``, the sampling noise's seed.) On this
trained decoder the step count costs almost nothing down to 10 steps: DDPM-1000, DDPM-25 and DDIM-10 are within
0.0001 abs-rel and within the up to 0.009 m RMSE that another noise seed moves a row; DDIM-5 costs 0.0007
abs-rel (1.5%, both seeds). DDIM-10 is 120x faster than DDPM-1000 and 2.4-3.2x faster than DDPM-25 here. The
decoder itself, after ten minutes of CPU, is 5% (abs-rel) to 10% (RMSE) worse than the VQ-VAE's own decoder,
which had the full training. The world's depth is nearly a function of its tokens, so the decoder learns a
near-deterministic map and the sampler matters little: a decoder of richer, more ambiguous images (the released
RGB DiVAE) may lose more at few steps than this one.

The UNet in bfloat16 (``model.unet.to(torch.bfloat16)``; what ``Pipeline.from_pretrained(dtype="bfloat16")`` does
to a release's DiVAEs), the same 32 scenes, 2 threads, idle (load 0.5-0.8), 2026-12-06, seeds 0 / 1:

    decode      fp32 abs-rel  RMSE m      s     bf16 abs-rel  RMSE m      s
    DDPM-25     0.0453 0.0453  0.861 0.862  2.1   0.0454 0.0454  0.861 0.863  1.25
    DDIM-10     0.0454 0.0454  0.864 0.857  0.8   0.0455 0.0456  0.865 0.858  0.5
    DDIM-5      0.0460 0.0460  0.872 0.863  0.4   0.0462 0.0462  0.874 0.863  0.25

bf16 costs 0.0001-0.0002 abs-rel and up to 0.002 m RMSE, and decodes 1.6-1.7x faster.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from polymodal.train.diffusion_decoder import DecoderConfig, train_decoder, world_depth  # noqa: E402

TOKENIZER = ROOT / "src/polymodal/weights/default/tokenizers/tok_depth_64"
# 2.8 M-parameter UNet (width 64, levels (1, 2), 2 res blocks, attention at 8x8, patch 4 as the released ones);
# about 0.3 s of CPU per batch-16 step on one thread, so 2000 steps take ~10 min of CPU (on this shared machine,
# in the session's time, no more was possible).
CONFIG = DecoderConfig(tokenizer=str(TOKENIZER), model_channels=64, channel_mult=(1, 2), num_res_blocks=2,
                       attention_resolutions=(2,), patch_size=4, scenes=3000, batch_size=16, steps=2000, lr=1e-3,
                       warmup=100, ema_decay=0.995, checkpoint_every=100)
SAMPLERS = "ddpm-1000,ddpm-250,ddpm-50,ddpm-25,ddim-50,ddim-25,ddim-10,ddim-5"


def depth_errors(pred: torch.Tensor, true: torch.Tensor) -> tuple[float, float]:
    """(abs-rel, RMSE in m) of (N, H, W) metres over the pixels with a surface (true > 0), pooled."""
    valid = true > 0
    p, t = pred[valid].double(), true[valid].double()
    return float(((p - t).abs() / t).mean()), float(((p - t) ** 2).mean().sqrt())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--folder", default=str(ROOT / "runs" / "divae_quality"))
    parser.add_argument("--train-only", action="store_true")
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="stop training after this much CPU time (resume later)")
    parser.add_argument("--scenes", type=int, default=64, help="held-out scenes (world seed 1)")
    parser.add_argument("--samplers", default=SAMPLERS)
    parser.add_argument("--seed", type=int, default=0, help="the sampling noise's generator seed")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.process_time()
    model, losses = train_decoder(CONFIG, args.folder, max_seconds=args.max_minutes and args.max_minutes * 60)
    mean = lambda xs: sum(xs) / max(len(xs), 1)  # noqa: E731
    print(f"decoder: {len(losses)} of {CONFIG.steps} steps; loss first 50 {mean(losses[:50]):.4f}, last 50 "
          f"{mean(losses[-50:]):.4f}; this call {time.process_time() - start:.0f} s CPU; load "
          f"{os.getloadavg()[0]:.1f}", flush=True)
    if args.train_only or len(losses) < CONFIG.steps:
        return
    true = world_depth(1, range(args.scenes), model.tok.cfg.image_size)
    ids = model.tok.encode(true)
    rows = []
    t0 = time.perf_counter()
    rows.append(("VQ-VAE decoder", *depth_errors(model.tok.decode(ids), true), time.perf_counter() - t0))
    for name in args.samplers.split(","):
        sampler, steps = name.split("-")
        t0 = time.perf_counter()
        pred = model.decode(ids, steps=int(steps), sampler=sampler, generator=args.seed)
        rows.append((f"{sampler.upper()}-{steps}", *depth_errors(pred, true), time.perf_counter() - t0))
        print(f"  {rows[-1][0]:15} abs-rel {rows[-1][1]:.4f}  RMSE {rows[-1][2]:.3f} m  {rows[-1][3]:.1f} s  load "
              f"{os.getloadavg()[0]:.1f}", flush=True)
    print(f"\n{args.scenes} held-out world scenes (seed 1), 64 px, depth in metres vs the truth (sky excluded); "
          f"time: the whole batch, {args.threads} thread(s), and per image")
    print(f"{'decode':15} {'abs-rel':>8} {'RMSE m':>7} {'s/batch':>8} {'ms/image':>9}")
    for name, rel, rmse, sec in rows:
        print(f"{name:15} {rel:8.4f} {rmse:7.3f} {sec:8.1f} {1000 * sec / args.scenes:9.1f}")


if __name__ == "__main__":
    main()
