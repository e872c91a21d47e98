"""The full 4M-21 RGB -> all chain at 4M-21-B size on this CPU, random weights of the real shapes, per stage.

Model: a `FourM` of 4M-21-B's size (dim 768, 12 encoder + 12 decoder layers, 12 heads, SwiGLU, no biases, separate
encoder/decoder modality embeddings) over 4M-21's domains (`modalities.FOURM21_INPUTS`) with their real
vocabularies (image tokens 4096-16384 codes, sequences 30 000). Tokenizers of the released sizes, random:
DiVAEs for depth, normals and edges (ViT-B/16 encoder, the 256-channel patched UNet of ``unet_patched``, as
benchmarks/divae_decode.py builds the depth one; canny and SAM edges share one, as the release), ViT-B VQ-VAEs for
segmentation (134 labels), CLIP-B/16, DINOv2-B/14 and ImageBind-H/14 maps and SAM masks (64 px), Bottleneck-MLP
(6 blocks, 1024 wide) Memcodes tokenizers for the two globals and the poses. Text: 4M's WordPiece file from the
fixtures.

The chain is `Pipeline.plan(plan="rgb_to_all")` of a released model: the demo's order and settings (image targets
ROAR in one step at temperature 0.01, guidance 2, growing conditions; sequences autoregressive at 0.01-0.3, top-p
0.8). Timed per stage: each target's generation (`generation.generate_iter`, one row per target), then each
target's decode (DiVAE diffusion with ``--decode-steps``/``--sampler``; VQ-VAE decoders; text parsing, SAM mask
placement and pose decoding). With random weights the sequences never end on their own, so each runs to
``--seq-tokens`` tokens (default: the domain's full length), and they hold no boxes, instances or people to
decode; a trained model writes shorter texts.

    python benchmarks/official_chain.py                                  # full chain, 25 DDPM steps
    python benchmarks/official_chain.py --decode-steps 5 --seq-tokens 32  # a quicker run
    python benchmarks/official_chain.py --plan caption_to_all             # text -> all, RGB decoded (not run here)

Provisional figures, one run (2026-12-05, torch 2.13 CPU, one thread, 2 cores shared with up to 6 other agents'
jobs: load average 5.5 at the start, 7.9 at the end), reduced: ``--decode-steps 2 --seq-tokens 4``. Model
762 M parameters (the six 30 000-entry sequence vocabularies hold about half), tokenizers 2140 M; built in 77 s.

    generate: image targets, ROAR 1 step with guidance 2 (two passes), as the conditions grow from RGB's 196
      tokens to ~2 300: clip 5.4 s, dinov2 7.5, imagebind 6.9, depth 8.3, normal 14.6, semseg 15.8,
      canny 16.6, sam_edge 21.7; the two globals 16.0 and 17.9
    generate: sequences at 4 tokens each, mostly one encoder pass over the grown conditions: caption 19.2,
      det 14.0, human_poses 14.2, sam_instance 16.1, color_palette 16.0, metadata 16.4
    decode: DiVAE 2 DDPM steps (2 UNet calls, ~2.5 s each): depth 5.8, normal 5.1, canny 5.0, sam_edge 5.5;
      ViT VQ-VAEs 1.2-1.6 (clip, dinov2, imagebind, semseg); globals 0.07; texts ~0
    generate total 226 s, decode total 27 s, all with building 331 s

The defaults (25 DDPM steps, edges 10, whole sequences), ``python benchmarks/official_chain.py --threads 2`` on the
idle machine (2026-12-06, torch 2.13 CPU, load 0.1 at the start, 1.7 at the end; model built in 29 s):

    generate: image targets 0.95-3.46 s each (clip 0.95 ... sam_edge 3.46); sequences to their full length: caption
      14.8, det 14.3, human_poses 14.8, sam_instance 15.9, color_palette 4.6, metadata 5.5; globals 5.0 and 4.8
    decode: DiVAE DDPM-25 depth 12.6, normal 12.5; DDPM-10 canny 4.9, sam_edge 4.9; ViT VQ-VAEs 0.22-0.30
    generate total 96.8 s, decode total 35.9 s, all with building 161.9 s

(An earlier full run at 02:17 that other jobs joined halfway: generate 154 s, decode 266 s at load up to 6.2.)
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
# In place of this script's folder, whose tokenizers.py would shadow the `tokenizers` package.
sys.path[0] = str(ROOT / "src")

from polymodal.config import ModelConfig  # noqa: E402
from polymodal.data.world import render_sample  # noqa: E402
from polymodal.generation import generate_iter  # noqa: E402
from polymodal.modalities import FOURM21_INPUTS, FOURM21_OUTPUTS, Kind  # noqa: E402
from polymodal.model import FourM  # noqa: E402
from polymodal.pipeline import Pipeline  # noqa: E402
from polymodal.pipeline.official import ReleaseTokenizers  # noqa: E402
from polymodal.tokenizers import load_tokenizer  # noqa: E402
from polymodal.tokenizers.ml4m.divae import DiVAE, DiVAEConfig  # noqa: E402
from polymodal.tokenizers.ml4m.unet import UNetConfig  # noqa: E402
from polymodal.tokenizers.ml4m.vqvae import OfficialVQVAE, OfficialVQVAEConfig  # noqa: E402

TEXT = ROOT.parent / "shared" / "fixtures" / "ml4m-text-tokenizer" / "text_tokenizer_4m_wordpiece_30k.json"


def fourm21_b() -> FourM:
    torch.manual_seed(0)
    cfg = ModelConfig.preset("B", domains_in=FOURM21_INPUTS, domains_out=FOURM21_OUTPUTS,
                             share_modality_embeddings=False)
    return FourM(cfg).eval()


def divae(values: str, channels: int, codes: int) -> DiVAE:
    """A released DiVAE's size (config ViTB-UNetP4_*_224-448_predx0, ``unet_patched``), random weights."""
    cfg = DiVAEConfig(values=values, image_size=224, channels=channels, enc_dim=768, enc_depth=12, patch_size=16,
                      enc_grid=(14, 14), post_mlp=True, latent_dim=32, codebook_size=codes,
                      unet=UNetConfig.released(in_channels=channels, cond_channels=32))
    return DiVAE(cfg).eval()


def vit_vqvae(values: str, channels: int, out: int, *, size: int, patch: int, codes: int, latent: int = 32,
              labels: int = 0, name: str = "") -> OfficialVQVAE:
    """A ViT-B encoder and decoder (12 layers each, width 768), as ``vit_b_enc`` / ``vit_b_dec``."""
    cfg = OfficialVQVAEConfig(values=values, in_channels=channels, out_channels=out, image_size=size,
                              patch_size=patch, enc_dim=768, enc_depth=12, dec_dim=768, dec_depth=12,
                              latent_dim=latent, codebook_size=codes, n_labels=labels, name=name,
                              out_conv=values == "mask")
    return OfficialVQVAE(cfg).eval()


def mlp_vqvae(channels: int, *, codes: int, codebooks: int, name: str) -> OfficialVQVAE:
    """``BottleneckMLP/B_6-Wi_1024`` encoder and decoder with Memcodes (``num_codebooks`` heads)."""
    cfg = OfficialVQVAEConfig(values="vector", in_channels=channels, out_channels=channels, image_size=1,
                              patch_size=1, enc_dim=1024, enc_depth=6, dec_dim=1024, dec_depth=6, latent_dim=1024,
                              codebook_size=codes, family="mlp", enc_hidden=4096, dec_hidden=4096,
                              quantizer="memcodes", num_codebooks=codebooks, name=name)
    return OfficialVQVAE(cfg).eval()


def released_tokenizers(targets) -> dict:
    """Random tokenizers of the released sizes for the chain's targets (the edges share one DiVAE)."""
    torch.manual_seed(1)
    makers = {
        "tok_depth@224": lambda: divae("depth", 1, 8192), "tok_normal@224": lambda: divae("normal", 3, 8192),
        "tok_rgb@224": lambda: divae("rgb", 3, 16384), "tok_canny_edge@224": lambda: divae("edge", 1, 8192),
        "tok_semseg@224": lambda: vit_vqvae("semseg", 64, 134, size=224, patch=16, codes=4096, labels=134),
        "tok_clip@224": lambda: vit_vqvae("feature", 768, 768, size=224, patch=16, codes=8192),
        "tok_dinov2@224": lambda: vit_vqvae("feature", 768, 768, size=224, patch=14, codes=8192),
        "tok_imagebind@224": lambda: vit_vqvae("feature", 1280, 1280, size=224, patch=14, codes=8192),
        "tok_dinov2_global": lambda: mlp_vqvae(768, codes=8192, codebooks=16, name="tok_dinov2_global"),
        "tok_imagebind_global": lambda: mlp_vqvae(1024, codes=8192, codebooks=16, name="tok_imagebind_global"),
        "sam_instance": lambda: vit_vqvae("mask", 1, 1, size=64, patch=16, codes=1024, latent=1024),
        "human_poses": lambda: mlp_vqvae(207, codes=1024, codebooks=8, name="human_poses"),
    }
    toks = {t: makers[t]() for t in targets if t in makers}
    if "tok_sam_edge@224" in targets:
        toks["tok_sam_edge@224"] = toks.get("tok_canny_edge@224") or makers["tok_canny_edge@224"]()
    return toks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--decode-steps", type=int, default=None, help="DiVAE steps (default 25; edges 10)")
    parser.add_argument("--sampler", default="ddpm", choices=("ddpm", "ddim"))
    parser.add_argument("--seq-tokens", type=int, default=None, help="cap on each sequence's tokens")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--plan", default="rgb_to_all", choices=("rgb_to_all", "caption_to_all"),
                        help="caption_to_all generates and decodes the RGB tokens too (the 16k-code RGB DiVAE)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load0, start_all = os.getloadavg()[0], time.perf_counter()
    t = time.perf_counter()
    model = fourm21_b()
    params = sum(p.numel() for p in model.parameters())
    text = load_tokenizer(TEXT)
    plain = Pipeline(model, ReleaseTokenizers(model.config, text=text))
    plan = plain.plan(plan=args.plan)
    if args.seq_tokens:
        plan = dataclasses.replace(plan, steps=tuple(
            dataclasses.replace(s, max_tokens=args.seq_tokens) if s.scheme == "autoregressive" else s
            for s in plan.steps))
    toks = released_tokenizers(plan.targets)
    pipe = Pipeline(model, ReleaseTokenizers(model.config, text=text, given=toks))
    tok_params = sum(p.numel() for tok in {id(v): v for v in toks.values()}.values() for p in tok.parameters())
    built = time.perf_counter() - t
    print(f"torch {torch.__version__}, threads {args.threads}, load average {load0:.1f}")
    print(f"4M-21-B: {params / 1e6:.0f} M parameters, {len(FOURM21_INPUTS)} inputs; tokenizers: {len(toks)} "
          f"domains, {tok_params / 1e6:.0f} M parameters; built in {built:.1f} s")
    scene = render_sample(1, 3, 224)
    conds = pipe.conditions({"rgb": scene["rgb"]} if args.plan == "rgb_to_all" else {"caption": "person dog"})
    rows: list[tuple[str, str, float, str]] = []
    prev, ids = time.perf_counter(), {}
    with torch.inference_mode():
        for result in generate_iter(model, conds, plan, seed=0):
            if result.finished:
                now = time.perf_counter()
                ids[result.target] = result.state[result.target].values
                step = next(s for s in plan.steps if s.target == result.target)
                what = (f"{step.scheme} {step.num_steps} step(s)" if step.scheme != "autoregressive" else
                        f"{int((ids[result.target] != 0).sum())} tokens")
                rows.append(("generate", result.target, now - prev, what))
                prev = now
        for target in plan.targets:
            t = time.perf_counter()
            values, kinds = pipe.decode({target: ids[target]}, decode_steps=args.decode_steps, sampler=args.sampler)
            tok = toks.get(target)
            what = kinds[target] + (f", {args.sampler} {args.decode_steps or (10 if 'edge' in target else 25)} steps"
                                    if isinstance(tok, DiVAE) else "")
            rows.append(("decode", target, time.perf_counter() - t, what))
    total = time.perf_counter() - start_all
    print(f"\n{'stage':9} {'target':22} {'seconds':>8}  what")
    for stage, target, sec, what in rows:
        print(f"{stage:9} {target:22} {sec:8.2f}  {what}")
    for stage in ("generate", "decode"):
        print(f"{stage + ' total':31} {sum(r[2] for r in rows if r[0] == stage):8.2f}")
    print(f"{'all (with building)':31} {total:8.2f}   load average {load0:.1f} -> {os.getloadavg()[0]:.1f}")
    assert all(model.config.modality(t).kind in (Kind.IMAGE_TOKENS, Kind.SEQUENCE) for t in plan.targets)


if __name__ == "__main__":
    main()
