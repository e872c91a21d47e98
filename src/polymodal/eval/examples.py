"""Example pictures of an evaluation: the first samples of each task, what went in, what came out, the truth.

`evaluate(..., examples=k)` keeps, per task, the first k samples' values in the world's formats::

    {"input": (key, value), "output": (key, value), "truth": (key, value), "read": {"det": ..., "semseg": ...}}

(``read`` only for the generation checks: the generated image read back). `example_grid` draws one row per kept
sample and task: input | output | truth, and for generated images, the boxes and segmentation read back from them
(boxes over the generated image). Pictures come from `polymodal.viz` after `data.world.values` converts the
world's formats (channel-last arrays, pixel boxes) to the values viz draws.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from PIL import Image

from ..data.world.values import KINDS, world_values
from ..viz import picture, tile_grid


def _tile(title: str, key: str, value: Any, res: int, *, background=None, size: int) -> tuple[str, Image.Image]:
    sample = {key: value} if key != "det" else {"det": value, "rgb": np.zeros((res, res, 3), np.uint8)}
    v = world_values(sample, [key])[key]
    bg = None if background is None else world_values({"rgb": background}, ["rgb"])["rgb"]
    return title, picture(KINDS[key], v, size=size, background=bg if key == "det" else None)


def example_rows(task: str, examples: list[dict], *, size: int = 96) -> list[list[tuple[str, Image.Image]]]:
    """Tiles of one task's kept examples, one row per sample (see the module doc)."""
    rows = []
    for ex in examples:
        (ik, iv), (ok, ov), (tk, tv) = ex["input"], ex["output"], ex["truth"]
        res = int(ex["res"])
        read = ex.get("read")
        shown_on = None if read else ex.get("rgb")  # a generation condition is drawn alone: the model saw no image
        row = [_tile(f"{task}: {ik}", ik, iv, res, size=size, background=shown_on),
               _tile(f"predicted {ok}", ok, ov, res, size=size, background=ex.get("rgb")),
               _tile(f"true {tk}", tk, tv, res, size=size, background=ex.get("rgb"))]
        if read:
            row.append(_tile("read back: det", "det", read["det"], res, size=size, background=ov))
            row.append(_tile("read back: semseg", "semseg", read["semseg"], res, size=size))
        rows.append(row)
    return rows


def example_grid(results: Mapping[str, Any], *, size: int = 96) -> Image.Image | None:
    """The example rows of every task of one `evaluate` result (None when it kept no examples)."""
    rows = [r for task, ex in results.get("examples", {}).items() for r in example_rows(task, ex, size=size)]
    return tile_grid(rows, tile=size) if rows else None
