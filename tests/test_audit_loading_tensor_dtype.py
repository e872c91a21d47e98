"""Audit: a weights file holding integers where the model has a floating weight (a damaged or foreign file) is
refused in one line naming the file, the tensor and both dtypes, by the model loader and every tokenizer loader;
it is neither cast silently into garbage weights nor a multi-line RuntimeError of ``load_state_dict``."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from polymodal.cli import main
from polymodal.model import FourM
from polymodal.nn.loading import read_safetensors
from polymodal.tokenizers import load_tokenizer

from .conftest import fixtures_dir


def copy_with_int(src: Path, dst: Path, key: str) -> Path:
    """``src`` folder copied to ``dst`` with tensor ``key`` of model.safetensors stored as int32 (header kept)."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("case.*"))
    weights = dst / "model.safetensors"
    with safe_open(str(weights), "pt") as f:
        meta = f.metadata()
    sd = load_file(str(weights))
    sd[key] = sd[key].to(torch.int32)
    save_file(sd, str(weights), metadata=meta)
    return weights


def test_an_integer_model_weight_is_refused(tmp_path):
    key = "encoder.0.attn.qkv.weight"
    weights = copy_with_int(fixtures_dir("ml4m-4m21-tiny"), tmp_path / "m", key)
    for dtype in (None, torch.bfloat16):
        with pytest.raises(ValueError) as e:
            FourM.from_pretrained(tmp_path / "m", dtype=dtype)
        assert str(e.value) == f"{weights}: tensor {key} is int32 in the file, the config expects a floating tensor"


@pytest.mark.parametrize(("folder", "key"), [("tok_dinov2_global", "decoder.blocks.0.block.0.weight"),
                                             ("tok_rgb@224", "encoder.blocks.0.attn.qkv.weight")])
def test_an_integer_tokenizer_weight_is_refused(tmp_path, folder, key):
    weights = copy_with_int(fixtures_dir("ml4m-4m21-tiny-tokenizers", folder), tmp_path / folder, key)
    with pytest.raises(ValueError) as e:
        load_tokenizer(tmp_path / folder)
    assert str(e.value) == (f"{weights}: tensor {key} is int32 in the file, the config ({tmp_path / folder}/"
                            "config.json) expects a floating tensor")


def test_an_integer_tokenizer_weight_on_the_command_line_is_exit_2(tmp_path, capsys):
    key = "decoder.blocks.0.block.0.weight"
    copy_with_int(fixtures_dir("ml4m-4m21-tiny-tokenizers", "tok_dinov2_global"), tmp_path / "dino", key)
    out = tmp_path / "out"
    rc = main(["generate", "--model", str(fixtures_dir("ml4m-4m21-tiny")), "--text-tokenizer",
               str(fixtures_dir("ml4m-text-tokenizer", "text_tokenizer_4m_wordpiece_30k.json")),
               "--tokenizer", f"tok_dinov2_global={tmp_path / 'dino'}", "--from", "caption=a red bus",
               "--to", "tok_dinov2_global", "--steps", "1", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("polymodal generate: ") and err.count("\n") == 1, err
    assert f"tensor {key} is int32 in the file" in err and not out.exists()


def test_the_reader_casts_within_a_kind_only(tmp_path):
    """float16 -> float32 (a half-precision file) is cast as read; an integer tensor is not made floating (nor the
    reverse): it keeps the file's dtype, for the loader's check to name."""
    file = tmp_path / "t.safetensors"
    save_file({"w": torch.ones(2, dtype=torch.float16), "i": torch.arange(3, dtype=torch.int32),
               "f": torch.full((2,), 2.5)}, str(file))
    out = read_safetensors(file, {"w": torch.float32, "i": torch.float32, "f": torch.int64})
    assert out["w"].dtype == torch.float32 and torch.equal(out["w"], torch.ones(2))
    assert out["i"].dtype == torch.int32 and out["f"].dtype == torch.float32
