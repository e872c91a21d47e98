"""Pictures of what the released 4M-21 tokenizers decode to.

==============  ===============================================  ==============================================
kind            value (one item)                                 picture
==============  ===============================================  ==============================================
relative_depth  (H, W) standardized depth (DiVAE: zero mean,     near bright, far dark (viridis), stretched over
                unit spread, larger = farther; not metres)       the robust range of the map (`colors`)
coco_semseg     (H, W) labels 0..133 (0: no class; 1..133 the    COCO panoptic colours, and under the map a
                COCO panoptic classes of `viz.coco`)             legend: the classes present, largest first
sam_masks       `SamInstances`: query points, an instance map    each instance's mask in its own colour over
                (H, W) (0 = none, k = instance k), boxes         the image, its box outlined, points as crosses
smpl_poses      list of `SMPLPerson`                             each person's box and number over the image
==============  ===============================================  ==============================================

`pictures.picture` draws these kinds as every other (one entry point; boxes, crosses and the canvas are its
helpers). The semseg picture is ``size`` wide and as tall as its legend needs (at least ``size``), like a text
(`grid.tile_grid` gives it a taller row); the others are ``size`` x ``size``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..tokenizers.serializers import QueryPoint
from . import colors
from .coco import COCO_SEMSEG_CLASSES, COCO_SEMSEG_COLORS
from .pictures import canvas, cross, font, from_array, outline_box

OFFICIAL_KINDS = ("relative_depth", "coco_semseg", "sam_masks", "smpl_poses")
LEGEND_ROWS = 12  # classes named under a segmentation; the rest are counted in one more line
MASK_ALPHA = 0.55


@dataclass(frozen=True)
class SamInstances:
    """4M-21's ``sam_instance`` output placed as masks: ``points`` as decoded (`serializers.instances`), ``ids``
    (S, S) int64 (0: no instance, k: the k-th kept instance), ``boxes`` (K, 4) float xmin, ymin, xmax, ymax in
    pixels of the S-pixel frame (`tokenizers.ml4m.instances.place_instances`)."""

    points: list[QueryPoint]
    ids: torch.Tensor
    boxes: torch.Tensor

    def record(self) -> dict:
        """What its JSON file holds: the query points with their instances' boxes and codes, and the boxes of the
        instances kept on the map (instance k is ``kept[k - 1]``); the map itself is a PNG and a tensor."""
        return {"frame": int(self.ids.shape[-1]),
                "points": [{"x": p.x, "y": p.y, "instances": [{"box": list(i.box), "codes": list(i.codes)}
                                                             for i in p.instances]} for p in self.points],
                "kept": [[round(float(v), 2) for v in b] for b in self.boxes]}


@dataclass(frozen=True)
class SMPLPerson:
    """One person of 4M-21's ``human_poses`` in SMPL's parameters (no body model is shipped to turn them into a
    mesh): ``box`` normalized xmin, ymin, xmax, ymax; ``betas`` (10,) shape; ``global_orient`` (3, 3) rotation;
    ``camera`` (3,) the weak-perspective camera (scale, tx, ty) of the person's box crop, as 4M-21's pose data
    hold it; ``body_pose`` (23, 3, 3) joint rotations decoded by the pose tokenizer (None without it);
    ``pose_codes`` the 8 codes of that tokenizer."""

    box: tuple[float, float, float, float]
    betas: list[float]
    global_orient: list[list[float]]
    camera: list[float]
    pose_codes: list[int]
    body_pose: list[list[list[float]]] | None = field(default=None)


def relative_depth_rgb(depth) -> np.ndarray:
    """(H, W) standardized depth -> (H, W, 3): near bright, far dark; the range is `colors.robust_range` of the
    map read as log-depths (exp of the values), so that the same strays are dropped as for metric depth, and
    the colours run linearly over the values in between (larger = farther)."""
    d = colors.to_numpy(depth).astype(np.float64)
    if d.ndim == 3 and d.shape[0] == 1:
        d = d[0]
    if d.ndim != 2:
        raise ValueError(f"relative_depth picture: expected (H, W) depth, got shape {d.shape}")
    finite = np.isfinite(d)
    if not finite.any():
        return np.zeros((*d.shape, 3), dtype=np.uint8)
    # exp keeps the order; clipped so that exp cannot overflow (standardized values are a few units at most).
    lo, hi = colors.robust_range(np.exp(np.clip(d[finite], -50, 50)))
    lo, hi = np.log(lo), np.log(hi)
    out = colors.colormap(np.where(finite, -d, np.nan), lo=-hi, hi=-lo)  # nearer (smaller) = brighter
    return out


def coco_semseg_rgb(labels) -> np.ndarray:
    """(H, W) labels 0..133 -> (H, W, 3) in the COCO panoptic colours (label 0, no class, black)."""
    c = colors.to_numpy(labels)
    if c.ndim == 3 and c.shape[0] == 1:
        c = c[0]
    if c.ndim != 2 or np.issubdtype(c.dtype, np.floating):
        raise ValueError(f"coco_semseg picture: expected (H, W) integer labels, got {c.dtype} {c.shape}")
    if c.size and (c.min() < 0 or c.max() >= len(COCO_SEMSEG_CLASSES)):
        raise ValueError(f"coco_semseg picture: labels from {int(c.min())} to {int(c.max())}, expected 0 to "
                         f"{len(COCO_SEMSEG_CLASSES) - 1}")
    return np.asarray(COCO_SEMSEG_COLORS, dtype=np.uint8)[c]


def semseg_classes(labels) -> list[tuple[int, str, float]]:
    """(label, name, share of the pixels) of every label present, largest share first (ties: lower label)."""
    c = colors.to_numpy(labels).reshape(-1).astype(np.int64)
    counts = np.bincount(c, minlength=len(COCO_SEMSEG_CLASSES)) if c.size else np.zeros(1, np.int64)
    present = [k for k in np.flatnonzero(counts)]
    present.sort(key=lambda k: (-counts[k], k))
    return [(int(k), COCO_SEMSEG_CLASSES[k], float(counts[k] / c.size)) for k in present]


def draw_coco_semseg(labels, size: int) -> Image.Image:
    """The coloured map (``size`` x ``size``) with a legend under it: a swatch, the name and the share of each
    class present, largest first; past `LEGEND_ROWS` classes one line counts the rest."""
    top = from_array(coco_semseg_rgb(labels), size)
    classes = semseg_classes(labels)
    f = font(max(9, size // 14))
    step = f.getbbox("Ag")[3] + 3
    shown, rest = classes[:LEGEND_ROWS], len(classes) - LEGEND_ROWS
    img = Image.new("RGB", (size, size + 4 + step * (len(shown) + (rest > 0))), (255, 255, 255))
    img.paste(top, (0, 0))
    draw = ImageDraw.Draw(img)
    y = size + 3
    for label, name, share in shown:
        sw = step - 3
        draw.rectangle([3, y, 3 + sw, y + sw], fill=COCO_SEMSEG_COLORS[label], outline=(120, 120, 120))
        draw.text((8 + sw, y - 1), f"{name} {100 * share:.0f}%", fill=(20, 20, 20), font=f)
        y += step
    if rest > 0:
        draw.text((3, y - 1), f"+{rest} more classes", fill=(90, 90, 90), font=f)
    return img


def draw_sam_masks(value: SamInstances, size: int, *, background=None) -> Image.Image:
    """Instances of ``value`` as coloured masks (alpha `MASK_ALPHA`) with their boxes, over ``background`` (or
    dark grey); query points as white crosses. Coordinates scale from the map's frame to ``size``."""
    img = np.asarray(canvas(background, size), dtype=np.float64)
    ids = colors.to_numpy(value.ids).astype(np.int64)
    frame = ids.shape[-1]
    ids = np.asarray(Image.fromarray(ids.astype(np.int32)).resize((size, size), Image.NEAREST))
    palette = colors.class_colors(len(value.boxes) + 3)[3:].astype(np.float64)  # the world's muted stuff skipped
    for k in range(1, len(value.boxes) + 1):
        m = ids == k
        img[m] = (1 - MASK_ALPHA) * img[m] + MASK_ALPHA * palette[k - 1]
    out = Image.fromarray(np.round(img).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(out)
    s = size / frame
    for k, box in enumerate(value.boxes):
        outline_box(draw, tuple(round(float(v) * s) for v in box), tuple(int(v) for v in palette[k]))
    for p in value.points:
        cross(draw, p.x * s, p.y * s, max(2, size // 40), (255, 255, 255))
    return out


def draw_smpl_people(people, size: int, *, background=None) -> Image.Image:
    """Each person's box and number (``1``, ``2``, ... as in the JSON file's order) over ``background``; the pose
    itself needs an SMPL body model to draw, which polymodal does not ship."""
    img = canvas(background, size)
    draw = ImageDraw.Draw(img)
    f = font(max(9, size // 14))
    for k, p in enumerate(people, start=1):
        if not isinstance(p, SMPLPerson):
            raise TypeError(f"smpl_poses picture: expected SMPLPerson values, got {type(p).__name__}")
        x0, y0, x1, y1 = (round(c * size) for c in p.box)
        color = colors.class_color(k + 2)
        outline_box(draw, (x0, y0, x1, y1), color, width=max(1, size // 112))
        draw.text((x0 + 2, y0 + 1), f"person {k}", fill=color, font=f)
    return img


def official_value_kind(tok) -> str | None:
    """The picture kind of what a released tokenizer decodes (None for any other tokenizer): DiVAE values as
    themselves (depth: ``relative_depth``), a 134-label segmentation ``coco_semseg``, feature maps ``feature``,
    vectors ``vector``, SAM masks (probabilities) ``edge`` (grey)."""
    from ..tokenizers.ml4m.divae import DiVAE
    from ..tokenizers.ml4m.vqvae import OfficialVQVAE

    if isinstance(tok, DiVAE):
        return {"depth": "relative_depth", "raw": "feature"}.get(tok.cfg.values, tok.cfg.values)
    if isinstance(tok, OfficialVQVAE):
        v = tok.cfg.values
        if v == "semseg":
            return "coco_semseg" if tok.cfg.n_labels == len(COCO_SEMSEG_CLASSES) else "semseg"
        return {"mask": "edge"}.get(v, v)
    return None
