"""Image metadata in 4M-21's format: one ``v1=<field id> v0=<bin>`` chunk per field.

Field ids and binning are 4M's (``fourm/data/modality_transforms.py: MetadataTransform``):

====  ======================  ============================================  ==============================
id    field                   bin                                           decoded as
====  ======================  ============================================  ==============================
0, 1  original_width, height  ``value // 32`` (clipped to 0..999)           ``bin * 32`` (lower edge)
2-8   caption_n_chars/words/  the count itself, clipped to 0..999           the count
      sentences, n_humans,
      n_sam_instances, n_coco_instances, coco_instance_diversity; 16 semantic_diversity
9-15  colorfulness (0..150), brightness (0..255), contrast (0..127), saturation (0..255), entropy (0..10),
17,   walkability (0..1), objectness (0..1), geometric_complexity (0..0.75), occlusion_score (0..0.25):
18    ``int((clip(v) - lo) / (hi - lo) * 49)``, 50 bins                     the bin's centre
19    watermark_score         bins split at 0.5                             0.25, 0.75
20    aesthetic_score         bins split at 4.5, 5.5                        4.0, 5.0, 6.0
====  ======================  ============================================  ==============================

Values above a binning range are clipped into its last bin, as 4M does; values outside what a field can be
(a negative count, a fraction above 1, NaN) raise a SerializationError naming the field. The chunks come in the
order of the given dict, or shuffled with ``generator`` (4M shuffles them for training). Every 4M field takes
2 tokens, so 19 fields (all the world defines) + [EOS] fit the 40 tokens of ``metadata``; with all 21, the whole
chunks that fit are kept and [EOS] is dropped (4M's rule). Example::

    {"original_width": 64, "n_humans": 2, "brightness": 128.0} -> "v1=0 v0=2 v1=5 v0=2 v1=10 v0=24"
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from .common import (
    Item,
    Piece,
    SerializationError,
    Serializer,
    broken,
    check_int,
    check_number,
    chunks,
    coord,
    shuffled,
)
from .common import describe as describe_item

INF = math.inf


@dataclass(frozen=True)
class MetadataField:
    """One 4M metadata field. kind: ``image_dim`` | ``count`` | ``range`` (``lo..hi`` in ``bins`` bins) |
    ``manual`` (bin edges); ``domain``: the values the field can take at all."""

    name: str
    id: int
    kind: str
    lo: float = 0.0
    hi: float = 0.0
    bins: int = 0
    edges: tuple[float, ...] = ()
    representatives: tuple[float, ...] = ()
    domain: tuple[float, float] = (0.0, INF)

    def to_bin(self, value) -> int:
        v = check_number(value, f"metadata field {self.name!r}", *self.domain)
        if self.kind == "image_dim":
            return min(int(v) // IMAGE_DIM_BIN, 999)
        if self.kind == "count":
            return min(check_int(value, f"metadata field {self.name!r}", 0, 2 ** 62), 999)
        if self.kind == "range":
            t = (min(max(v, self.lo), self.hi) - self.lo) / (self.hi - self.lo)
            return int(t * (self.bins - 1))
        return sum(v >= e for e in self.edges)

    @property
    def num_bins(self) -> int:
        return {"image_dim": 1000, "count": 1000, "range": self.bins, "manual": len(self.edges) + 1}[self.kind]

    def from_bin(self, b: int) -> float | int:
        if self.kind == "image_dim":
            return b * IMAGE_DIM_BIN
        if self.kind == "count":
            return b
        if self.kind == "range":
            return min(self.lo + (b + 0.5) * (self.hi - self.lo) / (self.bins - 1), self.hi)
        return self.representatives[b]

    @property
    def tolerance(self) -> float:
        """Largest decode error for a value inside the binning range (image_dim: decoded <= value < +32)."""
        return {"image_dim": IMAGE_DIM_BIN, "count": 0, "range": (self.hi - self.lo) / (2 * (self.bins - 1)),
                "manual": INF}[self.kind]


IMAGE_DIM_BIN = 32
_COUNT, _RANGE_BINS = "count", 50
FIELDS: tuple[MetadataField, ...] = (
    MetadataField("original_width", 0, "image_dim"),
    MetadataField("original_height", 1, "image_dim"),
    MetadataField("caption_n_chars", 2, _COUNT),
    MetadataField("caption_n_words", 3, _COUNT),
    MetadataField("caption_n_sentences", 4, _COUNT),
    MetadataField("n_humans", 5, _COUNT),
    MetadataField("n_sam_instances", 6, _COUNT),
    MetadataField("n_coco_instances", 7, _COUNT),
    MetadataField("coco_instance_diversity", 8, _COUNT),
    MetadataField("colorfulness", 9, "range", 0, 150, _RANGE_BINS),
    MetadataField("brightness", 10, "range", 0, 255, _RANGE_BINS, domain=(0, 255)),
    MetadataField("contrast", 11, "range", 0, 127, _RANGE_BINS, domain=(0, 255)),
    MetadataField("saturation", 12, "range", 0, 255, _RANGE_BINS, domain=(0, 255)),
    MetadataField("entropy", 13, "range", 0, 10, _RANGE_BINS),
    MetadataField("walkability", 14, "range", 0, 1, _RANGE_BINS, domain=(0, 1)),
    MetadataField("objectness", 15, "range", 0, 1, _RANGE_BINS, domain=(0, 1)),
    MetadataField("semantic_diversity", 16, _COUNT),
    MetadataField("geometric_complexity", 17, "range", 0, 0.75, _RANGE_BINS, domain=(0, 1)),
    MetadataField("occlusion_score", 18, "range", 0, 0.25, _RANGE_BINS, domain=(0, 1)),
    MetadataField("watermark_score", 19, "manual", edges=(0.5,), representatives=(0.25, 0.75), domain=(0, 1)),
    MetadataField("aesthetic_score", 20, "manual", edges=(4.5, 5.5), representatives=(4.0, 5.0, 6.0),
                  domain=(0, 10)),
)
BY_NAME = {f.name: f for f in FIELDS}
BY_ID = {f.id: f for f in FIELDS}


def field(name: str) -> MetadataField:
    try:
        return BY_NAME[name]
    except KeyError:
        raise SerializationError(f"metadata: unknown field {name!r}; 4M's fields are "
                                 f"{', '.join(BY_NAME)}") from None


class MetadataSerializer(Serializer[dict]):
    """``metadata``: a dict field name -> raw value; decodes to field name -> binned value (see the table)."""

    modality = "metadata"

    def records(self, value: Mapping[str, float], *, generator: torch.Generator | None = None) -> list[list[Piece]]:
        if not isinstance(value, Mapping):
            raise SerializationError(f"metadata must be a dict of field -> value, got {type(value).__name__}")
        return [[coord(1, field(k).id), coord(0, field(k).to_bin(value[k]))] for k in shuffled(value, generator)]

    def parse(self, items: list[Item], *, strict: bool) -> dict:
        found: dict[str, float | int] = {}
        for chunk in chunks(items, lambda it: it[:2] == ("v", 1)):
            if len(chunk) < 2 or chunk[0][:2] != ("v", 1) or chunk[1][:2] != ("v", 0):
                broken(f"metadata: chunk {_text(chunk)} is not v1=<field> v0=<bin>", strict)
                continue
            if len(chunk) > 2:  # a good chunk with stray tokens after it: keep the chunk
                broken(f"metadata: chunk {_text(chunk)} has tokens after v1=<field> v0=<bin>", strict)
            f, b = BY_ID.get(chunk[0][2]), chunk[1][2]
            if f is None or b >= f.num_bins or (strict and f.name in found):
                why = "unknown field id" if f is None else "a repeated field" if f.name in found else "bin too large"
                broken(f"metadata: chunk {_text(chunk)}: {why}", strict)
                continue
            found[f.name] = f.from_bin(b)
        return {f.name: found[f.name] for f in FIELDS if f.name in found}


# ------------------------------------------------------------------------------------------- the world


def _text(chunk: list[Item]) -> str:
    return " ".join(map(describe_item, chunk))


def metadata_from_world(meta: Mapping[str, float]) -> dict[str, float]:
    """The world's ``metadata`` dict as serializer input: its keys are 4M field names already (19 of the 21; it
    has no watermark or aesthetic score), so this checks them and keeps 4M's field order."""
    unknown = [k for k in meta if k not in BY_NAME]
    if unknown:
        raise SerializationError(f"metadata: unknown field(s) {', '.join(map(repr, unknown))}; 4M's fields are "
                                 f"{', '.join(BY_NAME)}")
    return {f.name: meta[f.name] for f in FIELDS if f.name in meta}
