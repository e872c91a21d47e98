"""Encode and decode throughput (items/s) of every tokenizer kind on CPU, untrained weights of the recipe sizes.

    python benchmarks/tokenizers.py [--batch 32] [--repeats 5] [--threads 1]

Times with the process's CPU clock and keeps the fastest of ``--repeats`` passes (slower passes measure
interference from other processes, not the code), so with one thread the figures are per core.
"""

from __future__ import annotations

import argparse
import time

import torch

from polymodal.tokenizers import MLPTokenizer, MLPTokenizerConfig, ViTVQVAE, VQVAEConfig

SMALL = dict(image_size=64, patch_size=8, dim=64, codebook_size=512, code_dim=16)


def kinds() -> dict[str, tuple[torch.nn.Module, torch.Tensor]]:
    """name -> (tokenizer, a batch of one item), at the sizes of the configs/tokenizer_*_world64.py recipes."""
    return {
        "rgb@64 vq 8x8": (ViTVQVAE(VQVAEConfig("rgb", **SMALL)), torch.randint(0, 256, (1, 3, 64, 64),
                                                                               dtype=torch.uint8)),
        "depth@64 fsq 8x8": (ViTVQVAE(VQVAEConfig("depth", **{**SMALL, "quantizer": "fsq",
                                                               "fsq_levels": (8, 5, 5, 5)})),
                             torch.rand(1, 64, 64) * 20),
        "normal@64 vq 16x16": (ViTVQVAE(VQVAEConfig("normal", **{**SMALL, "patch_size": 4})),
                               torch.nn.functional.normalize(torch.randn(1, 3, 64, 64), dim=1)),
        "semseg@64 vq 8x8": (ViTVQVAE(VQVAEConfig("semseg", channels=11, **SMALL)),
                             torch.randint(0, 11, (1, 64, 64))),
        "feature 768x14x14 vq": (ViTVQVAE(VQVAEConfig("feature", channels=768, image_size=14, patch_size=1, dim=64,
                                                      codebook_size=512, code_dim=16)), torch.randn(1, 768, 14, 14)),
        "global 768 -> 16 memcodes": (MLPTokenizer(MLPTokenizerConfig(768, num_tokens=16, codebook_size=512,
                                                                      l2_normalize=True)), torch.randn(1, 768)),
        "pose 64 -> 8 vq": (MLPTokenizer(MLPTokenizerConfig(64, num_tokens=8, quantizer="vq", codebook_size=256,
                                                            loss="mse")), torch.randn(1, 64)),
    }


def rate(fn, items: int, repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t = time.process_time()
        fn()
        best = min(best, time.process_time() - t)
    return items / max(best, 1e-9)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"batch {args.batch}, {args.threads} thread(s), CPU time, best of {args.repeats}\n")
    print(f"{'tokenizer':28} {'tokens':>6} {'vocab':>6} {'encode items/s':>15} {'decode items/s':>15}")
    for name, (tok, one) in kinds().items():
        tok.eval()
        x = one.expand(args.batch, *one.shape[1:]).contiguous()
        ids = tok.encode(x)
        enc = rate(lambda tok=tok, x=x: tok.encode(x), args.batch, args.repeats)
        dec = rate(lambda tok=tok, ids=ids: tok.decode(ids), args.batch, args.repeats)
        print(f"{name:28} {tok.num_tokens:>6} {tok.vocab_size:>6} {enc:>15,.0f} {dec:>15,.0f}")


if __name__ == "__main__":
    main()
