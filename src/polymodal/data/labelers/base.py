"""Pseudo-labelers: an RGB image in, some modalities out; each says its name and version for the dataset's record.

A labeler is any object with ``name``, ``version``, ``outputs`` (the fields it writes) and ``__call__(rgb) ->
{field: value}`` on a uint8 (H, W, 3) image. Values follow the world's encodings (`world.codec`), so a labeled
dataset reads, crops and tokenizes like a world dataset:

==============  ===========================================================================================
labeler         writes
==============  ===========================================================================================
canny           ``canny_edge``: OpenCV Canny on the grayscale image, uint8 (H, W) 0/255 (the world's thresholds)
palette         ``color_palette``: k-means colours and weights (k from 1 to 7, drawn per image from its key)
metadata        ``metadata``: 4M's image statistics (colorfulness, brightness, contrast, saturation, entropy) and
                the original size
hf-*            see `labelers.hf`: depth, semseg, det, caption, a feature vector from a transformers pipeline
==============  ===========================================================================================
"""

from __future__ import annotations

import zlib
from pathlib import Path

import cv2
import numpy as np

from ...hub import split_repo_id
from ..world import labels as world_labels


def _cv2_version() -> str:
    return f"opencv {cv2.__version__}"


class CannyLabeler:
    name, outputs = "canny", ("canny_edge",)

    def __init__(self, low: int = world_labels.CANNY_LOW, high: int = world_labels.CANNY_HIGH):
        self.low, self.high = low, high
        self.version = f"{_cv2_version()}, thresholds {low}/{high}"

    def __call__(self, rgb: np.ndarray, *, key: str = "") -> dict:
        return {"canny_edge": cv2.Canny(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), self.low, self.high)}


class PaletteLabeler:
    name, outputs = "palette", ("color_palette",)
    version = "k-means++ on 256 pixels, 10 Lloyd steps, k in 1..7 (polymodal.data.world.labels.color_palette)"

    def __call__(self, rgb: np.ndarray, *, key: str = "") -> dict:
        rng = np.random.default_rng(zlib.crc32(key.encode("utf-8")))  # same image key, same palette
        return {"color_palette": world_labels.color_palette(rgb, rng)}


class MetadataLabeler:
    name, outputs = "metadata", ("metadata",)
    version = f"image statistics (polymodal.data.world.labels.image_statistics), {_cv2_version()}"

    def __call__(self, rgb: np.ndarray, *, key: str = "", original_size: tuple[int, int] | None = None) -> dict:
        stats = world_labels.image_statistics(rgb)
        h, w = original_size or rgb.shape[:2]
        meta = {"original_width": int(w), "original_height": int(h), **stats}
        return {"metadata": {k: (round(v, 5) if isinstance(v, float) else v) for k, v in meta.items()}}


OFFLINE = {"canny": CannyLabeler, "palette": PaletteLabeler, "metadata": MetadataLabeler}


def build_labelers(names, models: dict[str, str] | None = None) -> list:
    """Labelers by name: the offline ones, and ``hf-depth``, ``hf-segmentation``, ``hf-detection``,
    ``hf-caption``, ``hf-feature`` with their model (a local folder or a hub id) from ``models[name]``."""
    models = dict(models or {})
    out = []
    for name in names:
        if name in OFFLINE:
            if name in models:
                raise ValueError(f"labeler {name} takes no model (--model {name}={models[name]}); only hf-* "
                                 "labelers do")
            out.append(OFFLINE[name]())
            continue
        from .hf import TASKS, PipelineLabeler

        if name not in TASKS:
            raise ValueError(f"unknown labeler {name!r}; known: {', '.join([*OFFLINE, *TASKS])}")
        if name not in models:
            raise ValueError(f"labeler {name} needs a model: --model {name}=FOLDER_OR_HUB_ID")
        model = models[name]
        if not Path(model).expanduser().exists() and split_repo_id(model) is None:  # else transformers' own words
            raise ValueError(f"labeler {name}: --model {name}={model!r}: no such folder, and not a Hub repo id "
                             "(owner/name)")
        out.append(PipelineLabeler(name, model))
    unknown = sorted(set(models) - set(names))
    if unknown:
        raise ValueError(f"models given for labelers not asked for: {', '.join(unknown)}")
    clash = [f for f in {f for lab in out for f in lab.outputs} if sum(f in lab.outputs for lab in out) > 1]
    if clash:
        raise ValueError(f"two labelers write {', '.join(clash)}")
    return out
