"""A tiny procedural token world for tests and the CPU smoke recipe: learnable, instant, index-addressed.

Sample i depends only on ``(seed, i)``. Each sample has 1-3 rectangles of 8 classes at 4 depth levels on an 8x8
grid; three modalities describe it:

- ``tok_shape@syn`` (8x8 image tokens): class id and a 2x2 texture phase per cell (what is where);
- ``tok_depth@syn`` (8x8 image tokens): depth level and class per cell (near objects cover far ones);
- ``labels@syn`` (sequence): the classes present, sorted, as ids 204+class, then ``[EOS]`` (4M's text layout:
  ids below 204 are special and sentinel tokens).

Shape predicts the class half of depth and the labels; labels constrain shape. Enough structure for a loss to fall.
"""

from __future__ import annotations

import numpy as np

from ..modalities import get

GRID = 8
NUM_CLASSES = 8
EOS = 3
FIRST_WORD = 204  # the first id after [PAD] [UNK] [SOS] [EOS] and the 200 sentinels

# Built-in modalities (`modalities._synthetic_token_world`), so that configs naming them load without this module.
SHAPE, DEPTH, LABELS = get("tok_shape@syn"), get("tok_depth@syn"), get("labels@syn")
MODALITIES = (SHAPE.name, DEPTH.name, LABELS.name)


def sample(seed: int, index: int) -> dict[str, np.ndarray]:
    """Raw (unmasked) tokens of sample ``index``: two (64,) int64 grids and a (8,) int64 padded sequence."""
    rng = np.random.default_rng([seed, index])
    classes = np.zeros((GRID, GRID), dtype=np.int64)
    depth = np.zeros((GRID, GRID), dtype=np.int64)
    n = int(rng.integers(1, 4))
    objs = []
    for _ in range(n):
        h, w = rng.integers(2, 6, size=2)
        r, c = rng.integers(0, GRID - h + 1), rng.integers(0, GRID - w + 1)
        objs.append((int(rng.integers(1, 5)), int(rng.integers(1, NUM_CLASSES + 1)), r, c, h, w))
    for z, k, r, c, h, w in sorted(objs, key=lambda o: -o[0]):  # far first, near painted over
        classes[r:r + h, c:c + w] = k
        depth[r:r + h, c:c + w] = z
    rows, cols = np.meshgrid(np.arange(GRID), np.arange(GRID), indexing="ij")
    phase = (rows // 2 % 2) * 2 + (cols // 2 % 2)
    shape_tok = classes * 4 + phase
    depth_tok = depth * (NUM_CLASSES + 1) + classes
    present = sorted(set(classes[classes > 0].tolist()))
    labels = np.zeros(LABELS.max_length, dtype=np.int64)
    seq = [FIRST_WORD + k for k in present] + [EOS]
    labels[: len(seq)] = seq
    return {SHAPE.name: shape_tok.reshape(-1), DEPTH.name: depth_tok.reshape(-1), LABELS.name: labels}
