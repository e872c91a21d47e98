"""Pseudo-label real photos end to end: images -> labeled dataset -> token shards -> the training loader.

    python benchmarks/label_photos.py [--n 100] [--res 64] [--workers 2] [--out /tmp/label_photos]

scikit-image bundles only a few colour photos (astronaut, chelsea, coffee, rocket, cat, colorwheel, ...), so the
``--n`` images are distinct crops of them: each takes a square of 40-100 % of the shorter side at a random place
(seeded), saved as JPEG or PNG. Two bad files are added (a corrupt JPEG and a truncated one) to show they are
skipped and reported. Then `label_images` (canny, palette, metadata), `pretokenize` with tiny *untrained*
tokenizers for rgb and edges (2 crops), and one `TokenLoader` pass.

Measured on the shared 2-core development machine (load average ~8 from other jobs), ``--n 100 --res 64``:

    label:     100 of 102 images written, 2 skipped (corrupt.jpg, truncated.jpg) in 2.7 s (2 workers)
    tokenize:  100 samples x 2 crops, tok_edge@64 + tok_rgb@64, in 1.1 s
    loader:    100 samples read back in batches of 20: Batch(tok_edge@64: (20, 64) ..., tok_rgb@64: (20, 64) ...)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from polymodal.config import MaskingConfig
from polymodal.data.labelers import label_images
from polymodal.data.loader import TokenLoader
from polymodal.data.pretokenize import pretokenize
from polymodal.data.sources import TokenSource
from polymodal.modalities import get as get_modality
from polymodal.tokenizers import ViTVQVAE
from polymodal.tokenizers.vqvae import VQVAEConfig

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "cat", "colorwheel", "immunohistochemistry", "retina")


def make_photos(root: Path, n: int) -> None:
    import skimage.data

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        img = np.asarray(getattr(skimage.data, PHOTOS[i % len(PHOTOS)])())[..., :3]
        h, w = img.shape[:2]
        s = int(min(h, w) * rng.uniform(0.4, 1.0))
        y, x = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
        ext = "png" if i % 3 else "jpg"
        Image.fromarray(np.ascontiguousarray(img[y:y + s, x:x + s])).save(root / f"photo_{i:03d}.{ext}")
    (root / "corrupt.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    good = (root / "photo_000.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(good[: len(good) // 3])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--res", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default="/tmp/label_photos")
    args = ap.parse_args()
    out = Path(args.out)
    make_photos(out / "images", args.n)

    t = time.perf_counter()
    info = label_images(out / "images", out / "dataset", labelers=["canny", "palette", "metadata"], res=args.res,
                        workers=args.workers, shard_size=25)
    report = json.loads((out / "dataset" / "report.json").read_text())
    print(f"label:     {info['count']} of {info['files']} images written, {info['skipped']} skipped "
          f"({', '.join(p['file'] for p in report['skipped'])}) in {time.perf_counter() - t:.1f} s")

    torch.manual_seed(0)
    tiny = dict(image_size=args.res, patch_size=8, dim=32, encoder_depth=1, decoder_depth=1, codebook_size=64)
    ViTVQVAE(VQVAEConfig(values="rgb", **tiny)).save_pretrained(out / "tok_rgb")
    ViTVQVAE(VQVAEConfig(values="edge", **tiny)).save_pretrained(out / "tok_edge")
    t = time.perf_counter()
    tok = pretokenize(str(out / "dataset"), {"rgb": str(out / "tok_rgb"), "canny_edge": str(out / "tok_edge")},
                      out / "tokens", crops=2, workers=args.workers)
    print(f"tokenize:  {tok['count']} samples x {tok['crops']} crops, {' + '.join(tok['modalities'])}, in "
          f"{time.perf_counter() - t:.1f} s")

    src = TokenSource(out / "tokens")
    mods = {n: get_modality(n) for n in src.names}
    loader = TokenLoader([src], mods=mods, masking=MaskingConfig(num_input_tokens=32, num_target_tokens=32),
                         batch_size=20, mask_group=20)
    batches = loader.take(len(src) // 20)
    print(f"loader:    {sum(b.batch_size for b in batches)} samples read back in batches of 20: {batches[0]}")


if __name__ == "__main__":
    main()
