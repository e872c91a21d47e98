"""Encode and decode throughput (items/s) of the text tokenizer and each serializer on CPU, on world samples.

    python benchmarks/text_tokenizers.py [--samples 200] [--repeats 5] [--vocab PATH]

Uses 4M's official vocabulary from ``../shared/fixtures`` (or ``--vocab``, any text tokenizer path) when there is
one, else a vocabulary trained on the samples' captions. Items are world samples at 64 px: a caption, its boxes,
metadata, palette, people (pose codes made up) and 7 query points (mask codes made up). Times with the process's
CPU clock and keeps the fastest of ``--repeats`` passes, so the figures are per core. ``encode`` is value -> ids
with [EOS] (the caption row: ``encode_lists`` of one batch of all samples); ``decode`` is ids -> value, lenient.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

# benchmarks/tokenizers.py would shadow the HF `tokenizers` package for a script run from this folder.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import torch  # noqa: E402

from polymodal.data.world import render_sample  # noqa: E402
from polymodal.data.world.scene import OBJECT_CLASSES  # noqa: E402
from polymodal.tokenizers.serializers import (  # noqa: E402
    SERIALIZERS,
    boxes_from_world,
    instances_from_world,
    metadata_from_world,
    palette_from_world,
    poses_from_world,
    sample_query_points,
)
from polymodal.tokenizers.text import TextTokenizer, train_text_tokenizer  # noqa: E402

OFFICIAL = Path(__file__).resolve().parents[2] / "shared/fixtures/ml4m-text-tokenizer"


def best_time(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return max(best, 1e-9)


def load_vocab(path: str | None, captions: list[str]) -> tuple[TextTokenizer, str]:
    if path or OFFICIAL.is_dir():
        p = Path(path) if path else OFFICIAL
        return TextTokenizer.from_pretrained(p), str(p)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "captions.txt"
        corpus.write_text("\n".join(captions))
        return train_text_tokenizer([corpus], vocab_size=5000, extra_classes=OBJECT_CLASSES), "trained on captions"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--vocab", help="a text tokenizer (file or folder); default: 4M's official one if present")
    args = parser.parse_args()
    torch.set_num_threads(1)

    samples = [render_sample(0, i, 64) for i in range(args.samples)]
    captions = [s["caption"] for s in samples]
    tok, source = load_vocab(args.vocab, captions)
    g = torch.Generator().manual_seed(0)
    codes = {k: [(k * 97 + j * 61) % 1024 for j in range(16)] for k in range(1, 11)}
    values = {
        "det": [boxes_from_world(s["det"], 64) for s in samples],
        "metadata": [metadata_from_world(s["metadata"]) for s in samples],
        "color_palette": [palette_from_world(s["color_palette"]) for s in samples],
        "human_poses": [poses_from_world(s["human_poses"], 64, [[i % 1024 for i in range(8)]] * len(s["human_poses"]))
                        for s in samples],
        "sam_instance": [instances_from_world(s["instance"], sample_query_points(generator=g), codes)
                         for s in samples],
    }

    n = len(samples)
    print(f"text tokenizer and serializers: {n} world samples, vocabulary {source} ({tok.vocab_size} ids), "
          f"best of {args.repeats} passes, CPU time of one process\n")
    print(f"{'sequence':16} {'tokens/item':>11} {'encode items/s':>15} {'decode items/s':>15}")
    rows = tok.encode_lists(captions)
    enc = best_time(lambda: tok.encode_lists(captions), args.repeats)
    dec = best_time(lambda: tok.decode(rows), args.repeats)
    print(f"{'caption':16} {sum(map(len, rows)) / n:11.1f} {n / enc:15,.0f} {n / dec:15,.0f}")
    for name, vals in values.items():
        ser = SERIALIZERS[name]
        ids = [ser.encode(v, tok) for v in vals]
        enc = best_time(lambda ser=ser, vals=vals: [ser.encode(v, tok) for v in vals], args.repeats)
        dec = best_time(lambda ser=ser, ids=ids: [ser.decode(i, tok) for i in ids], args.repeats)
        print(f"{name:16} {sum(map(len, ids)) / n:11.1f} {n / enc:15,.0f} {n / dec:15,.0f}")


if __name__ == "__main__":
    main()
