"""The eval tests run on one thread (the machine's cores are shared) and on a few 32 px world scenes."""

from __future__ import annotations

import pytest
import torch

from polymodal.data.world import render_sample


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def scenes() -> list[dict]:
    """Six held-out scenes (world seed 1) at 32 px."""
    return [render_sample(1, i, 32) for i in range(6)]
