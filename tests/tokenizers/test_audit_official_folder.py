"""Audit of loading the released 4M tokenizer folders (``config.json`` + ``model.safetensors``, the reference's
layout) that a user damaged or pointed at wrongly: one line naming the file, the tensor **as the file names it**,
the shape found and the shape expected."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from polymodal.tokenizers import TokenizerLoadError, load_tokenizer
from polymodal.tokenizers.ml4m.folder import load_official_tokenizer

from ..conftest import fixtures_dir


def damaged_copy(tmp_path: Path, folder: str, key: str, shape: tuple[int, ...]) -> Path:
    """A copy of a released tokenizer fixture whose tensor ``key`` has ``shape`` (zeros), the header kept."""
    dst = tmp_path / folder
    shutil.copytree(fixtures_dir("ml4m-4m21-tiny-tokenizers", folder), dst, ignore=shutil.ignore_patterns("case.*"))
    weights = dst / "model.safetensors"
    with safe_open(str(weights), "pt") as f:
        meta = f.metadata()
    sd = load_file(str(weights))
    sd[key] = torch.zeros(shape)
    save_file(sd, str(weights), metadata=meta)
    return dst


# A DiVAE's UNet tensors are renamed on loading: the error must name the file's key, in the file's layout
# (the attention's 1x1 Conv1d weights are (out, in, 1) there).
UNET_CASES = [
    ("decoder.output_blocks.0.0.in_layers.2.weight", (65, 128, 3, 3), (64, 128, 3, 3)),
    ("decoder.output_blocks.3.0.skip_connection.weight", (32, 64, 2, 2), (32, 64, 1, 1)),
    ("decoder.middle_block.1.qkv.weight", (192, 65, 1), (192, 64, 1)),
]


@pytest.mark.parametrize(("key", "found", "expected"), UNET_CASES, ids=["conv", "skip", "attention"])
def test_a_wrong_unet_tensor_is_named_as_in_the_file(tmp_path, key, found, expected):
    folder = damaged_copy(tmp_path, "tok_rgb@224", key, found)
    with pytest.raises(TokenizerLoadError) as e:
        load_tokenizer(folder)
    assert str(e.value) == (f"{folder / 'model.safetensors'}: tensor {key} has shape {found} in the file, the "
                            f"config ({folder / 'config.json'}) expects {expected}")


def test_a_wrong_unet_input_conv_names_the_tensor_and_its_channels(tmp_path):
    """The input conv sets how many code channels the UNet reads: a damaged one is named, not 'reads -47 code
    channels'. The fixture: 3-channel images in 4x4 patches (48 channels) + 32-d codes = 80 input channels."""
    key = "decoder.input_blocks.0.0.weight"
    folder = damaged_copy(tmp_path, "tok_rgb@224", key, (1, 1, 1, 1))
    with pytest.raises(TokenizerLoadError) as e:
        load_tokenizer(folder)
    assert str(e.value) == (f"{folder / 'model.safetensors'}: tensor {key} has shape (1, 1, 1, 1) in the file; "
                            "3-channel images in 4x4 patches and 32-d codes need 80 input channels (its dim 1)")


@pytest.mark.parametrize("name", ["config.json", "model.safetensors"])
def test_a_file_inside_the_folder_is_not_called_missing(name):
    path = fixtures_dir("ml4m-4m21-tiny-tokenizers", "tok_dinov2_global", name)
    with pytest.raises(NotADirectoryError) as e:
        load_official_tokenizer(path)
    assert str(e.value) == f"tokenizer {path}: a file, not a tokenizer folder; give the folder that holds it"


@pytest.mark.parametrize("folder", ["tok_dinov2_global", "tok_rgb@224"])
def test_a_non_floating_dtype_is_refused_in_one_line(folder):
    path = fixtures_dir("ml4m-4m21-tiny-tokenizers", folder)
    for load in (load_tokenizer, load_official_tokenizer):
        with pytest.raises(ValueError) as e:
            load(path, dtype=torch.int64)
        assert str(e.value) == ("dtype=torch.int64: weights load in a floating dtype (torch.float32, torch.bfloat16, "
                                "...)")
