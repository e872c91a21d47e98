"""A tiny model for generation tests: pixels, two image-token grids and a text-like sequence (dim 64)."""

from __future__ import annotations

import pytest
import torch

from polymodal import modalities
from polymodal.config import ModelConfig
from polymodal.modalities import Kind, Modality
from polymodal.model import FourM
from tests.conftest import single_thread

from ..conftest import TINY_MODS

# A sequence with room for ordinary words: ids >= 204 are not sentinels.
TEXT = modalities.register(Modality("text@gen", Kind.SEQUENCE, vocab_size=300, max_length=24, pos_table_len=32))
RGB, TOK, GLOBAL = (m.name for m in TINY_MODS[:3])
IN = (RGB, TOK, GLOBAL, TEXT.name)
OUT = (TOK, GLOBAL, TEXT.name)


@pytest.fixture(scope="session")
def model() -> FourM:
    torch.manual_seed(0)
    cfg = ModelConfig.preset("test", domains_in=IN, domains_out=OUT, dim=32, num_heads=2)
    return FourM(cfg).eval()


def pixels(b: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


def text(rows: list[list[int]]) -> torch.Tensor:
    """Ids padded with [PAD] (0)."""
    width = max(len(r) for r in rows)
    return torch.tensor([r + [0] * (width - len(r)) for r in rows])


one_thread = pytest.fixture(autouse=True)(single_thread)
