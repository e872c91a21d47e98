"""The modality registry: what every domain is, how many tokens it has and how it is embedded.

A `Modality` is pure description (no torch): the model builds its per-domain embeddings and heads from it, the
masking sampler reads its token count, tokenizers and data loaders look up its grid or maximum length.

Names follow 4M (`rgb@224`, `tok_depth@224`, `caption`, ...) so official checkpoints map one to one. Users add
their own with `register(Modality(...))`.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum


class Kind(str, Enum):
    """How a modality is fed to the model."""

    PIXELS = "pixels"  # (B, C, H, W) float image, embedded by a linear patch projection; input only
    IMAGE_TOKENS = "image_tokens"  # (B, N) ids on a token grid; predicted in parallel (mask token queries)
    SEQUENCE = "sequence"  # (B, L) WordPiece ids; span-masked, predicted autoregressively
    SEQUENCE_EMB = "sequence_emb"  # (B, L, E) float vectors (e.g. T5 token embeddings); input only


def fourm_id(name: str) -> int:
    """4M's modality id: a 15-bit hash of the name (used by the reference to tell domains apart)."""
    return int(hashlib.sha256(name.encode("utf-8")).hexdigest(), 16) % 2**15


@dataclass(frozen=True)
class Modality:
    """One domain.

    Attributes:
        name: 4M-style name, e.g. ``tok_depth@224``.
        kind: how it is embedded (see `Kind`).
        vocab_size: number of token ids (image tokens and sequences); None for pixels and vectors.
        grid: (rows, cols) of the token grid for pixels and image tokens; None for sequences.
        max_length: maximum number of tokens of a sequence (input span plus its sentinels); None for grids.
        emb_length: length the sequence embedding was built for, if not ``max_length`` (4M's human_poses: 263
            of 275); decoder positions at or past it fall back to row 0, as in 4M.
        pos: ``"sincos"`` (fixed 2D table for grids, 1D for sequences) or ``"learned"`` (e.g. global tokens).
        patch_size: pixel patch side for ``PIXELS`` (image side = grid * patch_size).
        channels: channels of a ``PIXELS`` image.
        emb_dim: width of the vectors of a ``SEQUENCE_EMB`` modality.
        pos_table_len: rows of a sequence's 1D position table. 4M builds 512 rows whatever ``max_length`` is
            (see the fixtures README); kept so official checkpoints load with their own tables.
        description: one line for ``polymodal info``.
    """

    name: str
    kind: Kind
    vocab_size: int | None = None
    grid: tuple[int, int] | None = None
    max_length: int | None = None
    pos: str = "sincos"
    patch_size: int | None = None
    channels: int | None = None
    emb_dim: int | None = None
    emb_length: int | None = None
    pos_table_len: int = 512
    description: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.kind, Kind):
            object.__setattr__(self, "kind", Kind(self.kind))
        if self.grid is not None:
            object.__setattr__(self, "grid", tuple(int(g) for g in self.grid))
        if self.pos not in ("sincos", "learned"):
            raise ValueError(f"modality {self.name!r}: pos must be 'sincos' or 'learned', got {self.pos!r}")
        need = {
            Kind.PIXELS: ("grid", "patch_size", "channels"),
            Kind.IMAGE_TOKENS: ("grid", "vocab_size"),
            Kind.SEQUENCE: ("max_length", "vocab_size"),
            Kind.SEQUENCE_EMB: ("max_length", "emb_dim"),
        }[self.kind]
        missing = [f for f in need if getattr(self, f) is None]
        if missing:
            raise ValueError(f"modality {self.name!r} of kind {self.kind.value} needs {', '.join(missing)}")
        if self.is_sequence_like and self.max_length > self.pos_table_len:
            raise ValueError(
                f"modality {self.name!r}: max_length {self.max_length} exceeds its position table "
                f"({self.pos_table_len} rows)"
            )

    @property
    def id(self) -> int:
        return fourm_id(self.name)

    @property
    def is_grid(self) -> bool:
        return self.kind in (Kind.PIXELS, Kind.IMAGE_TOKENS)

    @property
    def is_sequence_like(self) -> bool:
        return self.kind in (Kind.SEQUENCE, Kind.SEQUENCE_EMB)

    @property
    def is_input_only(self) -> bool:
        return self.kind in (Kind.PIXELS, Kind.SEQUENCE_EMB)

    @property
    def num_tokens(self) -> int:
        """Token positions of this modality: grid cells, or the maximum sequence length."""
        if self.grid is not None:
            return self.grid[0] * self.grid[1]
        return int(self.max_length)

    @property
    def decoder_pos_limit(self) -> int:
        """Sequence ranks at or past this use position row 0 in the decoder (4M's behaviour)."""
        return int(self.emb_length or self.max_length)

    @property
    def pos_len(self) -> int:
        """Rows of the position table: the grid for grids, ``pos_table_len`` for sequences."""
        return self.num_tokens if self.is_grid else self.pos_table_len

    @property
    def image_size(self) -> tuple[int, int] | None:
        if self.kind is not Kind.PIXELS:
            return None
        return (self.grid[0] * self.patch_size, self.grid[1] * self.patch_size)

    def replace(self, **changes) -> Modality:
        from dataclasses import replace

        return replace(self, **changes)


# ---------------------------------------------------------------------------------------------- the registry

_REGISTRY: dict[str, Modality] = {}


def register(modality: Modality, *, overwrite: bool = False) -> Modality:
    """Add a modality to the registry (one call per user modality). Returns it for chaining."""
    old = _REGISTRY.get(modality.name)
    if old is not None and old != modality and not overwrite:
        raise ValueError(
            f"modality {modality.name!r} is already registered with a different definition; "
            f"pass overwrite=True to replace it\n  registered: {old}\n  new:        {modality}"
        )
    _REGISTRY[modality.name] = modality
    return modality


def to_spec(mod: Modality) -> dict:
    """A modality as JSON (what bundles, token datasets and model folders record of the domains they use)."""
    d = {k: v for k, v in dataclasses.asdict(mod).items() if v is not None and k != "description"}
    d["kind"] = mod.kind.value
    return d


def from_spec(spec: Mapping) -> Modality:
    """`to_spec`'s JSON back; a ValueError (a field missing, unknown, or of the wrong type) otherwise."""
    if not isinstance(spec, Mapping):
        raise ValueError(f"a modality definition is a JSON object, got {type(spec).__name__}")
    spec = dict(spec)
    if spec.get("grid") is not None:
        spec["grid"] = tuple(spec["grid"])
    try:
        return Modality(**spec)
    except TypeError as e:
        raise ValueError(str(e)) from None


def register_specs(specs: Mapping[str, Mapping], source: str, file: str) -> None:
    """Register the modality definitions ``file`` records (``source``, the folder, and ``file`` name it in errors). A
    name registered with another definition is refused: the file was written for another modality of that name."""
    if not isinstance(specs, Mapping):
        raise ValueError(f"{source}: modalities in {file} must be a JSON object of definitions, got "
                         f"{type(specs).__name__}")
    for name, spec in specs.items():
        try:
            mod = from_spec(spec)
        except ValueError as e:
            raise ValueError(f"{source}: modality {name!r} has a bad definition in {file} ({e})") from None
        if mod.name != name:
            raise ValueError(f"{source}: the definition recorded as {name!r} in {file} is named {mod.name!r}")
        if is_registered(name) and get(name) != mod:
            raise ValueError(f"{source}: modality {name!r} is registered with another definition here ({get(name)}) "
                             f"than {file}'s ({mod})")
        register(mod)


def get(name: str) -> Modality:
    """The registered modality `name`; an unknown name raises a KeyError that lists the closest ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=4, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise KeyError(
            f"unknown modality {name!r}{hint} (register it with polymodal.modalities.register, "
            f"{len(_REGISTRY)} are registered: see `polymodal info`)"
        ) from None


def is_registered(name: str) -> bool:
    return name in _REGISTRY


def all_modalities() -> dict[str, Modality]:
    return dict(_REGISTRY)


# ------------------------------------------------------------------------------------ 4M-7 / 4M-21 domains

TEXT_VOCAB = 30_000  # 4M's shared WordPiece vocabulary (caption, det, metadata, poses, palettes, instances)


def _image_tokens(name: str, vocab: int, side: int, *, pos: str = "sincos", description: str = "") -> Modality:
    return Modality(name, Kind.IMAGE_TOKENS, vocab_size=vocab, grid=(side, side), pos=pos, description=description)


def _sequence(name: str, max_length: int, description: str = "") -> Modality:
    return Modality(name, Kind.SEQUENCE, vocab_size=TEXT_VOCAB, max_length=max_length, description=description)


def _rgb(res: int) -> Modality:
    return Modality(
        f"rgb@{res}", Kind.PIXELS, grid=(res // 16, res // 16), patch_size=16, channels=3,
        description=f"RGB pixels at {res} px, 16 px patches (ImageNet-normalized)",
    )


def _fourm_domains() -> list[Modality]:
    mods = [_rgb(224), _rgb(448)]
    for res in (224, 448):
        side = res // 16
        mods += [
            _image_tokens(f"tok_rgb@{res}", 16384, side, description="RGB VQ tokens"),
            _image_tokens(f"tok_depth@{res}", 8192, side, description="depth VQ tokens"),
            _image_tokens(f"tok_normal@{res}", 8192, side, description="surface normal VQ tokens"),
            _image_tokens(f"tok_semseg@{res}", 4096, side, description="COCO semantic segmentation VQ tokens"),
            _image_tokens(f"tok_clip@{res}", 8192, side, description="CLIP-B/16 feature map VQ tokens"),
        ]
    mods += [
        # DINOv2 and ImageBind use 14 px patches: 16x16 maps at 224 px.
        _image_tokens("tok_dinov2@224", 8192, 16, description="DINOv2-B/14 feature map VQ tokens"),
        _image_tokens("tok_imagebind@224", 8192, 16, description="ImageBind-H/14 feature map VQ tokens"),
        _image_tokens("tok_sam_edge@224", 8192, 14, description="SAM instance edge VQ tokens"),
        _image_tokens("tok_canny_edge@224", 8192, 14, description="Canny edge VQ tokens"),
        # A global embedding becomes 16 Memcodes tokens laid out as 4x4, with learned positions.
        _image_tokens("tok_dinov2_global", 8192, 4, pos="learned", description="DINOv2 global embedding, 16 tokens"),
        _image_tokens(
            "tok_imagebind_global", 8192, 4, pos="learned", description="ImageBind global embedding, 16 tokens"
        ),
        _sequence("caption", 256, "caption text (WordPiece)"),
        _sequence("det", 256, "bounding boxes: v0=xmin v1=ymin v2=xmax v3=ymax class"),
        _sequence("metadata", 40, "image metadata: v1=field v0=bin chunks"),
        # 275 tokens in a sequence; 4M builds its embedding with max_length 263 (what the decoder positions use).
        _sequence("human_poses", 275, "3D human poses: box, pose, orientation, shape, camera codes").replace(
            emb_length=263
        ),
        _sequence("color_palette", 23, "color palette: v1=n then v0=R v0=G v0=B per color"),
        _sequence("sam_instance", 290, "SAM instances: point/polygon, box and mask codes"),
        Modality(
            "t5_caption", Kind.SEQUENCE_EMB, max_length=77, emb_dim=4096,
            description="T5-XXL caption token embeddings (input only)",
        ),
    ]
    return mods


def _synthetic_token_world() -> list[Modality]:
    """The tiny token world of `polymodal.data.synthetic` (tests, the CPU smoke recipe): 8 classes on an 8x8 grid,
    labels after 4M's 204 special and sentinel ids. Built in, like 4M's domains, so that a run's config.json that
    names them loads in any interpreter."""
    return [
        Modality("tok_shape@syn", Kind.IMAGE_TOKENS, vocab_size=9 * 4, grid=(8, 8),
                 description="synthetic token world: class and texture per cell"),
        Modality("tok_depth@syn", Kind.IMAGE_TOKENS, vocab_size=5 * 9, grid=(8, 8),
                 description="synthetic token world: depth level and class per cell"),
        Modality("labels@syn", Kind.SEQUENCE, vocab_size=204 + 8 + 1, max_length=8, pos_table_len=64,
                 description="synthetic token world: sorted class labels"),
    ]


for _m in _fourm_domains() + _synthetic_token_world():
    register(_m)

FOURM21_INPUTS = (
    "rgb@224", "tok_rgb@224", "tok_depth@224", "tok_normal@224", "tok_semseg@224", "tok_clip@224",
    "tok_dinov2@224", "tok_dinov2_global", "tok_imagebind@224", "tok_imagebind_global", "tok_sam_edge@224",
    "tok_canny_edge@224", "caption", "t5_caption", "det", "metadata", "human_poses", "color_palette", "sam_instance",
)
FOURM21_OUTPUTS = tuple(n for n in FOURM21_INPUTS if not get(n).is_input_only)
FOURM7_INPUTS = ("rgb@224", "tok_rgb@224", "tok_depth@224", "tok_normal@224", "tok_semseg@224", "tok_clip@224",
                 "caption", "det")
FOURM7_OUTPUTS = tuple(n for n in FOURM7_INPUTS if not get(n).is_input_only)
