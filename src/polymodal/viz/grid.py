"""Grids of titled pictures, and the grid of a model's inputs and outputs.

Layout of `tile_grid` (all in pixels)::

    pad | tile | pad | tile | ... | pad          width  = cols * (tile + pad) + pad
    each row: title_height, then the tile, then pad   height = rows * (title_height + tile + pad) + pad

A row shorter than the longest leaves blank cells on its right; a row holding a text taller than ``tile`` (its
whole caption) is that much taller.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from .pictures import font, picture

Tile = tuple[str, Image.Image]
# Drawn over the sample's image when it has one.
BACKGROUND_KINDS = ("det", "human_poses", "sam_instance", "sam_masks", "smpl_poses")


def grid_size(rows: int, cols: int, *, tile: int, pad: int = 4, title_height: int = 14) -> tuple[int, int]:
    """(width, height) of a `tile_grid` of ``rows`` x ``cols`` tiles."""
    return cols * (tile + pad) + pad, rows * (title_height + tile + pad) + pad


def tile_grid(rows: Sequence[Sequence[Tile]], *, tile: int = 128, pad: int = 4, title_height: int = 14) -> Image.Image:
    """Rows of (title, picture) as one image; pictures that are not ``tile`` x ``tile`` are resized (nearest),
    except texts ``tile`` wide and taller (`pictures.draw_text`): they keep their height and make their row as
    tall (so a row of squares only is laid out as `grid_size` says)."""
    if not rows or not any(rows):
        raise ValueError("tile_grid: nothing to draw (no rows or only empty rows)")
    cols = max(len(r) for r in rows)
    heights = [max([tile] + [img.height for _, img in row if img.width == tile]) for row in rows]
    width, _ = grid_size(len(rows), cols, tile=tile, pad=pad, title_height=title_height)
    canvas = Image.new("RGB", (width, sum(h + title_height + pad for h in heights) + pad), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    f = font(max(8, title_height - 3))
    y = pad
    for row, height in zip(rows, heights):
        for c, (title, img) in enumerate(row):
            x = pad + c * (tile + pad)
            title = _fit(title, tile, f)
            draw.text((x, y), title, fill=(0, 0, 0), font=f)
            if img.width != tile or img.height < tile:
                img = img.resize((tile, tile), Image.NEAREST)
            canvas.paste(img.convert("RGB"), (x, y + title_height))
        y += title_height + height + pad
    return canvas


def _fit(title: str, width: int, f) -> str:
    if f.getlength(title) <= width:
        return title
    while title and f.getlength(title + "...") > width:
        title = title[:-1]
    return title + "..."


def sample_tiles(values: Mapping[str, Any], kinds: Mapping[str, str], b: int, *, size: int = 128,
                 prefix: str = "", background=None) -> list[Tile]:
    """The pictures of item ``b`` of every batched value in ``values`` (modality -> value, kinds: modality ->
    `decode.value_kind`), titled ``prefix + name``. Boxes, poses and instances draw over ``background``."""
    tiles = []
    for name, value in values.items():
        if name not in kinds:
            raise KeyError(f"no kind for {name!r}: pass kinds[{name!r}] (see polymodal.viz.value_kind)")
        kind = kinds[name]
        bg = background if kind in BACKGROUND_KINDS else None
        tiles.append((prefix + name, picture(kind, value[b], size=size, background=bg)))
    return tiles


def _first_image(values: Mapping[str, Any], kinds: Mapping[str, str], b: int):
    for name, value in values.items():
        if kinds.get(name) == "rgb":
            return value[b]
    return None


def inputs_outputs_grid(inputs: Mapping[str, Any], outputs: Mapping[str, Any], kinds: Mapping[str, str], *,
                        samples: Sequence[int] | None = None, size: int = 128) -> Image.Image:
    """One row per sample: its inputs (titled ``in: name``), then its outputs (``out: name``).

    ``inputs`` and ``outputs`` map a modality to a batched value (tensors (B, ...) or lists of B items: what
    `decode_outputs` returns, or raw input values); ``samples`` picks the items (default all). Boxes, poses and
    instances draw over the sample's first RGB input, or its first RGB output when it has no RGB input.
    """
    if not inputs and not outputs:
        raise ValueError("inputs_outputs_grid: no inputs and no outputs to draw")
    batch = {len(v) for v in (*inputs.values(), *outputs.values())}
    if len(batch) != 1:
        raise ValueError(f"inputs_outputs_grid: values have different batch sizes {sorted(batch)}")
    n = batch.pop()
    samples = list(range(n)) if samples is None else list(samples)
    bad = [b for b in samples if not 0 <= b < n]
    if bad:
        raise IndexError(f"inputs_outputs_grid: samples {bad} out of range for a batch of {n}")
    rows = []
    for b in samples:
        bg = _first_image(inputs, kinds, b)
        bg = _first_image(outputs, kinds, b) if bg is None else bg
        rows.append(sample_tiles(inputs, kinds, b, size=size, prefix="in: ", background=bg)
                    + sample_tiles(outputs, kinds, b, size=size, prefix="out: ", background=bg))
    return tile_grid(rows, tile=size)


def save_png(image: Image.Image, path: str | Path) -> Path:
    """Write ``image`` as PNG (parent folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG")
    return path
