"""Values in and out of a released 4M model's tokenizers: conditions from user values, decoded outputs.

Decoding (`decode_release`), per output domain:

==========================  ============================================  ====================================
output                      decoded value (batched)                       picture kind
==========================  ============================================  ====================================
tok_rgb, tok_normal         DiVAE decode: (B, 3, S, S) rgb 0..1 / unit    rgb / normal
                            normals -1..1
tok_depth                   DiVAE decode: (B, S, S) standardized depth    relative_depth
tok_canny_edge, tok_sam_..  DiVAE decode: (B, S, S) 0..1                  edge
tok_semseg                  (B, S, S) labels 0..133 (COCO panoptic)       coco_semseg
tok_clip/dinov2/imagebind   (B, C, g, g) feature maps                     feature (3-component PCA)
tok_*_global                (B, D) vectors                                vector
sam_instance                B `viz.official.SamInstances` (masks placed   sam_masks (the query points without
                            by `place_instances`)                         the mask tokenizer: sam_instance)
human_poses                 B lists of `viz.official.SMPLPerson`          smpl_poses
caption, det, metadata,     as every pipeline (`viz.decode_outputs`)      caption, det, metadata, ...
color_palette
==========================  ============================================  ====================================

A DiVAE decode is a diffusion: ``steps`` (default `DECODE_STEPS`, the reference's plotting defaults: 25 for RGB,
depth and normals, 10 for edges; its demo sampler passes 50 for all) with ``sampler`` "ddpm" (the reference's)
or "ddim" (deterministic, better at few steps), seeded with the generation seed, so a seed gives one picture.

Conditions (`release_condition`): RGB and edges from image files or arrays (0..1), depth from a grey image or an
array (any unit: the DiVAE standardizes it), normals from an RGB normal map ((n + 1) / 2) or a (3, H, W) array in
-1..1, segmentation from (H, W) label arrays, feature maps (C, g, g) and vectors (D,) as arrays. Each tokenizer
applies its own normalization (`tokenizers.ml4m`); the pipeline passes natural units and never normalizes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..config import ModelConfig
from ..modalities import Kind, Modality
from ..tokenizers.ml4m.divae import DiVAE
from ..tokenizers.ml4m.instances import place_instances
from ..tokenizers.ml4m.vqvae import OfficialVQVAE
from ..tokenizers.serializers import PersonPose
from ..viz.decode import TEXT, decode_outputs, value_kind
from ..viz.official import SamInstances, SMPLPerson, official_value_kind
from .inputs import PipelineError, fit, image_items, image_tensor, vectors
from .official import ReleaseTokenizers, domain_size

DECODE_STEPS = {"rgb": 25, "depth": 25, "normal": 25, "edge": 10, "raw": 25}
SAMPLERS = ("ddpm", "ddim")
MAX_DECODE_STEPS = 1000  # the DiVAEs' training steps


def check_decode_settings(steps: int | None, sampler: str | None, *, prefix: str = "") -> None:
    """``steps`` 1 to 1000 and ``sampler`` ddpm or ddim (None: the defaults); a PipelineError naming the setting."""
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int)
                              or not 1 <= steps <= MAX_DECODE_STEPS):
        raise PipelineError(f"{prefix}decode-steps: must be a whole number from 1 to {MAX_DECODE_STEPS}, got "
                            f"{steps!r}")
    if sampler is not None and sampler not in SAMPLERS:
        raise PipelineError(f"{prefix}sampler: must be one of {', '.join(SAMPLERS)}, got {sampler!r}")


def decode_release(cfg: ModelConfig, ids: Mapping[str, torch.Tensor], tokenizers: ReleaseTokenizers, *,
                   steps: int | None = None, sampler: str | None = None, seed: int = 0,
                   progress: bool = False) -> tuple[dict[str, Any], dict[str, str]]:
    """(values, picture kinds) of generated ids (see the module table); image tokens without a tokenizer stay
    ids on their grid (kind "tokens"). Each output's tokenizer is released once it is decoded (in low-memory mode,
    `ReleaseTokenizers.release`: one folder held at a time)."""
    check_decode_settings(steps, sampler)
    values, kinds = {}, {}
    names = list(ids)
    for i, name in enumerate(names):
        values[name], kinds[name] = _decode_one(cfg, name, ids[name].cpu(), tokenizers, steps=steps,
                                                sampler=sampler, seed=seed, progress=progress)
        tokenizers.release([name], later=names[i + 1:])
    return values, kinds


def _decode_one(cfg: ModelConfig, name: str, x: torch.Tensor, tokenizers: ReleaseTokenizers, *, steps: int | None,
                sampler: str | None, seed: int, progress: bool) -> tuple[Any, str]:
    """(value, picture kind) of one output's ids (B, N)."""
    mod = cfg.modality(name)
    if mod.kind is Kind.SEQUENCE:
        text = {name: tokenizers[TEXT]}
        decoded = decode_outputs({name: x}, text)[name]
        if name == "sam_instance" and name in tokenizers:
            return [placed(tokenizers[name], p) for p in decoded], "sam_masks"
        if name == "human_poses":
            tok = tokenizers[name] if name in tokenizers else None
            return [smpl_people(people, tok) for people in decoded], "smpl_poses"
        return decoded, value_kind(name, text)
    if name not in tokenizers:
        return x.reshape(x.shape[0], *mod.grid), "tokens"
    tok = tokenizers[name]
    if isinstance(tok, DiVAE):
        generator = torch.Generator().manual_seed(seed)
        value = tok.decode(x, steps=steps or DECODE_STEPS[tok.cfg.values], sampler=sampler or "ddpm",
                           generator=generator, image_size=domain_size(name), progress=progress)
    else:
        value = tok.decode(x)
    return value, official_value_kind(tok) or value_kind(name, {name: tok})


def placed(tok: OfficialVQVAE, points: list) -> SamInstances:
    """One sample's decoded query points with their instance masks placed on the 224-pixel frame."""
    found = place_instances(tok, [inst for p in points for inst in p.instances], image_size=224)
    return SamInstances(points=list(points), ids=found.ids, boxes=found.boxes)


def smpl_people(people: list[PersonPose], tok: OfficialVQVAE | None) -> list[SMPLPerson]:
    """4M-21's people in SMPL's terms (`viz.official.SMPLPerson`): the pose codes decoded to 23 rotation
    matrices by the pose tokenizer ``tok`` (None: codes only)."""
    body = None
    if tok is not None and people:
        codes = torch.tensor([list(p.pose) for p in people], dtype=torch.long)
        body = tok.decode(codes).reshape(len(people), 23, 3, 3).tolist()
    return [SMPLPerson(box=tuple(float(c) for c in p.box), betas=[float(v) for v in p.shape],
                       global_orient=np.asarray(p.global_orient, dtype=np.float64).reshape(3, 3).tolist(),
                       camera=[float(v) for v in p.camera], pose_codes=[int(c) for c in p.pose],
                       body_pose=None if body is None else body[k]) for k, p in enumerate(people)]


def release_condition(name: str, mod: Modality, tok: Any, value: Any, *, resize: bool,
                      notify: Callable[[str], None]) -> tuple[torch.Tensor, Any, str]:
    """(ids (B, N), shown values, picture kind) of a user value for a released tokenizer's domain."""
    kind = official_value_kind(tok)
    if isinstance(tok, OfficialVQVAE) and tok.cfg.values == "vector":
        v = vectors(name, value)
        v = v.reshape(-1, v.shape[-1])
        return tok.encode(v), v, "vector"
    values = torch.stack([_item(name, tok, item, resize=resize, notify=notify) for item in image_items(value, name)])
    shown = values if tok.cfg.values != "normal" else values.clamp(-1, 1)
    return tok.encode(values), shown, kind


def _item(name: str, tok: Any, item: Any, *, resize: bool, notify: Callable[[str], None]) -> torch.Tensor:
    """One value in the tokenizer's natural units at the domain's size."""
    v = tok.cfg.values
    size = tok.cfg.input_size if isinstance(tok, OfficialVQVAE) else domain_size(name) or tok.cfg.image_size
    from_file = isinstance(item, (str, Path, Image.Image))
    if v in ("rgb", "edge", "depth") and (from_file or v != "depth"):
        x, given = image_tensor(item, name, gray=v != "rgb")
        return fit(x, size, name, resize=resize, notify=notify, given=given)
    if v == "normal" and from_file:
        x, given = image_tensor(item, name)
        return fit(2 * x - 1, size, name, resize=resize, notify=notify, given=given)
    if from_file:
        raise PipelineError(f"{name}: {v} values are read from arrays or tensors, not image files")
    x = torch.as_tensor(np.asarray(item) if not isinstance(item, torch.Tensor) else item)
    if v == "normal" and x.ndim == 3 and x.shape[-1] == 3 and x.shape[0] != 3:
        x = x.permute(2, 0, 1)
    if v == "semseg":
        return fit(x.long(), size, name, resize=resize, notify=notify, nearest=True)
    if v == "feature":
        if x.ndim != 3 or tuple(x.shape[-2:]) != (size, size):
            raise PipelineError(f"{name}: expected a feature map (C, {size}, {size}), got shape {tuple(x.shape)}")
        return x.float()
    return fit(x.float(), size, name, resize=resize, notify=notify)
