"""Token ids -> values, for every modality, through its tokenizer.

What a model or a sampler gives back is token ids per modality; what people look at, and what retrieval and
metrics compare, are values. `decode_outputs` goes from one to the other:

================================  ==================================  ==============================================
modality                          tokenizer                           value (batched)
================================  ==================================  ==============================================
image tokens (rgb, depth, normal, `ViTVQVAE`                          tensor, as `ViTVQVAE.decode` (rgb (B, 3, H, W)
semseg, edges, feature maps)                                          0..1, depth (B, H, W) metres, ...)
global tokens (tok_*_global)      `MLPTokenizer`                      (B, D) float vectors
caption                           `TextTokenizer`                     list of B strings
det, metadata, color_palette,     `TextTokenizer` + the modality's    list of B values: boxes, dicts, colours,
human_poses, sam_instance         serializer (`SERIALIZERS`)          people, query points
================================  ==================================  ==============================================

`value_kind` names what a decoded value is (``"depth"``, ``"vector"``, ``"det"``, ...): the pictures of
`polymodal.viz.pictures` are chosen by it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from .. import modalities
from ..modalities import Kind
from ..tokenizers.base import Tokenizer
from ..tokenizers.mlp import MLPTokenizer
from ..tokenizers.serializers import SERIALIZERS
from ..tokenizers.text import TextTokenizer
from ..tokenizers.vqvae import ViTVQVAE

# The key of `tokenizers` that serves every sequence modality without a tokenizer of its own (4M has one text
# tokenizer for caption, det, metadata, ...).
TEXT = "text"
SEQUENCE_KINDS = ("caption", "det", "metadata", "color_palette", "human_poses", "sam_instance")


class DecodeError(KeyError):
    """A modality that cannot be decoded: unknown, input only, or without a tokenizer. The message says which and
    what would fix it."""

    def __str__(self) -> str:  # KeyError quotes its message; this one is a sentence
        return str(self.args[0])


def base_name(name: str) -> str:
    """4M's name without the token prefix and resolution: ``tok_depth@224`` -> ``depth``, ``det`` -> ``det``."""
    return name.removeprefix("tok_").split("@")[0]


def modality_kind(name: str, tokenizers: Mapping[str, Tokenizer]) -> Kind:
    """The registered kind of ``name``; a tokenizer's own (unregistered) token modality counts as image tokens."""
    try:
        return modalities.get(name).kind
    except KeyError as e:  # its message names the closest registered modalities
        if isinstance(tokenizers.get(name), (ViTVQVAE, MLPTokenizer)):
            return Kind.IMAGE_TOKENS
        raise DecodeError(f"{e.args[0]}; nor is there a tokenizer for it among {sorted(tokenizers)}") from None


def tokenizer_for(name: str, tokenizers: Mapping[str, Tokenizer]) -> Tokenizer:
    """The tokenizer that decodes ``name`` (sequences fall back to ``tokenizers["text"]``), or a DecodeError."""
    kind = modality_kind(name, tokenizers)
    if kind in (Kind.PIXELS, Kind.SEQUENCE_EMB):
        raise DecodeError(f"modality {name!r} is input only ({kind.value}): it has no token ids to decode; use its "
                          "values as they are")
    tok = tokenizers.get(name)
    if tok is None and kind is Kind.SEQUENCE:
        tok = tokenizers.get(TEXT)
    if tok is None:
        hint = f" or under {TEXT!r} (one text tokenizer serves every sequence)" if kind is Kind.SEQUENCE else ""
        raise DecodeError(f"no tokenizer for modality {name!r}: pass it in tokenizers[{name!r}]{hint}; tokenizers "
                          f"given: {sorted(tokenizers) or 'none'}")
    if kind is Kind.SEQUENCE and not isinstance(tok, TextTokenizer):
        raise DecodeError(f"modality {name!r} is a sequence: it needs a TextTokenizer, got {type(tok).__name__}")
    return tok


def value_kind(name: str, tokenizers: Mapping[str, Tokenizer]) -> str:
    """What the decoded value of ``name`` is: a `ViTVQVAE` values name (``rgb``, ``depth``, ``normal``,
    ``semseg``, ``edge``, ``feature``), ``vector`` for an `MLPTokenizer`, else the sequence's base name
    (``caption``, ``det``, ``metadata``, ``color_palette``, ``human_poses``, ``sam_instance``; ``text`` for a
    sequence of another name)."""
    tok = tokenizer_for(name, tokenizers)
    if isinstance(tok, ViTVQVAE):
        return tok.cfg.values
    if isinstance(tok, MLPTokenizer):
        return "vector"
    if isinstance(tok, TextTokenizer):
        base = base_name(name)
        return base if base in SEQUENCE_KINDS else "text"
    from .official import official_value_kind  # the released 4M tokenizers (DiVAE, OfficialVQVAE)

    kind = official_value_kind(tok)
    if kind is not None:
        return kind
    raise DecodeError(f"modality {name!r}: no picture kind for a {type(tok).__name__} tokenizer")


def decode_one(name: str, ids: torch.Tensor, tokenizers: Mapping[str, Tokenizer], *, strict: bool = False) -> Any:
    """The values of one modality's ids (B, N) (see the module table). ``strict`` parses serialized sequences
    strictly (a SerializationError at the first broken record) instead of skipping broken records."""
    tok = tokenizer_for(name, tokenizers)
    if not isinstance(ids, torch.Tensor):
        ids = torch.as_tensor(ids)
    if ids.ndim == 1:
        raise ValueError(f"{name}: expected batched ids (B, N), got shape {tuple(ids.shape)} (add a batch axis)")
    if not isinstance(tok, TextTokenizer):
        return tok.decode(ids)
    serializer = SERIALIZERS.get(base_name(name))
    if serializer is None:
        return tok.decode(ids)
    rows = tok.check_ids(ids)
    return [serializer.decode(row, tok, strict=strict) for row in rows]


def decode_outputs(ids: Mapping[str, torch.Tensor], tokenizers: Mapping[str, Tokenizer], *,
                   strict: bool = False) -> dict[str, Any]:
    """Token ids per modality -> values per modality (see the module table), in the order of ``ids``.

    Args:
        ids: modality name -> (B, N) int ids (image tokens may also be (B, rows, cols)).
        tokenizers: modality name -> its tokenizer; ``"text"`` serves every sequence without its own entry.
        strict: parse serialized sequences strictly (see `decode_one`).

    Raises:
        DecodeError: a modality that is not registered (and has no tokenizer), input only, or without a tokenizer;
            every such modality is checked before any decoding starts.
    """
    for name in ids:
        tokenizer_for(name, tokenizers)
    return {name: decode_one(name, x, tokenizers, strict=strict) for name, x in ids.items()}
