"""A world sample -> the values of each modality, in the natural units tokenizers and pictures take.

`render_sample` stores arrays the way images are stored ((H, W, C) uint8, boxes in pixels, world dicts); tokenizers,
serializers, generation conditions and `polymodal.viz.picture` take channel-first tensors and 4M's value types.
This is the one place that converts, as `data.pretokenize` does for shards (without its crops):

==============  =====================  ======================================================  ==============
key             from sample key        value (no batch axis)                                   picture kind
==============  =====================  ======================================================  ==============
rgb             rgb                    (3, H, W) float32 0..1                                  rgb
depth           depth                  (H, W) float32 metres, 0 = sky                          depth
normal          normal                 (3, H, W) float32 unit vectors (0 where no surface)     normal
semseg          semseg                 (H, W) int64 class ids (`scene.SEMSEG_CLASSES`)         semseg
canny_edge      canny_edge             (H, W) float32 0..1                                     edge
sam_edge        sam_edge               (H, W) float32 0..1                                     edge
det             det                    list of `Box` (normalized to the image side)            det
caption         caption                str                                                     caption
metadata        metadata               dict field -> raw value, 4M's field order               metadata
color_palette   color_palette          list of (r, g, b) ints                                  color_palette
minilm_global   minilm_global          (384,) float32 unit vector (only if the sample has it)  vector
==============  =====================  ======================================================  ==============

The modality a model uses for a key is named after it: ``rgb`` feeds ``rgb@64`` (pixels) or ``tok_rgb@64`` (through
the RGB tokenizer), ``depth`` feeds ``tok_depth@64``, ``minilm_global`` feeds ``tok_minilm_global``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

from ...tokenizers.serializers import boxes_from_world, metadata_from_world, palette_from_world

KINDS = {"rgb": "rgb", "depth": "depth", "normal": "normal", "semseg": "semseg", "canny_edge": "edge",
         "sam_edge": "edge", "det": "det", "caption": "caption", "metadata": "metadata",
         "color_palette": "color_palette", "minilm_global": "vector"}
KEYS = tuple(KINDS)


def _chw(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1).contiguous()


def _convert(key: str, v: Any, res: int) -> Any:
    if key == "rgb":
        return _chw(np.asarray(v, dtype=np.uint8)).float() / 255.0
    if key == "depth":
        return torch.from_numpy(np.asarray(v, dtype=np.float32).copy())
    if key == "normal":
        return _chw(np.asarray(v, dtype=np.float32))
    if key == "semseg":
        return torch.from_numpy(np.asarray(v).astype(np.int64))
    if key in ("canny_edge", "sam_edge"):
        return torch.from_numpy(np.asarray(v, dtype=np.float32) / 255.0)
    if key == "det":
        return boxes_from_world(v, res)
    if key == "caption":
        return str(v)
    if key == "metadata":
        return metadata_from_world(v)
    if key == "color_palette":
        return palette_from_world(v)
    if key == "minilm_global":
        return torch.as_tensor(np.asarray(v, dtype=np.float32).reshape(-1))
    raise KeyError(f"no conversion for world key {key!r}; keys: {', '.join(KEYS)}")


def world_values(sample: dict, keys: Iterable[str] | None = None) -> dict[str, Any]:
    """The values of ``keys`` (default: every key of the module table the sample holds) of one world sample.

    Boxes are normalized by the image side (``rgb``'s width; world images are square)."""
    res = int(np.asarray(sample["rgb"]).shape[1]) if "rgb" in sample else 64
    wanted = KEYS if keys is None else tuple(keys)
    unknown = [k for k in wanted if k not in KINDS]
    if unknown:
        raise KeyError(f"no conversion for world key(s) {', '.join(map(repr, unknown))}; keys: {', '.join(KEYS)}")
    if keys is not None:
        missing = [k for k in wanted if k not in sample]
        if missing:
            raise KeyError(f"the sample has no {', '.join(missing)} (it has {', '.join(sorted(sample))})")
    return {k: _convert(k, sample[k], res) for k in wanted if k in sample}


def batch_values(samples: Sequence[dict], keys: Iterable[str] | None = None) -> dict[str, Any]:
    """`world_values` of several samples, batched: tensors stacked (B, ...), other values as lists of B."""
    per = [world_values(s, keys) for s in samples]
    common = [k for k in per[0] if all(k in p for p in per)]
    out: dict[str, Any] = {}
    for k in common:
        items = [p[k] for p in per]
        out[k] = torch.stack(items) if isinstance(items[0], torch.Tensor) else items
    return out
