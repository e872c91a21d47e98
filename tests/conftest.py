"""Shared test helpers: the fixtures folder, a tiny modality set covering every kind, random batches."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NoReturn

import pytest
import torch

from polymodal import modalities
from polymodal.config import ModelConfig
from polymodal.data.batch import Batch, ModalityTokens
from polymodal.modalities import Kind, Modality

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT.parent / "shared" / "fixtures"

# One modality of every kind, small enough for seconds-long tests.
TINY_MODS = [
    Modality("rgb@test", Kind.PIXELS, grid=(4, 4), patch_size=4, channels=3),
    Modality("tok_a@test", Kind.IMAGE_TOKENS, vocab_size=50, grid=(4, 4)),
    Modality("tok_global@test", Kind.IMAGE_TOKENS, vocab_size=30, grid=(2, 2), pos="learned"),
    Modality("seq@test", Kind.SEQUENCE, vocab_size=40, max_length=12, pos_table_len=32),
    Modality("vec@test", Kind.SEQUENCE_EMB, max_length=6, emb_dim=8, pos_table_len=16),
]
for _m in TINY_MODS:
    modalities.register(_m)
TINY_IN = tuple(m.name for m in TINY_MODS)


def single_thread():
    """Body of the packages' autouse ``one_thread`` fixtures: tiny matrices lose more to thread hand-offs than they
    gain, most of all on a shared machine (``one_thread = pytest.fixture(autouse=True)(single_thread)``)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
TINY_OUT = ("tok_a@test", "tok_global@test", "seq@test")


def in_ci() -> bool:
    """Whether this run is CI's (CI=true, as CI services and .ci/run set it; "", "0" and "false" are not)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false")


def fixtures_missing(path: Path) -> NoReturn:
    """Skip the calling test for want of the reference fixtures at ``path`` (a user's plain clone), saying where
    they should be; in CI fail it instead, so a run without them cannot pass with the parity tests skipped."""
    message = f"reference fixtures not found at {path} (they live in ../shared/fixtures)"
    if in_ci():
        pytest.fail(f"{message}; CI runs the parity tests, so the fixtures must be there", pytrace=False)
    pytest.skip(message)


def fixtures_dir(*parts: str) -> Path:
    """``../shared/fixtures/<parts>``; skips (fails in CI, `fixtures_missing`) when the fixtures folder is absent."""
    path = FIXTURES.joinpath(*parts)
    if not FIXTURES.exists():
        fixtures_missing(FIXTURES)
    return path


def tiny_config(**overrides) -> ModelConfig:
    return ModelConfig.preset("test", domains_in=TINY_IN, domains_out=TINY_OUT, **overrides)


def random_batch(b: int = 3, *, seed: int = 0, all_targets: bool = False) -> Batch:
    """Random values and random disjoint masks; sequences laid out as input span then target span."""
    g = torch.Generator().manual_seed(seed)
    items = {}
    for m in TINY_MODS:
        n = m.num_tokens
        if m.kind is Kind.PIXELS:
            values = torch.rand(b, m.channels, *m.image_size, generator=g)
        elif m.kind is Kind.SEQUENCE_EMB:
            values = torch.randn(b, n, m.emb_dim, generator=g)
        else:
            values = torch.randint(0, m.vocab_size, (b, n), generator=g)
        if m.kind is Kind.SEQUENCE:
            is_in = torch.zeros(b, n, dtype=torch.bool)
            is_tg = torch.zeros(b, n, dtype=torch.bool)
            for i in range(b):
                k_in = int(torch.randint(1, n // 2, (1,), generator=g))
                k_tg = int(torch.randint(2, n - k_in + 1, (1,), generator=g))
                is_in[i, :k_in] = True
                is_tg[i, k_in:k_in + k_tg] = True
        else:
            r = torch.rand(b, n, generator=g)
            is_in = r < 0.4
            is_tg = (r > 0.5) if (m.name in TINY_OUT) else torch.zeros_like(is_in)
            if all_targets and m.name in TINY_OUT:
                is_tg = ~is_in
            is_in[:, 0] = True  # at least one input per modality and sample
            is_tg[:, 0] = False
            if m.name in TINY_OUT:
                is_tg[:, -1] = True
                is_in[:, -1] = False
        items[m.name] = ModalityTokens(values, is_in, is_tg)
    return Batch(items)
