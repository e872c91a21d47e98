"""SAM instances of 4M-21 as a picture: each instance's 16 mask tokens decoded at 64 px and placed in its box.

4M-21 predicts ``sam_instance`` as text: per query point, instances ``polygon xmin ymin xmax ymax <16 codes>``
(`serializers.instances`). The codes are tokens of the released ``sam-instance_1k_64`` VQ-VAE (a 64 x 64 mask,
4 x 4 tokens; `OfficialVQVAE` with ``values="mask"``). `place_instances` turns a list of them into one instance
map, as the reference's demo draws them:

1. instances sorted by box area, largest first (so smaller ones are painted over larger ones);
2. masks decoded to probabilities; a mask whose probabilities span less than 0.9 (no clear inside and outside)
   is dropped;
3. the same instance found from several query points (mask Dice > 0.8 and box IoU > 0.9 with a kept one) is
   merged into it: masks and boxes averaged;
4. each mask resized (bicubic) to its box and thresholded at 0.5.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch.nn import functional as F

from ..serializers.instances import Instance

DEDUP_DICE, DEDUP_IOU, MIN_SPAN = 0.8, 0.9, 0.9


class InstanceMap(NamedTuple):
    """ids (H, W) int64: 0 where no instance, k for the k-th kept instance; boxes (K, 4) float (xmin, ymin, xmax,
    ymax) pixels of the kept instances; masks (K, 64, 64) their decoded probabilities."""

    ids: torch.Tensor
    boxes: torch.Tensor
    masks: torch.Tensor


def box_iou(a: torch.Tensor, b: torch.Tensor) -> float:
    """IoU of two (xmin, ymin, xmax, ymax) boxes."""
    w = (torch.minimum(a[2], b[2]) - torch.maximum(a[0], b[0])).clamp(min=0)
    h = (torch.minimum(a[3], b[3]) - torch.maximum(a[1], b[1])).clamp(min=0)
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def dice(a: torch.Tensor, b: torch.Tensor) -> float:
    """Soft Dice of two probability masks, smoothed by 0.01 (as the reference)."""
    return float(2 * ((a * b).sum() + 0.01) / (a.sum() + b.sum() + 0.01))


def place_instances(tok, instances: Sequence[Instance], *, image_size: int = 224) -> InstanceMap:
    """Decode and place ``instances`` (boxes in pixels of an ``image_size`` frame) with the mask tokenizer ``tok``
    (any tokenizer whose ``decode`` maps (N, 16) ids to (N, S, S) probabilities). See the module's steps. Boxes
    that are empty or start outside the frame are skipped; parts past its right or bottom edge are cut."""
    size = image_size
    empty = InstanceMap(torch.zeros(size, size, dtype=torch.long), torch.zeros(0, 4), torch.zeros(0, 64, 64))
    valid = [i for i in instances if 0 <= i.box[0] < i.box[2] and 0 <= i.box[1] < i.box[3]]
    if not valid:
        return empty
    boxes = torch.tensor([i.box for i in valid], dtype=torch.float32)
    order = torch.argsort((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), descending=True, stable=True)
    codes = torch.tensor([valid[int(k)].codes for k in order], dtype=torch.long)
    probs = tok.decode(codes).float()  # (N, S, S)
    groups: list[tuple[list[torch.Tensor], list[torch.Tensor]]] = []
    for mask, box in zip(probs, boxes[order], strict=True):
        if float(mask.max() - mask.min()) < MIN_SPAN:
            continue
        for masks, bxs in groups:
            if dice(masks[0], mask) > DEDUP_DICE and box_iou(bxs[0], box) > DEDUP_IOU:
                masks.append(mask)
                bxs.append(box)
                break
        else:
            groups.append(([mask], [box]))
    if not groups:
        return empty
    ids = torch.zeros(size, size, dtype=torch.long)
    kept_boxes, kept_masks = [], []
    for k, (masks, bxs) in enumerate(groups, start=1):
        mask, box = torch.stack(masks).mean(0), torch.stack(bxs).mean(0)
        x0, y0, x1, y1 = (int(v) for v in box)  # truncation, as the reference's astype(int)
        inside = F.interpolate(mask[None, None], size=(y1 - y0, x1 - x0), mode="bicubic", align_corners=False)[0, 0]
        inside = inside[: max(0, min(y1, size) - y0), : max(0, min(x1, size) - x0)] > 0.5
        region = ids[y0:y0 + inside.shape[0], x0:x0 + inside.shape[1]]
        region[inside] = k
        kept_boxes.append(box)
        kept_masks.append(mask)
    return InstanceMap(ids, torch.stack(kept_boxes), torch.stack(kept_masks))
