"""Audit of loading the released 4M tokenizer folders (``config.json`` + ``model.safetensors``, the reference's
layout) that a user damaged or pointed at wrongly: one line naming the file, the tensor **as the file names it**,
the shape found and the shape expected."""

from __future__ import annotations

import json
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


def with_fields(tmp_path: Path, folder: str, **fields) -> Path:
    dst = tmp_path / folder
    shutil.copytree(fixtures_dir("ml4m-4m21-tiny-tokenizers", folder), dst, ignore=shutil.ignore_patterns("case.*"))
    cfg = json.loads((dst / "config.json").read_text())
    cfg.update(fields)
    (dst / "config.json").write_text(json.dumps(cfg))
    return dst


# A field of the reference's arguments written wrong: one line naming config.json and the field (these were a
# TypeError / a bare "invalid literal for int()", or silently True for the string "false").
BAD_ARGS = [
    ("tok_dinov2_global", {"codebook_size": "abc"}, "codebook_size='abc' is not an integer"),
    ("tok_dinov2_global", {"n_channels": [768]}, "n_channels=[768] is not an integer"),
    ("tok_dinov2_global", {"norm_codes": "false"}, "norm_codes='false' is not true or false"),
    ("tok_rgb@224", {"patch_size": "x"}, "patch_size='x' is not an integer"),
    ("tok_rgb@224", {"n_channels": "three"}, "n_channels='three' is not an integer"),
    ("tok_rgb@224", {"num_train_timesteps": "many"}, "num_train_timesteps='many' is not an integer"),
    ("tok_rgb@224", {"thresholding": "yes"}, "thresholding='yes' is not true or false"),
    # An IndexError / RuntimeError from building the noise schedule before.
    ("tok_rgb@224", {"num_train_timesteps": 0}, "num_train_timesteps=0 is not a positive integer"),
    ("tok_rgb@224", {"num_train_timesteps": -5}, "num_train_timesteps=-5 is not a positive integer"),
]


@pytest.mark.parametrize(("folder", "fields", "message"), BAD_ARGS,
                         ids=[f"{a}-{next(iter(b))}" for a, b, _ in BAD_ARGS])
def test_a_bad_reference_argument_is_one_line_naming_the_file_and_field(tmp_path, folder, fields, message):
    path = with_fields(tmp_path, folder, **fields)
    with pytest.raises(TokenizerLoadError) as e:
        load_tokenizer(path)
    assert str(e.value) == f"{path / 'config.json'}: {message}"


def test_null_arguments_take_their_defaults(tmp_path):
    """JSON null is the reference's None (its default): it loads as if the field were absent, as n_labels did."""
    path = with_fields(tmp_path, "tok_rgb@224", image_size=None, num_train_timesteps=None)
    assert load_tokenizer(path).cfg.image_size == 224
    path = with_fields(tmp_path / "b", "tok_dinov2_global", num_codebooks=None, n_labels=None)
    with pytest.raises(TokenizerLoadError, match=r"tensor quantize.codes has shape \(16, 96, 8\) in the file"):
        load_tokenizer(path)  # the default of 1 codebook, which these weights do not have: said so in one line


def without(tmp_path: Path, folder: str, drop: str = "", add: str = "") -> Path:
    dst = tmp_path / folder
    shutil.copytree(fixtures_dir("ml4m-4m21-tiny-tokenizers", folder), dst, ignore=shutil.ignore_patterns("case.*"))
    weights = dst / "model.safetensors"
    with safe_open(str(weights), "pt") as f:
        meta = f.metadata()
    sd = load_file(str(weights))
    sd.pop(drop, None)
    if add:
        sd[add] = torch.zeros(2)
    save_file(sd, str(weights), metadata=meta)
    return dst


@pytest.mark.parametrize(("drop", "add", "part"), [
    ("decoder.output_blocks.0.0.in_layers.2.weight", "", "missing (1): decoder.output_blocks.0.0.in_layers.2.weight"),
    ("decoder.middle_block.1.proj_out.bias", "", "missing (1): decoder.middle_block.1.proj_out.bias"),
    ("decoder.output_blocks.1.2.conv.weight", "", "missing (1): decoder.output_blocks.1.2.conv.weight"),
    ("", "decoder.output_blocks.0.0.junk.weight", "unexpected (1): decoder.output_blocks.0.0.junk.weight"),
], ids=["res-conv", "attention", "upsampling-after-attention", "extra"])
def test_a_missing_or_extra_unet_tensor_is_named_as_in_the_file(tmp_path, drop, add, part):
    folder = without(tmp_path, "tok_rgb@224", drop, add)
    with pytest.raises(TokenizerLoadError) as e:
        load_tokenizer(folder)
    assert str(e.value) == (f"{folder / 'model.safetensors'}: the tensors do not match the config "
                            f"({folder / 'config.json'}): {part}")


def test_reference_names_invert_the_renaming():
    """Every UNet key of a released layout (attention at some levels, upsampling after it) -> ours -> back."""
    from polymodal.tokenizers.ml4m.unet import official_names, reference_name

    keys = [k[len("decoder."):] for k in load_file(str(fixtures_dir("ml4m-4m21-tiny-tokenizers", "tok_rgb@224",
                                                                    "model.safetensors"))) if k.startswith("decoder.")]
    names = official_names(keys)
    assert len(names) == len(keys)
    assert {ours: reference_name(ours, names) for ours in names} == names


def test_reference_names_invert_the_renaming_with_and_without_attention_before_an_upsampling():
    """The released size (attention at 4x and 8x only: up blocks with and without it before their upsampling)."""
    from polymodal.tokenizers.ml4m.unet import PatchedUNet, UNetConfig, official_names, reference_name

    ours = list(PatchedUNet(UNetConfig(1, 8, model_channels=32, num_res_blocks=1)).state_dict())
    theirs = [reference_name(k, ours) for k in ours]
    assert any(".1.conv." in k for k in theirs) and any(".2.conv." in k for k in theirs)
    assert official_names(theirs) == dict(zip(ours, theirs, strict=True))


@pytest.mark.parametrize(("folder", "fields", "message"), [
    ("clip", {"image_size": 100}, "image_size 100 is not a multiple of patch_size 16"),
    ("dinov2-global", {"num_codebooks": 3}, "Memcodes latent dim 128 is not divisible by its 3 codebooks"),
], ids=["image_size", "num_codebooks"])
def test_arguments_the_tokenizer_cannot_be_built_with_name_the_file(tmp_path, folder, fields, message):
    """Checks made when the config or the module is built named no file (a bare ValueError)."""
    dst = tmp_path / folder
    shutil.copytree(fixtures_dir("ml4m-tokenizers", folder), dst, ignore=shutil.ignore_patterns("case.*"))
    cfg = json.loads((dst / "config.json").read_text())
    (dst / "config.json").write_text(json.dumps(cfg | fields))
    with pytest.raises(TokenizerLoadError) as e:
        load_tokenizer(dst)
    assert str(e.value) == f"{dst / 'config.json'}: {message}"
