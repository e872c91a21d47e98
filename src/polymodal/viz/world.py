"""A PNG grid of every modality of a few world samples, to look at (``polymodal data show``).

One row per sample, one column per modality: RGB, boxes with class labels, depth, normals (x, y, z -> R, G, B),
semantic classes, instances, Canny edges, SAM edges, the person skeletons over a dimmed RGB, and the colour
palette; the caption is printed under each row. Images are upscaled with nearest neighbour so that pixels stay
pixels. Depth and classes are coloured as every other picture of polymodal colours them (`colors.depth_rgb`:
inverse depth through viridis over the map's robust range, near bright, sky black, as the released model's
relative depth in `viz.official`; `colors.class_colors`), so a world sample and a prediction of it compare at a
glance. Here in viz, not in data/world: data sits below viz in the import table.
"""

from __future__ import annotations

import textwrap

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..data.world.person import BONES, JOINT_NAMES
from ..data.world.scene import SEMSEG_CLASSES
from . import colors

COLUMNS = ("rgb", "det", "depth", "normal", "semseg", "instance", "canny_edge", "sam_edge", "human_poses",
           "color_palette")
# Stuff in muted tones, object classes in saturated ones: the first colours of the palette every picture uses.
SEMSEG_COLORS = colors.class_colors(len(SEMSEG_CLASSES))


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType sizes
        return ImageFont.load_default()


def _instance_colors(n: int = 256) -> np.ndarray:
    rng = np.random.default_rng(7)  # fixed: the same id has the same colour in every grid
    colors = rng.integers(60, 256, size=(n, 3)).astype(np.uint8)
    colors[0] = 0
    return colors


def colorize(modality: str, value) -> np.ndarray:
    """An (H, W, 3) uint8 picture of an image modality."""
    if modality == "rgb":
        return value
    if modality == "depth":  # metres, 0 = sky; min-max stretched before, so one stray flattened every surface
        return colors.depth_rgb(value)
    if modality == "normal":
        sky = np.abs(value).sum(-1) < 1e-3
        out = np.clip((value + 1) / 2 * 255, 0, 255).astype(np.uint8)
        out[sky] = 0
        return out
    if modality == "semseg":
        return SEMSEG_COLORS[np.minimum(value, len(SEMSEG_COLORS) - 1)]
    if modality == "instance":
        return _instance_colors()[value]
    if modality in ("canny_edge", "sam_edge"):
        return np.repeat(value[..., None], 3, axis=-1)
    raise KeyError(f"no picture for modality {modality!r}")


def _tile(sample: dict, column: str, scale: int, font) -> Image.Image:
    res = sample["rgb"].shape[0]
    size = res * scale
    if column in ("rgb", "depth", "normal", "semseg", "instance", "canny_edge", "sam_edge"):
        return Image.fromarray(colorize(column, sample[column])).resize((size, size), Image.NEAREST)
    if column == "det":
        img = Image.fromarray(sample["rgb"]).resize((size, size), Image.NEAREST)
        draw = ImageDraw.Draw(img)
        for d in sample["det"]:
            color = tuple(int(c) for c in SEMSEG_COLORS[SEMSEG_CLASSES.index(d["class"])])
            x0, y0, x1, y1 = (v * scale for v in d["box"])
            draw.rectangle([x0, y0, x1 - 1, y1 - 1], outline=color, width=1)
            draw.text((x0 + 2, y0 + 1), d["class"], fill=color, font=font)
        return img
    if column == "human_poses":
        img = Image.fromarray((sample["rgb"] * 0.45).astype(np.uint8)).resize((size, size), Image.NEAREST)
        draw = ImageDraw.Draw(img)
        idx = {n: i for i, n in enumerate(JOINT_NAMES)}
        for pose in sample["human_poses"]:
            j = np.array(pose["joints_2d"]) * scale
            x0, y0, x1, y1 = (v * scale for v in pose["box"])
            draw.rectangle([x0, y0, x1 - 1, y1 - 1], outline=(255, 255, 255), width=1)
            for a, b, _, part in BONES:
                color = {"shirt": (255, 80, 80), "skin": (255, 220, 120), "pants": (90, 160, 255)}[part]
                draw.line([tuple(j[idx[a]]), tuple(j[idx[b]])], fill=color, width=2)
            hx, hy = j[idx["head"]]
            draw.ellipse([hx - 3, hy - 3, hx + 3, hy + 3], outline=(255, 220, 120), width=2)
            draw.text((x0 + 2, y1 + 1), pose["action"], fill=(255, 255, 255), font=font)
        return img
    if column == "color_palette":
        img = Image.new("RGB", (size, size), (0, 0, 0))
        draw = ImageDraw.Draw(img)
        y = 0.0
        for color, w in zip(sample["color_palette"]["colors"], sample["color_palette"]["weights"]):
            draw.rectangle([0, round(y), size, round(y + w * size)], fill=tuple(color))
            y += w * size
        return img
    raise KeyError(f"unknown column {column!r}")


def grid(samples: list[dict], *, scale: int | None = None) -> Image.Image:
    """A picture of every modality of ``samples`` (dicts as `render_sample` returns or the reader yields)."""
    if not samples:
        raise ValueError("no samples to show")
    res = samples[0]["rgb"].shape[0]
    scale = scale or max(1, 128 // res)
    size, pad = res * scale, 4
    font, small = _font(max(10, size // 11)), _font(12)
    width = len(COLUMNS) * (size + pad) + pad
    chars = max(40, int(width / 7))
    captions = [textwrap.wrap(s["caption"], chars) for s in samples]
    header = 18
    heights = [size + pad + 15 * len(lines) + pad for lines in captions]
    canvas = Image.new("RGB", (width, header + sum(heights)), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for c, name in enumerate(COLUMNS):
        draw.text((pad + c * (size + pad), 3), name, fill=(0, 0, 0), font=small)
    y = header
    for sample, lines, h in zip(samples, captions, heights):
        for c, name in enumerate(COLUMNS):
            canvas.paste(_tile(sample, name, scale, font), (pad + c * (size + pad), y))
        key = sample.get("__key__", sample.get("scene", {}).get("index", ""))
        for k, line in enumerate(lines):
            prefix = f"#{key}: " if k == 0 else ""
            draw.text((pad, y + size + pad + 15 * k), prefix + line, fill=(0, 0, 0), font=small)
        y += h
    return canvas
