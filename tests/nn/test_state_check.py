"""The loaders' shared checks of a file's tensors against a model (`nn.state_check`): one wording for the model
loader and every tokenizer loader."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from polymodal.model import FourM
from polymodal.nn.state_check import missing_unexpected, wrong_kind

from ..conftest import fixtures_dir


def test_a_float_where_the_model_holds_integers_is_named():
    expected = {"w": torch.zeros(2), "step": torch.zeros((), dtype=torch.int64)}
    assert wrong_kind({"w": torch.ones(2), "step": torch.tensor(3.0)}, expected) == (
        "tensor step is float32 in the file, the config expects an integer tensor")
    assert wrong_kind({"w": torch.ones(2, dtype=torch.float16), "extra": torch.ones(1, dtype=torch.int8)},
                      expected) == ""  # a float of another width is cast; a name the model lacks is not this check's


def test_missing_and_unexpected_show_the_first_names_and_the_counts():
    names = [f"k{i}" for i in range(7)]
    assert missing_unexpected(names, ["x"], show=5) == "missing (7): k0, k1, k2, k3, k4; unexpected (1): x"
    assert missing_unexpected([], ["x", "y"]) == "unexpected (2): x, y"
    assert missing_unexpected([], []) == ""


def test_the_model_loader_names_a_missing_and_an_unexpected_tensor(tmp_path):
    shutil.copytree(fixtures_dir("ml4m-4m21-tiny"), tmp_path / "m", ignore=shutil.ignore_patterns("case.*"))
    weights = tmp_path / "m" / "model.safetensors"
    with safe_open(str(weights), "pt") as f:
        meta = f.metadata()
    sd = load_file(str(weights))
    dropped = "encoder.0.attn.qkv.weight"
    del sd[dropped]
    sd["junk"] = torch.zeros(2)
    save_file(sd, str(weights), metadata=meta)
    with pytest.raises(ValueError) as e:
        FourM.from_pretrained(tmp_path / "m")
    assert str(e.value) == (f"{weights}: state dict does not match the model: missing (1): {dropped}; "
                            "unexpected (1): junk")
