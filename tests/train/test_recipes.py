"""Every recipe under configs/ says how to run it and what it needs, and builds a config."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from polymodal.cli import load_recipe
from polymodal.model import FourM

from ..data.helpers import index_dataset

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.py"))


@pytest.mark.parametrize("recipe", CONFIGS, ids=lambda p: p.stem)
def test_recipe_docstring_states_command_hardware_time_and_expectation(recipe):
    doc = ast.get_docstring(ast.parse(recipe.read_text())) or ""
    missing = [k for k in ("Command", "Hardware:", "Time:", "Expect") if k not in doc]
    assert not missing, f"{recipe.name}: docstring lacks {missing}"


def test_token_recipes_build_on_any_token_dataset(tmp_path, monkeypatch):
    """The default's recipe and its GPU scale-up take their modalities from the token dataset they are given."""
    index_dataset(tmp_path / "tokens", 8, shard_size=4, crops=1)
    monkeypatch.setenv("POLYMODAL_TOKENS", str(tmp_path / "tokens"))
    root = CONFIGS[0].parent
    cpu, gpu = load_recipe(str(root / "fourm_world64.py")), load_recipe(str(root / "fourm_world64_gpu.py"))
    assert cpu.model.domains_in == gpu.model.domains_in == ("tok_a@data", "caption")
    assert (gpu.model.dim, gpu.model.encoder_depth, gpu.train.batch_size, gpu.train.precision) == (512, 8, 256, "bf16")
    assert gpu.masking == cpu.masking and gpu.optim == cpu.optim  # the same recipe, scaled
    assert sum(p.numel() for p in FourM(gpu.model).parameters()) > 4 * sum(
        p.numel() for p in FourM(cpu.model).parameters())
