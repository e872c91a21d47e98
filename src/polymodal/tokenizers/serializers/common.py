"""What every serializer shares: records of pieces, the fit to a token budget, and reading ids back.

A serializer writes a value as *records* (one box, one metadata field, one person, ...). A record is a list of
pieces: an int is a coordinate token id (``v{axis}={value}``, fixed by the layout), a str is a word or phrase
(``human``, ``wine glass``) that the text tokenizer turns into one or more ids. ``to_text`` joins the pieces with
spaces, which is 4M's string; ``encode`` gives the ids of that string plus [EOS], computed piece by piece (the
same ids as tokenizing the string: pieces never merge across the spaces).

Reading ids back, `read_items` turns them into items: ``("v", axis, value)`` for a coordinate token, ``("w",
text)`` for a run of other tokens decoded to text, ``("x", token)`` for a token that has no place in a serialized
value (a sentinel, [SOS]); it stops at the first [EOS] and skips [PAD].
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Generic, TypeVar

import torch

from ... import modalities
from ..text import TextTokenizer
from ..text_layout import (
    CLASS_BASE,
    COORD_BASE,
    COORD_BINS,
    EOS,
    PAD,
    UNK,
    coord_id,
    coord_of_id,
    id_to_fixed_token,
)

T = TypeVar("T")
Piece = int | str
Item = tuple


class SerializationError(ValueError):
    """A value a serializer cannot write (NaN, out of range, wrong length), or, when parsing strictly, ids that
    are not in the serializer's format."""


def coord(axis: int, value: int) -> int:
    """A coordinate piece: the id of ``v{axis}={value}``."""
    return coord_id(axis, value)


def code_piece(code: int) -> int:
    """4M's writing of a tokenizer code (pose and mask codes, < 1024): ``v0=c`` below 512, else ``v1=c-512``."""
    return coord_id(0, code) if code < 512 else coord_id(1, code - 512)


BOX_FIELDS = ("xmin", "ymin", "xmax", "ymax")


def check_box(values: Sequence[Any], what: str, check) -> list:
    """The 4 values of a box, each through ``check(value, name)`` (a `check_number` or `check_int` with its range
    bound), and min <= max on both axes; else a SerializationError naming ``what`` and the field."""
    values = list(values)
    if len(values) != 4:
        raise SerializationError(f"{what}: expected 4 values ({', '.join(BOX_FIELDS)}), got {len(values)}")
    b = [check(v, f"{what} {k}") for k, v in zip(BOX_FIELDS, values)]
    if b[0] > b[2] or b[1] > b[3]:
        raise SerializationError(f"{what}: xmin > xmax or ymin > ymax in {tuple(b)}")
    return b


def box_values(items: Sequence[Item]) -> list[int] | None:
    """``v0= v1= v2= v3=`` items -> their 4 values; None for anything else."""
    if [it[:2] for it in items] != [("v", a) for a in range(4)]:
        return None
    return [it[2] for it in items]


def code_values(items: Sequence[Item]) -> tuple[int, ...] | None:
    """``v0=c`` / ``v1=c`` items -> tokenizer codes (the inverse of `code_piece`); None for anything else."""
    if any(it[0] != "v" or it[1] > 1 for it in items):
        return None
    return tuple(it[2] + 512 * it[1] for it in items)


def piece_text(piece: Piece) -> str:
    return id_to_fixed_token(piece) if isinstance(piece, int) else piece


def check_number(value: Any, what: str, lo: float, hi: float) -> float:
    """A finite number in [lo, hi] as a float, else a SerializationError naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "__float__"):
        raise SerializationError(f"{what} must be a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise SerializationError(f"{what} is {v}: must be a finite number")
    if not lo <= v <= hi:
        raise SerializationError(f"{what} is {v}: must be in [{lo}, {hi}]")
    return v


def check_int(value: Any, what: str, lo: int, hi: int) -> int:
    """An integral number in [lo, hi] as an int, else a SerializationError naming ``what``."""
    v = check_number(value, what, lo, hi)
    if v != int(v):
        raise SerializationError(f"{what} is {value!r}: must be an integer")
    return int(v)


def check_type(value: Any, cls: type[T], what: str) -> T:
    """``value`` if it is a ``cls``, else a SerializationError "WHAT is a dict, not a Box" (a user's dict where
    the serializer takes its dataclass)."""
    if not isinstance(value, cls):
        article = "an" if cls.__name__[:1] in "AEIOU" else "a"
        raise SerializationError(f"{what} is a {type(value).__name__}, not {article} {cls.__name__}")
    return value


def shuffled(items: Sequence[T], generator: torch.Generator | None) -> list[T]:
    """``items`` in an order drawn from ``generator`` (4M shuffles records and groups for training), as given when
    it is None."""
    items = list(items)
    if generator is None:
        return items
    return [items[i] for i in torch.randperm(len(items), generator=generator).tolist()]


def quantize(value: float, scale: float, offset: float = 0.0) -> int:
    """4M's ``round(value * scale + offset)`` (Python rounding, halves to even), clipped to 0..999 against
    float dust at the range ends."""
    return min(max(round(value * scale + offset), 0), COORD_BINS - 1)


class Serializer(ABC, Generic[T]):
    """Write a structured value as 4M's token sequence and read it back.

    Subclasses set ``modality`` and implement `records` (value -> records) and `parse` (items -> value).
    """

    modality: str = ""

    @abstractmethod
    def records(self, value: T, *, generator: torch.Generator | None = None) -> list[list[Piece]]:
        """The value as records of pieces; raises SerializationError for values it cannot write."""

    @abstractmethod
    def parse(self, items: list[Item], *, strict: bool) -> T:
        """The value back from `read_items`; broken records are skipped, or raise when ``strict``."""

    @property
    def max_tokens(self) -> int:
        """The modality's maximum length, [EOS] included."""
        return modalities.get(self.modality).max_length

    def to_text(self, value: T, *, generator: torch.Generator | None = None) -> str:
        """4M's string for the value (what its data transforms feed the text tokenizer)."""
        return " ".join(piece_text(p) for r in self.records(value, generator=generator) for p in r)

    def encode(self, value: T, tokenizer: TextTokenizer, *, max_tokens: int | None = None,
               generator: torch.Generator | None = None) -> list[int]:
        """Ids of `to_text` + [EOS], at most ``max_tokens`` (default: the modality's maximum).

        A value that does not fit keeps the whole records that do, in order, and no [EOS] (4M's rule for chunked
        sequences such as metadata); the tokenizer warns or raises as its ``truncation`` says.
        """
        limit = self.max_tokens if max_tokens is None else max_tokens
        recs = [[i for p in r for i in ([p] if isinstance(p, int) else tokenizer.piece_ids(p))]
                for r in self.records(value, generator=generator)]
        out: list[int] = []
        for k, ids in enumerate(recs):
            if len(out) + len(ids) > limit:
                rest = sum(len(r) for r in recs[k:])
                tokenizer.overflow(f"{self.modality}: {len(recs) - k} of {len(recs)} records ({rest} tokens) and "
                                   f"[EOS] do not fit in {limit} tokens after {len(out)}; dropped")
                return out
            out.extend(ids)
        if len(out) + 1 > limit:
            tokenizer.overflow(f"{self.modality}: [EOS] does not fit in {limit} tokens; dropped")
            return out
        return out + [EOS]

    def decode(self, ids: Sequence[int] | torch.Tensor, tokenizer: TextTokenizer, *, strict: bool = False) -> T:
        """The value of one id sequence (a model's output or `encode`'s), read up to its first [EOS].

        Lenient by default: records that are broken (a missing coordinate, a value out of range, a stray word) are
        skipped and the rest is kept, so any sequence parses. ``strict=True`` raises a SerializationError at the
        first broken record instead (for tests and data checks). Ids outside the vocabulary always raise.
        """
        return self.parse(read_items(ids, tokenizer), strict=strict)

    def from_text(self, text: str, tokenizer: TextTokenizer, *, strict: bool = False) -> T:
        """The value of 4M's string (tokenized, then `decode`)."""
        return self.decode(tokenizer.tokenize(text), tokenizer, strict=strict)


def read_items(ids: Sequence[int] | torch.Tensor, tokenizer: TextTokenizer) -> list[Item]:
    """Items of one id sequence (see the module docstring)."""
    if isinstance(ids, torch.Tensor):
        if ids.ndim != 1:
            raise SerializationError(f"decode takes one sequence of ids (L,), got shape {tuple(ids.shape)}")
        ids = ids.tolist()
    row = tokenizer.check_ids([list(ids)])[0]
    items: list[Item] = []
    run: list[int] = []

    def flush() -> None:
        if run:
            text = tokenizer.decode_piece(run).strip()
            if text:
                items.append(("w", text))
            run.clear()

    for i in row:
        if i == EOS:
            break
        if i == PAD:
            continue
        if COORD_BASE <= i < CLASS_BASE:
            flush()
            items.append(("v", *coord_of_id(i)))
        elif i < COORD_BASE and i != UNK:
            flush()
            items.append(("x", id_to_fixed_token(i)))
        else:
            run.append(i)
    flush()
    return items


def split_words(items: list[Item]) -> list[Item]:
    """Items with every text run split into single words (for serializers whose words are keywords)."""
    out: list[Item] = []
    for it in items:
        if it[0] == "w":
            out.extend(("w", w) for w in it[1].split())
        else:
            out.append(it)
    return out


def describe(item: Item) -> str:
    return f"v{item[1]}={item[2]}" if item[0] == "v" else repr(item[1])


def broken(what: str, strict: bool) -> None:
    """A broken record: raise when strict, else the caller skips it."""
    if strict:
        raise SerializationError(what)


def chunks(items: list[Item], starts) -> list[list[Item]]:
    """Items cut before every item for which ``starts(item)`` holds; what precedes the first start is a chunk
    too (a broken one, for the parsers)."""
    out: list[list[Item]] = []
    for it in items:
        if starts(it) or not out:
            out.append([])
        out[-1].append(it)
    return out
