"""The nearest gallery captions of predicted global vectors: what a DINOv2 / ImageBind global "says" in words.

A released 4M-21 predicts global vectors (``tok_dinov2_global``: 768 values, ``tok_imagebind_global``: 1024) that
mean nothing to a person as numbers. Given a gallery of such vectors of captioned images (a `GalleryIndex` folder),
each predicted vector is answered with the captions of its ``k`` nearest gallery items::

    polymodal generate --model EPFL-VILAB/4M-21_B --from rgb=photo.jpg --plan rgb_to_all --out out/ \\
        --index runs/dinov2_gallery --k 5

writes ``out/tok_dinov2_global_captions.json`` beside ``tok_dinov2_global.json`` and prints the captions. The same
works for any pipeline's vector output (the shipped model's ``tok_minilm_global`` with a world gallery).

A gallery's captions are its keys when they are strings (build one with ``GalleryIndex(vectors, keys=captions,
modality="dinov2_global").save(folder)``), else the ``caption`` of the world sample each integer key names, in the
index's world folder (`GalleryIndex.from_world`; ``polymodal retrieve build``). Every problem is a `PipelineError`
(a ValueError) found before generation starts, so nothing is written half.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..modalities import Kind
from ..pipeline import Pipeline, PipelineError
from ..pipeline.official import FAMILIES, ReleaseTokenizers
from ..tokenizers.mlp import MLPTokenizer
from ..viz.decode import base_name
from .index import GalleryIndex

CAPTIONS_SUFFIX = "_captions.json"


def is_vector_domain(pipe: Pipeline, name: str) -> bool:
    """Whether domain ``name`` is a global vector: an `MLPTokenizer`'s, or a released model's ``tok_*_global``
    (a Bottleneck-MLP VQ-VAE). Decided from the domain for a release, so that asking loads no tokenizer."""
    if isinstance(pipe.tokenizers, ReleaseTokenizers):
        return (FAMILIES.get(base_name(name)) == ("VQ-VAE", "vector") and name in pipe.tokenizers
                and pipe.model.config.modality(name).kind is Kind.IMAGE_TOKENS)
    return isinstance(pipe.tokenizers.get(name), MLPTokenizer)


def vector_width(pipe: Pipeline, name: str) -> int:
    """The width of the vectors of a `is_vector_domain` domain (a released model's tokenizer loads here)."""
    tok = pipe.tokenizers[name]
    return tok.cfg.in_dim if isinstance(tok, MLPTokenizer) else tok.cfg.in_channels


@dataclass(frozen=True)
class CaptionGallery:
    """The gallery of one vector output: ``index`` (its folder ``path``) and the caption of each of its rows."""

    domain: str
    index: GalleryIndex
    path: str
    captions: list[str]


def caption_galleries(pipe: Pipeline, specs: Iterable[str | Path], *, outputs: Iterable[str], k: int = 5) -> dict[
        str, CaptionGallery]:
    """domain -> its gallery, from ``[DOMAIN=]FOLDER`` items (what ``--index`` takes). Without ``DOMAIN=``, the
    output whose base name is the index's modality (``dinov2_global`` -> ``tok_dinov2_global``). Checked: the
    domain is a vector output among ``outputs`` (this run's targets), the widths agree, captions can be read,
    the gallery holds ``k`` items."""
    outputs, found = list(outputs), {}
    vectors = [n for n in outputs if is_vector_domain(pipe, n)]
    for spec in specs:
        domain, sep, folder = str(spec).partition("=")
        if not sep:
            domain, folder = "", str(spec)
        try:
            index = GalleryIndex.load(folder)
        except (OSError, ValueError, KeyError) as e:
            raise PipelineError(f"--index {spec}: {e.args[0] if isinstance(e, KeyError) else e}") from None
        if sep:
            domain = pipe.resolve(domain, output=True)
        else:
            same = [n for n in vectors if index.modality in (n, base_name(n).removeprefix("tok_"))]
            if len(same) != 1:
                raise PipelineError(f"--index {spec}: the index holds {index.modality or 'unnamed vectors'}, and "
                                    f"this run's global vectors are {', '.join(vectors) or 'none'}: give the "
                                    "output as --index DOMAIN=FOLDER")
            domain = same[0]
        if domain not in vectors:
            raise PipelineError(f"--index {spec}: {domain} is not a global vector this run predicts (those are: "
                                f"{', '.join(vectors) or 'none'})")
        if domain in found:
            raise PipelineError(f"--index {spec}: {domain} has a gallery already ({found[domain].path})")
        width = vector_width(pipe, domain)
        if width != index.dim:
            raise PipelineError(f"--index {spec}: {domain} predicts vectors of {width}, the index holds vectors of "
                                f"{index.dim}")
        check_k(k, index, folder)
        found[domain] = CaptionGallery(domain, index, folder, gallery_captions(index, folder))
    return found


def check_k(k: Any, index: GalleryIndex, folder: str) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= len(index):
        raise PipelineError(f"--k: must be a whole number from 1 to the gallery size {len(index)} ({folder}), "
                            f"got {k!r}")


def gallery_captions(index: GalleryIndex, folder: str) -> list[str]:
    """The caption of each gallery row: its string key, or its world sample's caption (integer keys)."""
    if isinstance(index.keys[0], str):
        return list(index.keys)
    if not index.source:
        raise PipelineError(f"--index {folder}: its keys are sample numbers and it names no world folder to read "
                            "their captions from; key a gallery by its captions (GalleryIndex(vectors, keys=captions))")
    from ..data.world import ShardError, read_info, read_sample

    try:
        if "caption" not in read_info(index.source)["modalities"]:
            raise PipelineError(f"--index {folder}: its world folder {index.source} stores no captions")
        return [str(read_sample(index.source, int(k), modalities=["caption"])["caption"]) for k in index.keys]
    except (OSError, ShardError, IndexError, KeyError) as e:
        raise PipelineError(f"--index {folder}: the captions of its world folder {index.source} cannot be read "
                            f"({e})") from None


def nearest_captions(values: Mapping[str, Any], galleries: Mapping[str, CaptionGallery], *, k: int = 5) -> dict[
        str, list[list[dict]]]:
    """domain -> per sample, its ``k`` nearest gallery items best first: ``{"caption", "score"}`` (score: cosine
    similarity, or L2 distance, as the index's metric), and ``"key"``, the world sample's number, for a world
    gallery."""
    out = {}
    for domain, g in galleries.items():
        check_k(k, g.index, g.path)
        vectors = torch.as_tensor(values[domain]).float().reshape(-1, g.index.dim)
        hits = g.index.search(vectors, k)
        out[domain] = [[{"caption": g.captions[i], "score": round(float(s), 4)} | ({} if key == g.captions[i] else
                                                                                   {"key": key})
                        for i, s, key in zip(row, scores, keys)]
                       for row, scores, keys in zip(hits.indices.tolist(), hits.scores.tolist(), hits.keys)]
    return out


def write_captions(out_dir: str | Path, nearest: Mapping[str, list[list[dict]]],
                   galleries: Mapping[str, CaptionGallery]) -> list[Path]:
    """``<domain>_captions.json`` beside each global's own file (``sample_<b>/`` in a batch, as `Outputs.save`)."""
    written = []
    for domain, per_sample in nearest.items():
        g = galleries[domain]
        for b, hits in enumerate(per_sample):
            folder = Path(out_dir) if len(per_sample) == 1 else Path(out_dir) / f"sample_{b}"
            path = folder / (domain.replace("@", "_").replace("/", "_") + CAPTIONS_SUFFIX)
            record = {"index": g.path, "metric": g.index.metric, "k": len(hits), "nearest": hits}
            path.write_text(json.dumps(record, indent=1) + "\n")
            written.append(path)
    return written


def summary_lines(nearest: Mapping[str, list[list[dict]]]) -> list[str]:
    """One line per global and sample: its nearest captions with their scores."""
    lines = []
    for domain, per_sample in nearest.items():
        for b, hits in enumerate(per_sample):
            where = f" (sample {b})" if len(per_sample) > 1 else ""
            lines.append(f"{domain}{where} nearest captions: "
                         + " | ".join(f"{h['caption']!r} {h['score']:.3f}" for h in hits))
    return lines


__all__ = ["CAPTIONS_SUFFIX", "CaptionGallery", "caption_galleries", "gallery_captions", "is_vector_domain",
           "nearest_captions", "summary_lines", "vector_width", "write_captions"]
