"""Any-to-any retrieval: predict a global embedding from any inputs, search the gallery, draw the matches.

4M-21 retrieves by predicting a global-embedding modality (DINOv2, ImageBind; here the world's ``minilm_global``
caption embedding) from whatever is given (an image, a caption, boxes, ...) and searching a gallery of such
vectors. The prediction is a callable so that any sampler fits (`polymodal.generation` provides one from a model)::

    predict = model_predictor(model, "tok_minilm_global")          # or any conditions -> ids / vectors callable
    hits = retrieve(predict, index, conditions, modality="tok_minilm_global", k=5, tokenizer=tok)
    save_png(draw_matches(hits, world_pictures("data/world64")), "matches.png")

``predict(conditions)`` returns either token ids (B, N) of the modality, decoded to vectors by its tokenizer, or
the vectors (B, D) themselves.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..tokenizers.base import Tokenizer
from ..viz import decode_one, picture, tile_grid
from .index import GalleryIndex, SearchResult

Predict = Callable[[Mapping[str, Any]], torch.Tensor]


@dataclass(frozen=True)
class Retrieval:
    """vectors (B, D): the predicted query embeddings; hits: their nearest gallery items (see `SearchResult`)."""

    vectors: torch.Tensor
    hits: SearchResult


def query_vectors(output: torch.Tensor, *, modality: str, tokenizer: Tokenizer | None = None) -> torch.Tensor:
    """A prediction as (B, D) float vectors: integer ids go through ``tokenizer`` (a vector tokenizer), floats are
    taken as they are."""
    if not isinstance(output, torch.Tensor):
        output = torch.as_tensor(output)
    if output.dtype.is_floating_point:
        return output.float().reshape(output.shape[0], -1) if output.ndim > 1 else output.float()[None]
    if tokenizer is None:
        raise ValueError(f"predict returned token ids {tuple(output.shape)} for {modality!r}: pass its tokenizer "
                         "(tokenizer=...) to decode them to vectors")
    vectors = decode_one(modality, output, {modality: tokenizer})
    if not isinstance(vectors, torch.Tensor) or vectors.ndim != 2:
        raise ValueError(f"the tokenizer of {modality!r} decodes to {type(vectors).__name__}, not (B, D) vectors: "
                         "retrieval needs a global-embedding (vector) modality")
    return vectors.float()


def retrieve(predict: Predict, index: GalleryIndex, conditions: Mapping[str, Any], *, modality: str, k: int = 5,
             tokenizer: Tokenizer | None = None) -> Retrieval:
    """Predict ``modality`` from ``conditions`` with ``predict``, decode it to vectors and search ``index``.

    Args:
        predict: conditions -> (B, N) token ids of ``modality`` or (B, D) vectors (e.g. a sampler over a model).
        index: the gallery, built on the same embedding space (its vectors' dimension is checked).
        conditions: whatever ``predict`` takes (typically modality name -> values or ids).
        modality: the predicted global-embedding modality, e.g. ``tok_minilm_global``.
        k: matches per query.
        tokenizer: the modality's vector tokenizer, needed when ``predict`` returns ids.
    """
    vectors = query_vectors(predict(conditions), modality=modality, tokenizer=tokenizer)
    return Retrieval(vectors, index.search(vectors, k))


def model_predictor(model, modality: str, *, steps: int = 8, plan=None, seed: int | None = None) -> Predict:
    """A `Predict` that generates ``modality`` with `polymodal.generation.generate`: by default one greedy MaskGIT
    step of ``steps`` iterations (global embeddings are a few tokens); ``plan`` replaces it (e.g. a chain that
    decodes other modalities first). ``seed`` is passed on for sampled plans."""
    from ..generation import Plan, Step, generate

    plan = plan if plan is not None else Plan((Step(modality, "maskgit", num_steps=steps, temperature=0.0),))
    if modality not in plan.targets:
        raise ValueError(f"the plan decodes {', '.join(plan.targets)}, not {modality!r}")

    def predict(conditions: Mapping[str, Any]) -> torch.Tensor:
        return generate(model, conditions, plan, seed=seed)[modality]

    return predict


def world_pictures(path: str | os.PathLike, *, modality: str = "rgb") -> Callable[[Hashable], np.ndarray]:
    """key -> the ``modality`` image of that sample of a world dataset folder (what `draw_matches` shows)."""
    from ..data.world import read_sample

    def get(key: Hashable) -> np.ndarray:
        return read_sample(path, int(key), modalities=[modality])[modality]

    return get


def draw_matches(result: Retrieval, gallery_picture: Callable[[Hashable], Any], *,
                 queries: Sequence[Sequence[tuple[str, Image.Image]]] | None = None, size: int = 96,
                 kind: str = "rgb") -> Image.Image:
    """One row per query: its own tiles (``queries[b]``, e.g. the conditions' pictures), then its matches, best
    first, titled ``#key: score`` (the tiles' small font all but swallows a plain space); ``gallery_picture(key)``
    gives a value of ``kind`` (default an RGB image)."""
    hits = result.hits
    if queries is not None and len(queries) != len(hits.keys):
        raise ValueError(f"draw_matches: {len(hits.keys)} queries searched but {len(queries)} query tile rows")
    rows = []
    for b, (keys, scores) in enumerate(zip(hits.keys, hits.scores.tolist())):
        row = list(queries[b]) if queries is not None else []
        row += [(f"#{key}: {score:.3f}", picture(kind, gallery_picture(key), size=size))
                for key, score in zip(keys, scores)]
        rows.append(row)
    return tile_grid(rows, tile=size)
