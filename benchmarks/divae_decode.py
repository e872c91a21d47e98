"""DiVAE decode speed at the released size, and what fewer diffusion steps cost.

Speed: a `DiVAE` of the released depth tokenizer's size (``4M_tokenizers_depth_8k_224-448``: ViT-B/16 encoder,
8192 codes of 32 dims, the patched UNet of ``unet_patched``: width 256, multipliers (1, 2, 2, 2), 3 res blocks per
level, attention at 4x and 8x downsampling, patch 4; 196 M UNet parameters), random weights, decodes one 224 px
image from 14 x 14 random ids. Rows: DDPM 25 steps (the reference demo's setting), DDIM 25 and 10 steps, each in
float32 and with the UNet in bfloat16, and DDPM 25 with the UNet in NCHW layout (the reference's layout, our code).
FLOPs: ``torch.utils.flop_counter`` over one UNet call (convolutions, matrix products, attention), times the
number of calls; the reference's UNet has the same layers, so the same count per step. Against the reference's
own ``decode_tokens``: ``--part reference`` (below).

Against the reference (``--part reference``; run by the reference's environment: ``POLYMODAL_REFERENCE=/work/ref
/work/refenv/bin/python benchmarks/divae_decode.py --part reference --threads 1``, torch 2.14.1, diffusers 0.20;
without ``POLYMODAL_REFERENCE`` it says so and skips): the reference's ``DiVAE`` of the released depth config
(``REF_CONFIG``), random weights (its zero-initialized convolutions re-drawn, see ``versus_reference``), saved
as config.json + model.safetensors and loaded by ``polymodal.interop.ml4m.load_tokenizer``; both decode the same
14 x 14 ids, DDPM 25 steps, 224 px, generator seed 0, fp32, alternating (the order flips each round). Measured
2026-12-06 on the shared machine, provisional (the same UNet call took 1.3 s and 2.0 s in two runs a minute apart):

    one UNet call: max abs diff 9.2e-07 (outputs up to 1.6); decodes: max abs diff 1.2e-05
    run (load)        reference   polymodal   ratio    polymodal DDIM-10   bf16 DDPM-25   bf16 DDIM-10
    1 (3.8-4.6)       43.5 35.1   43.4 29.3   1.00-1.20x        22.3             14.4            6.3
    2 (3.8-5.0)  53.5 51.0 42.9   50.6 52.0 51.6   0.99x (medians)   18.9             27.5           10.1

(run 1 had 2 rounds and the reference's zero-initialized UNet, all decodes exactly 0: same work, no check.) The
work is the same on both sides (189.1 GFLOP per UNet call) and ~90% of it is in oneDNN convolutions on both; in a
profile of one UNet call at one thread (torch 2.14.1) the reference took 2.53 s (convolutions 2.35 s, NCHW, its
1x1 convolutions and Conv1d attention on the slow path) and ours 2.21 s (convolutions 2.00 s, channels-last),
1.14x; across whole decodes the machine's load moved each side by more than that. So: fp32 at parity to ~1.2x,
not a clear win; the bfloat16 UNet (``decoder_dtype=torch.bfloat16``) decodes DDPM-25 1.9x faster than the
reference's fp32 (27.5 s against 51.0 s, run 2), and DDIM-10 in bfloat16 5x faster (10.1 s). The bf16 decode's
max abs diff to fp32 (0.13 for DDPM-25, 0.025 for DDIM-10) is on random weights, where DDPM's 24 noise
injections carry each step's difference along.

Quality of fewer steps: the tokenizers at hand have random weights (there is no trained DiVAE here), so this
measures how far a sampler's decode lands from the reference's default, DDPM over all 1000 training steps, on the
fixture depth tokenizer (``../shared/fixtures/ml4m-tokenizers/depth``, 64 px, model units [-1, 1]): PSNR over
``--seeds`` seeds (same seed, same tokens), beside the PSNR between two DDPM-1000 decodes of different seeds (how
much the sampling noise alone moves a decode).

    python benchmarks/divae_decode.py                   # speed (one thread) and quality
    python benchmarks/divae_decode.py --part speed --threads 2
    python benchmarks/divae_decode.py --part quality

Measured 2026-12-05 (torch 2.13 CPU, AMD EPYC with AVX-512 BF16, 2 cores shared with up to 6 other agents' jobs;
load average at the end of each row). One thread: with two, a UNet call took 5.7-11 s against 2.1-3.1 s with one
at load ~6, and a two-thread DDPM-25 took 128.8 s at load 5. Provisional: single runs, and the load moved the
same row by 2.4x between the two runs below. The UNet: 196.2 M parameters, 189.1 GFLOP per call at 224 px (the
reference's UNet: the same layers, the same count; its ``decode_tokens`` with no ``timesteps`` runs all 1000).

    run A (load 5-6)                                   run B (load 2.3-2.8)
    sampler  steps          unet  seconds  s/step     seconds  s/step  TFLOP  GFLOP/s(B)
    ddpm        25  fp32 ch-last     56.4    2.25        23.5    0.94   4.73       201
    ddim        25  fp32 ch-last     70.6    2.82        27.3    1.09   4.73       173
    ddim        10  fp32 ch-last     28.9    2.89         9.7    0.97   1.89       195
    ddpm        25  bf16 ch-last     27.4    1.10        14.4    0.57   4.73       329
    ddim        10  bf16 ch-last     15.3    1.53         4.7    0.47   1.89       403
    ddpm        25     fp32 NCHW     54.0    2.16        36.3    1.45   4.73       130

Channels-last (the default) against NCHW: 1.54x faster in run B, about equal in run A (0.96x); single 3x3
convolutions, one thread: up to 1.6x. A bfloat16 UNet (``DiVAE.from_official(..., decoder_dtype=torch.bfloat16)``):
1.6-2.1x faster, its output within 1.4% of float32 on the fixture. DDIM-10 in bfloat16 decodes in 4.7 s where
DDPM-25 in float32 takes 23.5 s (run B).

Quality (``--part quality``, 4 seeds; PSNR in dB against DDPM-1000 of the same seed; random weights):

    DDPM-1000, another seed   17.99 (17.86-18.25)        DDIM-5    16.43 (16.15-16.75)
    DDPM-10                   17.28 (17.04-17.45)        DDIM-10   16.76 (16.57-17.12)
    DDPM-25                   17.31 (17.20-17.45)        DDIM-25   17.10 (16.66-17.39)
    DDPM-50                   17.49 (17.26-17.65)        DDIM-50   17.28 (17.06-17.50)
    DDIM-10 against DDPM-25   16.65 (16.28-16.81)

With random weights every decode lands about as far from DDPM-1000 as another seed of DDPM-1000 does (17-18 dB):
the sampling noise dominates, and DDIM-10 costs ~0.5 dB against DDPM-25 here. What fewer steps cost on a trained
decoder: benchmarks/divae_quality.py (one trained on the world depth tokenizer's codes).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, this folder comes first on sys.path, and its tokenizers.py would shadow the `tokenizers` package
# the reference imports.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT / "src"))

from polymodal.tokenizers.ml4m import diffusion  # noqa: E402
from polymodal.tokenizers.ml4m.divae import DiVAE, DiVAEConfig  # noqa: E402
from polymodal.tokenizers.ml4m.unet import UNetConfig  # noqa: E402

FIXTURE = ROOT.parent / "shared" / "fixtures" / "ml4m-tokenizers" / "depth"


def released_depth_divae() -> DiVAE:
    """The released depth DiVAE's size (config ViTB-UNetP4_8k_224-448_predx0 + ``unet_patched``), random."""
    torch.manual_seed(0)
    cfg = DiVAEConfig(values="depth", image_size=224, channels=1, enc_dim=768, enc_depth=12, patch_size=16,
                      enc_grid=(14, 14), post_mlp=True, latent_dim=32, codebook_size=8192,
                      unet=UNetConfig.released(in_channels=1, cond_channels=32))
    return DiVAE(cfg).eval()


def unet_flops(model: DiVAE, ids: torch.Tensor) -> int:
    """FLOPs of one UNet call on a 224 px image."""
    codes = model.quantize.lookup(ids.reshape(1, 14, 14))
    x = torch.randn(1, 1, 224, 224).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model.decoder(x, 500, codes)
    return counter.get_total_flops()


def speed(threads: int) -> None:
    torch.set_num_threads(threads)
    model = released_depth_divae()
    unet_params = sum(p.numel() for p in model.decoder.parameters())
    ids = torch.randint(0, model.vocab_size, (1, model.num_tokens), generator=torch.Generator().manual_seed(0))
    per_call = unet_flops(model, ids)
    print(f"UNet {unet_params / 1e6:.1f} M parameters, {per_call / 1e9:.1f} GFLOP per call at 224 px; "
          f"threads {threads}")
    print(f"{'sampler':8} {'steps':>5} {'unet':>13} {'seconds':>8} {'s/step':>7} {'TFLOP':>6} {'GFLOP/s':>8} load")
    rows = [("ddpm", 25, torch.float32, True), ("ddim", 25, torch.float32, True), ("ddim", 10, torch.float32, True),
            ("ddpm", 25, torch.bfloat16, True), ("ddim", 10, torch.bfloat16, True),
            ("ddpm", 25, torch.float32, False)]
    for sampler, steps, dtype, channels_last in rows:
        model.decoder.to(dtype=dtype, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        model.decode(ids, steps=1, sampler="ddim", generator=0)  # warm-up: first-call allocations, kernel choice
        calls = len(diffusion.timesteps(steps, 1000, "leading" if sampler == "ddpm" else "trailing"))
        start = time.perf_counter()
        out = model.decode(ids, steps=steps, sampler=sampler, generator=0)
        seconds = time.perf_counter() - start
        assert out.shape == (1, 224, 224) and torch.isfinite(out).all()
        layout = ("bf16" if dtype == torch.bfloat16 else "fp32") + (" ch-last" if channels_last else " NCHW")
        print(f"{sampler:8} {steps:5d} {layout:>13} {seconds:8.1f} {seconds / calls:7.2f} "
              f"{per_call * calls / 1e12:6.2f} {per_call * calls / seconds / 1e9:8.0f} {os.getloadavg()[0]:.1f}",
              flush=True)


REF_CONFIG = dict(  # the released depth tokenizer's constructor arguments (4M_tokenizers_depth_8k_224-448)
    enc_type="vit_b_enc", dec_type="unet_patched", image_size=224, n_channels=1, patch_size=16, post_mlp=True,
    quant_type="lucid", latent_dim=32, codebook_size=8192, norm_codes=True, num_train_timesteps=1000,
    scheduler="ddpm", beta_schedule="linear", prediction_type="sample", clip_sample=False, thresholding=True,
    zero_terminal_snr=True)


def versus_reference(threads: int, rounds: int, folder: Path, size: int = 224) -> None:
    """The reference's own ``decode_tokens`` against ours, same weights (its random DiVAE saved in the official
    layout, loaded by polymodal), same ids, same generator seed, alternating in this process."""
    ref_path = os.environ.get("POLYMODAL_REFERENCE")
    if not ref_path:
        print("reference: POLYMODAL_REFERENCE is not set (a checkout of apple/ml-4m, run in its environment: "
              "diffusers 0.20); skipped")
        return
    import contextlib
    import io
    import json

    from safetensors.torch import save_file

    from polymodal.interop import ml4m

    sys.path.insert(0, ref_path)
    with contextlib.redirect_stdout(io.StringIO()), __import__("warnings").catch_warnings():
        __import__("warnings").simplefilter("ignore")
        from fourm.vq.vqvae import DiVAE as RefDiVAE
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    ref = RefDiVAE(**REF_CONFIG).eval()
    ids = torch.randint(0, 8192, (1, size // 16, size // 16), generator=torch.Generator().manual_seed(0))
    x = torch.randn(1, 1, size, size, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        # The reference zero-initializes its output conv, each residual block's last conv and each attention's
        # projection: its fresh UNet predicts x0 = 0 everywhere, and every decode is exactly 0 on both sides.
        # Those get random weights (1/sqrt(fan-in)), and the output conv is then scaled so that x0 predictions
        # have std 0.3, inside the [-1, 1] the sampler clips to; the same weights go to both sides, and the work
        # per step is unchanged.
        g = torch.Generator().manual_seed(2)
        for p in ref.decoder.parameters():
            if p.ndim > 1 and not p.any():
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(p[0].numel()))
        scale = 0.3 / float(ref.decoder(x, torch.tensor([500]), ref.tokens_to_embedding(ids)).std())
        for p in ref.decoder.out[-1].parameters():
            p.mul_(scale)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(REF_CONFIG, indent=2))
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(folder / "model.safetensors"))
    ours = ml4m.load_tokenizer(folder)

    def run_ref(steps: int) -> torch.Tensor:
        return ref.decode_tokens(ids, timesteps=steps, generator=torch.Generator().manual_seed(0), image_size=size)

    def run_ours(steps: int, sampler: str = "ddpm") -> torch.Tensor:
        return ours.decode_tokens(ids, timesteps=steps, generator=torch.Generator().manual_seed(0), image_size=size,
                                  sampler=sampler)

    print(f"reference {ref_path}, torch {torch.__version__}, threads {threads}; UNet "
          f"{sum(p.numel() for p in ref.decoder.parameters()) / 1e6:.1f} M parameters (both); DDPM 25 steps, "
          f"{size} px, seed 0", flush=True)
    # One UNet call on the same input: random weights give x0 predictions far outside [-1, 1], which the sampler
    # clips, so the decodes' agreement alone says little; the raw UNet outputs are compared relative to their size.
    with torch.inference_mode():
        u_ref = ref.decoder(x, torch.tensor([500]), ref.tokens_to_embedding(ids))
        u_ours = ours.decoder(x.contiguous(memory_format=torch.channels_last), 500, ours.quantize.lookup(ids))
    print(f"  one UNet call: max abs diff {float((u_ref - u_ours).abs().max()):.2e}, outputs up to "
          f"{float(u_ref.abs().max()):.2e}", flush=True)
    a, b = run_ref(25), run_ours(25)  # also the warm-up of both
    print(f"  decodes: max abs diff {float((a - b).abs().max()):.2e}; pixels at +-1 (clipped x0): "
          f"{float((a.abs() > 0.999).float().mean()):.0%}", flush=True)
    times: dict[str, list[float]] = {"reference": [], "polymodal": []}
    for r in range(rounds):
        order = [("reference", run_ref), ("polymodal", run_ours)]
        for name, fn in order if r % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            fn(25)
            times[name].append(time.perf_counter() - start)
            print(f"  round {r}: {name:9} {times[name][-1]:6.1f} s  load {os.getloadavg()[0]:.1f}", flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{'decode (fp32 unless said)':34} {'seconds':>8}   load {os.getloadavg()[0]:.1f}")
    print(f"{'reference decode_tokens DDPM-25':34} {med['reference']:8.1f}   (median of {rounds})")
    ratio = med["reference"] / med["polymodal"]
    print(f"{'polymodal decode_tokens DDPM-25':34} {med['polymodal']:8.1f}   {ratio:.2f}x the reference's speed")
    start = time.perf_counter()
    ddim = run_ours(10, "ddim")
    print(f"{'polymodal DDIM-10':34} {time.perf_counter() - start:8.1f}")
    ours.decoder.to(torch.bfloat16)
    run_ours(1, "ddim")  # warm-up of the bfloat16 kernels
    for label, steps, sampler, full in (("DDPM-25", 25, "ddpm", b), ("DDIM-10", 10, "ddim", ddim)):
        start = time.perf_counter()
        out = run_ours(steps, sampler)
        print(f"{'polymodal bf16 UNet ' + label:34} {time.perf_counter() - start:8.1f}   max abs diff to fp32 "
              f"{float((out - full).abs().max()):.2e}", flush=True)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB for values in [-1, 1] (peak-to-peak 2)."""
    return 10 * math.log10(4 / float(((a - b) ** 2).mean()))


def quality(seeds: int) -> None:
    if not FIXTURE.exists():
        print(f"quality: no fixture at {FIXTURE}; skipped")
        return
    torch.set_num_threads(1)
    model = DiVAE.from_official(FIXTURE)
    ids = torch.randint(0, model.vocab_size, (4, 4, 4), generator=torch.Generator().manual_seed(0))

    def dec(sampler: str, steps: int, seed: int) -> torch.Tensor:
        return model.decode_tokens(ids, timesteps=steps, generator=seed, sampler=sampler)

    full = {s: dec("ddpm", 1000, s) for s in range(seeds + 1)}
    floor = [psnr(full[s], full[s + 1]) for s in range(seeds)]
    print(f"PSNR (dB) against DDPM-1000 of the same seed, fixture depth DiVAE (random weights), 4 images x {seeds} "
          f"seeds; mean (min-max)")
    print(f"  DDPM-1000, another seed          {sum(floor) / seeds:6.2f} ({min(floor):.2f}-{max(floor):.2f})")
    for sampler, steps in [("ddpm", 10), ("ddpm", 25), ("ddpm", 50), ("ddim", 5), ("ddim", 10), ("ddim", 25),
                           ("ddim", 50)]:
        vals = [psnr(dec(sampler, steps, s), full[s]) for s in range(seeds)]
        print(f"  {sampler.upper()}-{steps:<4} same seed            {sum(vals) / seeds:6.2f} "
              f"({min(vals):.2f}-{max(vals):.2f})")
    d25 = [psnr(dec("ddim", n, s), dec("ddpm", 25, s)) for s in range(seeds) for n in (10,)]
    print(f"  DDIM-10 against DDPM-25, same seed  {sum(d25) / len(d25):6.2f} ({min(d25):.2f}-{max(d25):.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=("speed", "quality", "both", "reference"), default="both")
    parser.add_argument("--image-size", type=int, default=224, help="--part reference: the decode's size")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds of each side (--part reference)")
    parser.add_argument("--folder", default=str(ROOT / "runs" / "divae_reference" / "4M_tokenizers_depth_random"),
                        help="where --part reference saves the reference's weights in the official layout")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seeds", type=int, default=4)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, load average {os.getloadavg()[0]:.1f}")
    if args.part == "reference":
        versus_reference(args.threads, args.rounds, Path(args.folder), args.image_size)
    if args.part in ("quality", "both"):
        quality(args.seeds)
    if args.part in ("speed", "both"):
        speed(args.threads)


if __name__ == "__main__":
    main()
