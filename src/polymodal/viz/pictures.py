"""One picture per value: ``picture(kind, value, size=...)`` -> a ``size`` x ``size`` RGB PIL image (texts: ``size``
wide and as tall as their whole text needs, at least ``size``).

``kind`` is what `decode.value_kind` names; ``value`` is one item (no batch axis) of a decoded value:

==============  ================================================  ============================================
kind            value                                             picture
==============  ================================================  ============================================
rgb             (3, H, W) float 0..1 or (H, W, 3) uint8           the image
depth           (H, W) metres, 0 = no surface                     inverse depth, viridis (`colors.depth_rgb`)
normal          (3, H, W) or (H, W, 3) unit vectors               (n + 1) / 2 as RGB
semseg          (H, W) class ids                                  a fixed palette (`colors.class_colors`)
edge            (H, W) 0..1                                       grey levels
feature         (C, H, W) float                                   first 3 principal components as RGB
vector          (D,) float                                        the entries as a viridis square, row-major
det             list of `Box` (normalized)                        boxes and class names over ``background``
color_palette   list of (r, g, b), or the world's palette dict    swatches (weighted when weights are given)
human_poses     list of `PersonPose`, or the world's pose dicts   boxes; skeletons where joints are known
sam_instance    list of `QueryPoint` (224-pixel frame)            query points and their instance boxes
caption, text   str                                               the whole text, wrapped
metadata        dict field -> value                               one ``field: value`` line each (all)
==============  ================================================  ============================================

Images are resized with nearest neighbour so that pixels stay pixels. Boxes, poses and instances draw over
``background`` (an RGB image value) when given, else over dark grey.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..data.world.person import BONES, JOINT_NAMES
from ..tokenizers.serializers import Box, PersonPose, QueryPoint
from ..tokenizers.serializers.instances import IMAGE_SIZE as INSTANCE_FRAME
from . import colors

BACKGROUND = (40, 40, 40)
TEXT_COLOR = (20, 20, 20)
_PART_COLORS = {"shirt": (255, 80, 80), "skin": (255, 220, 120), "pants": (90, 160, 255)}


@cache
def font(size: int = 11) -> ImageFont.ImageFont:
    """Pillow's built-in font at ``size`` pixels (no font files needed)."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType sizes
        return ImageFont.load_default()


def from_array(rgb: np.ndarray, size: int) -> Image.Image:
    """(H, W, 3) uint8 -> a ``size`` x ``size`` PIL image (nearest neighbour)."""
    return Image.fromarray(np.ascontiguousarray(rgb), "RGB").resize((size, size), Image.NEAREST)


def vector_rgb(vector) -> np.ndarray:
    """(D,) -> (s, s, 3): the entries row-major in the smallest square that holds them, viridis; unused cells
    black."""
    v = colors.to_numpy(vector).astype(np.float64).reshape(-1)
    if v.size == 0:
        raise ValueError("vector picture: empty vector")
    side = int(np.ceil(np.sqrt(v.size)))
    lo, hi = float(np.nanmin(v)), float(np.nanmax(v))
    cells = np.full(side * side, np.nan)
    cells[:v.size] = v
    return colors.colormap(cells.reshape(side, side), lo=lo, hi=hi)


def canvas(background, size: int) -> Image.Image:
    """What boxes, poses and masks draw over: ``background`` (an RGB value or a PIL image) at ``size``, else dark
    grey."""
    if background is None:
        return Image.new("RGB", (size, size), BACKGROUND)
    if isinstance(background, Image.Image):
        return background.convert("RGB").resize((size, size), Image.NEAREST)
    return from_array(colors.rgb_rgb(background), size)


def outline_box(draw: ImageDraw.ImageDraw, box, color, *, width: int = 1) -> None:
    """Outline the pixels ``x0 .. x1 - 1``, ``y0 .. y1 - 1`` of a half-open pixel box (at least one pixel)."""
    x0, y0, x1, y1 = box
    draw.rectangle([x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)], outline=color, width=width)


def cross(draw: ImageDraw.ImageDraw, x: float, y: float, r: float, color) -> None:
    """A point marked by a cross of half-width ``r`` pixels."""
    draw.line([(x - r, y), (x + r, y)], fill=color, width=1)
    draw.line([(x, y - r), (x, y + r)], fill=color, width=1)


def _class_color(label: str) -> tuple[int, int, int]:
    # A colour from the name itself, so a class has one colour across pictures whatever the vocabulary.
    return colors.class_color(sum((i + 1) * ord(c) for i, c in enumerate(label)) % 997)


def draw_boxes(boxes: Sequence[Box], size: int, *, background=None, labels: bool = True,
               width: int = 1) -> Image.Image:
    """Boxes (normalized, half-open) on a ``size`` x ``size`` picture: box (x0, y0, x1, y1) outlines the pixels
    ``round(x0 * size) .. round(x1 * size) - 1`` (and the same for y); the class name is written inside."""
    img = canvas(background, size)
    draw = ImageDraw.Draw(img)
    f = font(max(9, size // 14))
    for b in boxes:
        if not isinstance(b, Box):
            raise TypeError(f"det picture: expected Box values, got {type(b).__name__}")
        x0, y0, x1, y1 = (round(c * size) for c in b.coords)
        color = _class_color(b.label)
        outline_box(draw, (x0, y0, x1, y1), color, width=width)
        if labels:
            draw.text((x0 + 2, y0 + 1), b.label, fill=color, font=f)
    return img


def draw_palette(palette, size: int) -> Image.Image:
    """Colour swatches as horizontal bands: equal heights for a list of (r, g, b), proportional to the weights for
    the world's ``{"colors", "weights"}`` dict. An empty palette is the background."""
    if isinstance(palette, Mapping):
        cols, weights = list(palette["colors"]), [float(w) for w in palette["weights"]]
    else:
        cols = list(palette)
        weights = [1.0] * len(cols)
    img = Image.new("RGB", (size, size), BACKGROUND)
    draw = ImageDraw.Draw(img)
    total, y = sum(weights) or 1.0, 0.0
    for c, w in zip(cols, weights):
        y1 = y + w / total * size
        draw.rectangle([0, round(y), size - 1, round(y1) - 1], fill=tuple(int(v) for v in c))
        y = y1
    return img


def draw_poses(people: Sequence, size: int, *, background=None, source_size: int | None = None) -> Image.Image:
    """People: a `PersonPose` is its box (its pose codes need the pose tokenizer to become joints); a world pose
    dict (``joints_2d`` in pixels of a ``source_size`` image: default the background's width, else ``size``) is
    its skeleton."""
    if source_size is None and background is not None:
        source_size = background.width if isinstance(background, Image.Image) else colors.rgb_rgb(background).shape[1]
    img = canvas(background, size)
    draw = ImageDraw.Draw(img)
    idx = {n: i for i, n in enumerate(JOINT_NAMES)}
    for p in people:
        if isinstance(p, PersonPose):
            x0, y0, x1, y1 = (round(c * size) for c in p.box)
            outline_box(draw, (x0, y0, x1, y1), (255, 255, 255))
            draw.text((x0 + 2, y0 + 1), "human", fill=(255, 255, 255), font=font(max(9, size // 14)))
            continue
        if not isinstance(p, Mapping) or "joints_2d" not in p:
            raise TypeError(f"human_poses picture: expected PersonPose or a world pose dict, got {type(p).__name__}")
        scale = size / (source_size or size)
        j = np.asarray(p["joints_2d"], dtype=np.float64) * scale
        for a, b, _, part in BONES:
            draw.line([tuple(j[idx[a]]), tuple(j[idx[b]])], fill=_PART_COLORS[part], width=max(1, size // 64))
        hx, hy = j[idx["head"]]
        r = max(2, size // 40)
        draw.ellipse([hx - r, hy - r, hx + r, hy + r], outline=_PART_COLORS["skin"], width=max(1, size // 64))
    return img


def draw_instances(points: Sequence[QueryPoint], size: int, *, background=None) -> Image.Image:
    """SAM query points (a cross each) and the boxes of their instances, one colour per point; coordinates are
    pixels of 4M's 224-pixel frame, scaled to ``size``."""
    img = canvas(background, size)
    draw = ImageDraw.Draw(img)
    s = size / INSTANCE_FRAME
    palette = colors.class_colors(len(points) + 3)[3:]  # skip the muted stuff colours
    for p, c in zip(points, palette):
        color = tuple(int(v) for v in c)
        cross(draw, p.x * s, p.y * s, max(2, size // 40), color)
        for inst in p.instances:
            outline_box(draw, tuple(round(v * s) for v in inst.box), color)
    return img


def wrap(text: str, width_px: int, f) -> list[str]:
    """Greedy word wrap to ``width_px`` pixels; a word wider than a line is split over lines by characters, so
    every character of ``text`` is on some line and no line is wider than ``width_px`` (unless one character is)."""
    lines: list[str] = []
    for para in text.splitlines() or [""]:
        line = ""
        for word in para.split():
            trial = f"{line} {word}".strip()
            if f.getlength(trial) <= width_px:
                line = trial
                continue
            if line:
                lines.append(line)
            line = word
            while len(line) > 1 and f.getlength(line) > width_px:
                cut = len(line) - 1
                while cut > 1 and f.getlength(line[:cut]) > width_px:
                    cut -= 1
                lines.append(line[:cut])
                line = line[cut:]
        lines.append(line)
    return lines


def text_height(lines: int, f) -> int:
    """Pixels that ``lines`` lines of `draw_text` take (margins included)."""
    return 4 + lines * (f.getbbox("Ag")[3] + 2)


def draw_text(text: str, size: int, *, font_size: int | None = None) -> Image.Image:
    """A white panel ``size`` wide with the whole of ``text`` wrapped to its width: ``size`` tall, or taller when
    the text needs it (never cut off; `grid.tile_grid` gives such a picture a taller row)."""
    f = font(font_size or max(9, size // 12))
    step = f.getbbox("Ag")[3] + 2
    lines = wrap(text, size - 6, f)
    img = Image.new("RGB", (size, max(size, text_height(len(lines), f))), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    for k, line in enumerate(lines):
        draw.text((3, 2 + k * step), line, fill=TEXT_COLOR, font=f)
    return img


def format_metadata(meta: Mapping[str, Any]) -> str:
    def fmt(v):
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    return "\n".join(f"{k}: {fmt(v)}" for k, v in meta.items()) or "(no fields)"


def picture(kind: str, value: Any, *, size: int = 128, background=None) -> Image.Image:
    """A ``size`` x ``size`` RGB picture of one value of ``kind`` (see the module table; texts may be taller)."""
    if kind == "rgb":
        return from_array(colors.rgb_rgb(value), size)
    if kind == "depth":
        return from_array(colors.depth_rgb(value), size)
    if kind == "normal":
        return from_array(colors.normal_rgb(value), size)
    if kind == "semseg":
        return from_array(colors.semseg_rgb(value), size)
    if kind == "edge":
        return from_array(colors.gray_rgb(value), size)
    if kind == "feature":
        return from_array(colors.feature_pca_rgb(value), size)
    if kind == "vector":
        return from_array(vector_rgb(value), size)
    if kind == "det":
        return draw_boxes(value, size, background=background)
    if kind == "color_palette":
        return draw_palette(value, size)
    if kind == "human_poses":
        return draw_poses(value, size, background=background)
    if kind == "sam_instance":
        return draw_instances(value, size, background=background)
    if kind in ("caption", "text"):
        return draw_text(str(value), size)
    if kind == "metadata":
        return draw_text(format_metadata(value), size, font_size=max(8, size // 16))
    from . import official  # here: that module draws with this one's helpers

    if kind == "relative_depth":
        return from_array(official.relative_depth_rgb(value), size)
    if kind == "coco_semseg":
        return official.draw_coco_semseg(value, size)
    if kind == "sam_masks":
        return official.draw_sam_masks(value, size, background=background)
    if kind == "smpl_poses":
        return official.draw_smpl_people(value, size, background=background)
    raise ValueError(f"no picture for kind {kind!r}; kinds: {', '.join(KINDS + official.OFFICIAL_KINDS)}")


KINDS = ("rgb", "depth", "normal", "semseg", "edge", "feature", "vector", "det", "color_palette", "human_poses",
         "sam_instance", "caption", "text", "metadata")
