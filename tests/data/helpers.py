"""Tiny token datasets whose ids tell which sample they came from."""

from __future__ import annotations

import numpy as np

from polymodal import modalities
from polymodal.data.pretokenize import write_tokens
from polymodal.modalities import Kind, Modality

GRID = modalities.register(Modality("tok_a@data", Kind.IMAGE_TOKENS, vocab_size=1000, grid=(4, 4)))
OTHER = modalities.register(Modality("tok_b@data", Kind.IMAGE_TOKENS, vocab_size=50, grid=(2, 2)))
CAPTION = modalities.get("caption")


def index_dataset(out, n: int, *, shard_size: int, crops: int = 2, names=("tok_a@data", "caption"), start: int = 0):
    """Sample i: tok_a's first two ids are 1 + i // 100 and i % 100 (crop c adds 200 * c to the rest), a short
    caption; ``names`` picks the modalities stored."""
    rng = np.random.default_rng(n)

    def gen():
        for i in range(start, start + n):
            grid = rng.integers(1, 200, size=(crops, 16))
            grid[:, 0], grid[:, 1] = 1 + i // 100, i % 100
            grid[:, 2:] += 200 * np.arange(crops)[:, None]
            length = int(rng.integers(2, 12))
            cap = np.zeros((crops, length + 1), dtype=np.int64)
            cap[:, :length], cap[:, length] = rng.integers(204, 2000, size=length), 3
            sample = {"__key__": f"{i:06d}", "tok_a@data": grid, "caption": cap,
                      "tok_b@data": rng.integers(0, 50, size=(crops, 4))}
            yield {k: v for k, v in sample.items() if k == "__key__" or k in names}

    mods = {k: modalities.get(k) for k in names}
    return write_tokens(out, gen(), mods, shard_size=shard_size, crops=crops)


def sample_ids(batch) -> list[int]:
    v = batch["tok_a@data"].values
    return ((v[:, 0] - 1) * 100 + v[:, 1]).tolist()
