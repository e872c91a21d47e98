"""Text-tokenizer helpers for the tests: the official vocabulary (skips without the fixtures), a vocabulary trained
on world captions (always available, about a second), and world samples."""

from __future__ import annotations

import tempfile
from functools import cache
from pathlib import Path

from polymodal.data.world import render_sample
from polymodal.data.world.scene import OBJECT_CLASSES
from polymodal.tokenizers.text import TextTokenizer, train_text_tokenizer
from polymodal.tokenizers.text_layout import COCO_CLASSES

from ..conftest import fixtures_dir

OFFICIAL = ("ml4m-text-tokenizer", "text_tokenizer_4m_wordpiece_30k.json")
WORLD_EXTRA = tuple(c for c in OBJECT_CLASSES if c not in COCO_CLASSES)
RES = 64


def official_path() -> Path:
    path = fixtures_dir(*OFFICIAL)
    assert path.is_file(), f"{path} is missing from the fixtures folder"
    return path


@cache
def _official() -> TextTokenizer:
    return TextTokenizer.from_pretrained(official_path())


def official() -> TextTokenizer:
    official_path()  # skips outside the cache when the fixtures are absent
    return _official()


@cache
def world_samples(n: int = 40) -> tuple[dict, ...]:
    return tuple(render_sample(0, i, RES) for i in range(n))


@cache
def trained() -> TextTokenizer:
    """WordPiece trained on 40 world captions, with the world's non-COCO classes as single tokens."""
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "captions.txt"
        corpus.write_text("\n".join(s["caption"] for s in world_samples()) + "\n")
        return train_text_tokenizer([corpus], vocab_size=4600, extra_classes=WORLD_EXTRA)

