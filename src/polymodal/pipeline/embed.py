"""4M as an encoder from user values: `Pipeline.embed` and ``polymodal embed`` (a folder of images -> a file).

    feats = pipe.embed({"rgb": "scene.png"})            # model.features.EncoderFeatures: tokens, valid, pooled, ...
    feats = pipe.embed({"rgb": [img0, img1], "caption": ["a red cube", "two spheres"]})   # a batch, any inputs
    embed_folder(pipe, "photos/", "features.safetensors", batch_size=32, tokens=True)

Values go through the pipeline's own input conversion and tokenizers (`Pipeline.conditions`: files, PIL images,
arrays; resized with a notice), every position of each given modality is an input, and the features are the
encoder's (`FourM.encode_features`), computed without gradients.

``features.safetensors`` holds ``features`` (N, D) float32, the mean over each image's tokens, and with ``tokens``
also ``tokens`` (N, T, D) (an RGB image gives the same T tokens in grid order, row-major); its metadata holds
``files`` (JSON list: the images' paths below the folder, row for row), ``skipped`` (JSON list of [file, reason]),
``model``, ``input`` (the model domain the images fed) and ``pooling``. Images are searched recursively and sorted by
path, as ``polymodal data import`` does; an unreadable image is skipped, named, and listed at the end, also as
``data import`` does; a folder without images, or with none readable, is refused and nothing is written.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import torch

from ..data.batch import Batch, ModalityTokens
from ..data.images import IMAGE_SUFFIXES
from ..modalities import Kind
from ..model.features import EncoderFeatures
from ..tokenizers.text_layout import EOS, PAD
from .inputs import PipelineError, read_image
from .outputs import check_out

if TYPE_CHECKING:
    from .bundle import Pipeline



def input_batch(model, conditions: Mapping[str, Any]) -> Batch:
    """Conditions by domain (`Pipeline.conditions`) -> a `Batch` in which every given token is an input: image
    tokens (B, N) ids, pixels (B, C, H, W), sequences (B, L) ids read up to their [EOS] (kept) without [PAD],
    vectors (B, L, E); a `ModalityTokens` is taken as it is (its ``is_input`` says what is given)."""
    items = {}
    for name, value in conditions.items():
        mod = model.config.modality(name)
        if isinstance(value, ModalityTokens):
            items[name] = value
            continue
        v = torch.as_tensor(value)
        if mod.kind is Kind.SEQUENCE:
            v = v.long()
            after_eos = (v == EOS).long().cumsum(dim=1) - (v == EOS).long() > 0
            used = (v != PAD) & ~after_eos
            items[name] = ModalityTokens(v, used, torch.zeros_like(used))
        elif mod.kind is Kind.IMAGE_TOKENS:
            items[name] = ModalityTokens.full_input(v.reshape(v.shape[0], -1).long())
        else:
            items[name] = ModalityTokens.full_input(v, mod.num_tokens if mod.is_grid else None)
    sizes = {t.batch_size for t in items.values()}
    if len(sizes) > 1:  # one given once (batch 1) beside a batch of others: repeat it, as generation does
        b = max(sizes)
        rep = lambda t: t.expand(b, *t.shape[1:])  # noqa: E731
        items = {n: t if t.batch_size == b else ModalityTokens(rep(t.values), rep(t.is_input), rep(t.is_target))
                 for n, t in items.items()}
    return Batch(items)


def embed(pipe: Pipeline, inputs: Mapping[str, Any], *, resize: bool = True,
          notify: Callable[[str], None] | None = None, paths: bool = True) -> EncoderFeatures:
    """`Pipeline.embed`: the encoder's features of user ``inputs`` (values as `Pipeline.generate` takes them)."""
    if not inputs:
        raise PipelineError(f"nothing to embed: give at least one input ({', '.join(pipe.inputs)})")
    conds = pipe.conditions(inputs, resize=resize, notify=notify, paths=paths)
    batch = input_batch(pipe.model, conds)
    try:
        pipe.model.check_batch(batch)
    except ValueError as e:  # a token id outside the vocabulary, a sequence too long: the message names it
        raise PipelineError(str(e)) from None
    with torch.no_grad():
        return pipe.model.encode_features(batch, check=False)


class Embedded(NamedTuple):
    """What `embed_folder` wrote: the file, the images embedded (in row order) and those skipped (file, reason)."""

    path: Path
    files: list[str]
    skipped: list[tuple[str, str]]
    dim: int


def list_images(folder: str | os.PathLike) -> list[str]:
    """Image files below ``folder`` (recursive, sorted), as paths relative to it; FileNotFoundError if none."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder of images")
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*")
                   if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise FileNotFoundError(f"no {'/'.join(IMAGE_SUFFIXES)} images under {root}")
    return files


def check_out_file(out: str | os.PathLike, what: str = "out") -> Path:
    """`check_out` of the .safetensors file to write, before any image is embedded."""
    return check_out(out, what, file=".safetensors")


def embed_folder(pipe: Pipeline, images: str | os.PathLike, out: str | os.PathLike, *, batch_size: int = 32,
                 tokens: bool = False, progress: bool = False, notify: Callable[[str], None] | None = None,
                 model_name: str = "") -> Embedded:
    """Embed every image under ``images`` into ``out`` (the module docstring's layout), written atomically."""
    from safetensors.torch import save_file
    from tqdm import tqdm

    if batch_size < 1:
        raise PipelineError(f"batch size must be >= 1, got {batch_size}")
    files = list_images(images)
    out = check_out_file(out)
    root = Path(images)
    name = pipe.resolve("rgb")
    done, skipped, pooled, grids = [], [], [], []
    with tqdm(total=len(files), unit="image", desc="embed", disable=not progress, dynamic_ncols=True) as bar:
        for start in range(0, len(files), batch_size):
            chunk, pictures = files[start:start + batch_size], []
            for rel in chunk:
                try:
                    pictures.append(read_image(root / rel, name))
                    done.append(rel)
                except PipelineError as e:  # corrupt, truncated, not an image: named now, listed at the end
                    skipped.append((rel, str(e)))
                    if progress:  # named beside the bar as it happens; --quiet: in the final list only
                        bar.write(f"skipped: {e}")
            if pictures:
                feats = embed(pipe, {name: pictures}, notify=notify)
                pooled.append(feats.pooled.float().cpu())
                if tokens:
                    grids.append(feats.tokens.float().cpu())
            bar.update(len(chunk))
    if not done:
        raise PipelineError(f"none of the {len(files)} images under {root} could be read (first: {skipped[0][0]}: "
                            f"{skipped[0][1]})")
    out.parent.mkdir(parents=True, exist_ok=True)
    tensors = {"features": torch.cat(pooled)}
    if tokens:
        tensors["tokens"] = torch.cat(grids)
    meta = {"files": json.dumps(done), "skipped": json.dumps(skipped), "model": model_name, "input": name,
            "pooling": "mean over the encoder's tokens (after encoder_norm)"}
    tmp = out.with_name(out.name + ".tmp")
    try:
        save_file(tensors, str(tmp), metadata=meta)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)  # nothing half-written left behind when the write or the rename fails
    return Embedded(out, done, skipped, int(tensors["features"].shape[1]))
