"""Color palettes in 4M-21's format: ``v1=<number of colors>`` then ``v0=R v0=G v0=B`` per color (0..255).

4M palettes hold 1 to 7 colors (``color_palette`` allows 23 tokens: 1 + 7 * 3 + [EOS]); an empty palette is
written ``v1=0``. Channels are rounded to integers. Example::

    [(255, 128, 0), (10, 20, 30)] -> "v1=2 v0=255 v0=128 v0=0 v0=10 v0=20 v0=30"
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from .common import Item, Piece, SerializationError, Serializer, broken, check_number, coord, describe

MAX_COLORS = 7

Color = tuple[int, int, int]


class PaletteSerializer(Serializer[list[Color]]):
    """``color_palette``: a list of (r, g, b) colors, 0..255 each."""

    modality = "color_palette"

    def records(self, value: Sequence[Sequence[float]], *, generator: torch.Generator | None = None
                ) -> list[list[Piece]]:
        if len(value) > MAX_COLORS:
            raise SerializationError(f"color_palette: {len(value)} colors; 4M palettes hold at most {MAX_COLORS}")
        pieces: list[Piece] = [coord(1, len(value))]
        for i, c in enumerate(value):
            if len(c) != 3:
                raise SerializationError(f"color_palette: color {i} has {len(c)} channels, not 3 (r, g, b)")
            pieces += [coord(0, round(check_number(v, f"color_palette: color {i} channel {'rgb'[k]}", 0, 255)))
                       for k, v in enumerate(c)]
        return [pieces]  # one record: a palette is cut whole or not at all

    def parse(self, items: list[Item], *, strict: bool) -> list[Color]:
        if not items:
            broken("color_palette: empty sequence (no v1=<number of colors>)", strict)
            return []
        head, rest = items[0], items[1:]
        if head[:2] != ("v", 1):
            broken(f"color_palette: starts with {describe(head)}, not v1=<number of colors>", strict)
            n = None
            rest = items
        else:
            n = head[2]
        values = []
        for it in rest:
            if it[:2] != ("v", 0) or it[2] > 255:
                broken(f"color_palette: {describe(it)} is not a channel v0=0..255", strict)
                break
            values.append(it[2])
        colors = [tuple(values[k:k + 3]) for k in range(0, len(values) - 2, 3)]
        if strict and (n is None or len(values) != 3 * n):
            raise SerializationError(f"color_palette: header says {n} colors, the sequence has {len(values)} "
                                     "channels")
        return colors if n is None else colors[:n]


def palette_from_world(palette: Mapping) -> list[Color]:
    """The world's ``color_palette`` (``{"colors": [[r, g, b], ...], "weights": [...]}``, biggest first) as
    serializer input; the weights are not part of 4M's format."""
    try:
        return [tuple(int(v) for v in c) for c in palette["colors"]]
    except (KeyError, TypeError, ValueError) as e:
        raise SerializationError(f"color_palette: not a world palette ({e}): {palette!r:.100}") from None
