"""Retrieval from user inputs in one call: a pipeline bundle predicts a global embedding, the gallery answers.

    from polymodal.retrieval import query

    q = query("weights/default", "runs/gallery", {"rgb": "scene.png", "caption": "two red cubes"}, k=5,
              out="matches.png")
    q.modality                 # the predicted output, e.g. "tok_minilm_global"
    q.result.hits.keys         # [[key, ...]] best first; q.result.hits.scores (B, k)

What `polymodal retrieve --model M --index I --from rgb=img.png` runs. The embedding is generated greedily
(MaskGIT, temperature 0: a global embedding is a few tokens, and a query should not depend on a draw), decoded to a
vector by the modality's tokenizer (an `MLPTokenizer`, a released model's Bottleneck-MLP VQ-VAE) and searched with
`GalleryIndex.search`. Every bad input raises a `PipelineError` (a ValueError) naming what is wrong; the CLI prints
it and exits with code 2.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from ..pipeline import Pipeline, PipelineError
from ..viz import save_png
from .captions import is_vector_domain, vector_width
from .index import GalleryIndex
from .retrieve import Retrieval, draw_matches, query_vectors, world_pictures


@dataclass(frozen=True)
class Query:
    """modality: the predicted embedding output; result: vectors and hits; picture: the matches drawn (one row per
    query: its inputs, then its matches); path: where the picture was written, if it was."""

    modality: str
    result: Retrieval
    picture: Image.Image
    path: Path | None = None


def embedding_outputs(pipe: Pipeline) -> list[str]:
    """The model outputs that decode to one vector each (``tok_*_global``): those with an `MLPTokenizer`, and a
    released 4M model's DINOv2 / ImageBind globals (`captions.is_vector_domain`; none loads here)."""
    return [n for n in pipe.outputs if is_vector_domain(pipe, n)]


def pick_modality(pipe: Pipeline, index: GalleryIndex, modality: str | None = None) -> str:
    """The embedding output to predict: ``modality`` (a name or short name), else the one matching the index's
    modality (``minilm_global`` -> ``tok_minilm_global``), else the only one; checked against the index."""
    found = embedding_outputs(pipe)
    if not found:
        raise PipelineError(f"this model has no global-embedding output to retrieve with (outputs: "
                            f"{', '.join(pipe.outputs)}; it needs a tok_*_global output and its vector tokenizer)")
    if modality is not None:
        name = pipe.resolve(modality, output=True)
        if name not in found:
            raise PipelineError(f"{name} is not a global-embedding output (with a vector tokenizer) of this model; "
                                f"those are: {', '.join(found)}")
    else:
        same = [n for n in found if index.modality and index.modality in (n, n.removeprefix("tok_").split("@")[0])]
        if not same and len(found) > 1:
            raise PipelineError(f"the index holds {index.modality or 'unnamed vectors'}; choose the model output "
                                f"to predict with --modality ({', '.join(found)})")
        name = (same or found)[0]
    base = name.removeprefix("tok_").split("@")[0]
    if index.modality and index.modality not in (name, base):
        raise PipelineError(f"the index was built from {index.modality}, but {name} predicts {base}: build the "
                            f"index from {base} (polymodal retrieve build --modality {base})")
    dim = vector_width(pipe, name)
    if dim != index.dim:
        raise PipelineError(f"{name} decodes to vectors of {dim}, the index holds vectors of {index.dim}"
                            + (f" ({index.modality})" if index.modality else ""))
    return name


def _key_picture(key: Hashable) -> Any:
    return f"#{key}"  # a gallery without a world folder to show: its keys as text


def query(model: str | os.PathLike | Pipeline, index: str | os.PathLike | GalleryIndex, inputs: Mapping[str, Any],
          *, modality: str | None = None, k: int = 5, steps: int | None = None, seed: int = 0,
          resize: bool = True, notify: Callable[[str], None] | None = None, out: str | os.PathLike | None = None,
          gallery: str | os.PathLike | None = None, size: int = 96) -> Query:
    """Predict a global embedding from ``inputs`` (user values, as `Pipeline.generate` takes them) and search
    ``index``.

    Args:
        model: a `Pipeline` or a folder `Pipeline.from_pretrained` takes (a bundle: model and tokenizers).
        index: a `GalleryIndex` or its folder (`polymodal retrieve build`).
        modality: the embedding output to predict (default: the one matching the index, see `pick_modality`).
        k: matches per query.
        steps: MaskGIT steps for the embedding's tokens (default: the pipeline's: one step when an image of the
            scene is among the inputs, else as many as the tokens take, up to 8).
        out: a PNG to write the matches to; gallery: the world folder whose pictures show the matches (default
            the index's own; its keys as text without one).
    """
    if not inputs:
        raise PipelineError("nothing to retrieve from: give at least one input (--from rgb=img.png)")
    pipe = model if isinstance(model, Pipeline) else Pipeline.from_pretrained(model)
    index = index if isinstance(index, GalleryIndex) else GalleryIndex.load(index)
    name = pick_modality(pipe, index, modality)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= len(index):
        raise PipelineError(f"k must be an integer from 1 to the gallery size {len(index)}, got {k!r}")
    # steps None: the pipeline's own choice (`pipeline.plans.targets_plan`): one greedy step from an image of the
    # scene, else the most MaskGIT steps the target's tokens take, up to 8. A fixed count would be refused for
    # token counts whose cosine schedule cannot spread it (8 steps over 16 tokens).
    outputs = pipe.generate(inputs, [name], steps=steps, temperature=0.0, seed=seed, resize=resize, notify=notify)
    vectors = query_vectors(outputs.values[name], modality=name)  # decoded by the pipeline: (B, D) floats
    result = Retrieval(vectors, index.search(vectors, k))
    source = (gallery or index.source) if not isinstance(index.keys[0], str) else None  # str keys: no sample numbers
    gallery_picture = world_pictures(source) if source else _key_picture
    rows = [[t for t in outputs.tiles(b, size=size, short=True) if t[0].startswith("in: ")]
            for b in range(vectors.shape[0])]
    img = draw_matches(result, gallery_picture, queries=rows, size=size, kind="rgb" if source else "caption")
    path = save_png(img, Path(out)) if out is not None else None
    return Query(name, result, img, path)


__all__ = ["Query", "embedding_outputs", "pick_modality", "query"]
