"""Audit of loading a released 4M model folder (``config.json`` + ``model.safetensors``, the official layout) that a
user damaged or mistyped: every problem is one line naming the file and the field or tensor, a ValueError the
command line turns into exit code 2 (never a TypeError traceback, never a silent misreading), and nothing is
unpickled. The valid folder still loads with the logits of tests/test_interop.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from polymodal.cli import main
from polymodal.model import FourM
from polymodal.model.checkpoint import CheckpointError

from .conftest import fixtures_dir


@pytest.fixture
def folder(tmp_path) -> Path:
    """A writable copy of the tiny official checkpoint (config.json + model.safetensors)."""
    src, dst = fixtures_dir("ml4m-4m21-tiny"), tmp_path / "4M-21_tiny"
    dst.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copyfile(src / name, dst / name)
    return dst


def set_fields(folder: Path, **fields) -> Path:
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(fields)
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder / "config.json"


def one_line(e: pytest.ExceptionInfo) -> str:
    text = str(e.value)
    assert "\n" not in text, text
    return text


# Each: a field written wrong in config.json, and what the one line must say after the file's name.
BAD_FIELDS = [
    ({"dim": None}, "dim=None is not an integer"),
    ({"num_heads": "two"}, "num_heads='two' is not an integer"),
    ({"mlp_ratio": "abc"}, "mlp_ratio='abc' is not a number"),
    # bool("false") is True: a string must not silently turn SwiGLU on or off.
    ({"gated_mlp": "false"}, "gated_mlp='false' is not true or false"),
    ({"share_modality_embeddings": "no"}, "share_modality_embeddings='no' is not true or false"),
    # A bare string would be read letter by letter ("unknown modality 'r'").
    ({"domains_in": "rgb@224"}, "domains_in='rgb@224' is not a list of domain names"),
    ({"num_heads": 3}, "dim 32 is not divisible by num_heads 3"),
    ({"domains_out": ["caption", "tok_foo@224"]}, "unknown modality 'tok_foo@224'"),
]


@pytest.mark.parametrize(("fields", "message"), BAD_FIELDS, ids=[next(iter(f)) + str(i) for i, (f, _) in
                                                                  enumerate(BAD_FIELDS)])
def test_a_bad_config_field_is_one_line_naming_the_file_and_field(folder, fields, message):
    """A ValueError (ConfigError); an unknown domain stays the KeyError it was, now naming the file."""
    cfg = set_fields(folder, **fields)
    with pytest.raises(KeyError if "unknown modality" in message else ValueError) as e:
        FourM.from_pretrained(folder)
    text = e.value.args[0]
    assert "\n" not in text and text.startswith(f"{cfg}: ") and message in text, text


def test_a_null_field_on_the_command_line_is_exit_2_not_a_traceback(folder, tmp_path, capsys):
    cfg = set_fields(folder, dim=None)
    assert main(["info", "--model", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err == f"polymodal info: {cfg}: dim=None is not an integer\n"


def test_fields_that_are_right_but_spelled_loosely_still_load(folder):
    """What loaded before still loads: integers as JSON strings, 0/1 flags, an unknown extra field."""
    set_fields(folder, dim="32", gated_mlp=1, norm_bias=0, some_future_field=3)
    model = FourM.from_pretrained(folder)
    assert model.config.dim == 32 and model.config.gated_mlp is True and model.config.norm_bias is False


def test_a_config_in_the_header_only_names_the_weights_file(folder):
    """Without config.json the fields come from the header: a problem there names the weights file."""
    from safetensors.torch import load_file, save_file

    (folder / "config.json").unlink()
    weights = folder / "model.safetensors"
    meta = {"dim": "None", "encoder_depth": "2", "decoder_depth": "2", "num_heads": "2",
            "domains_in": "['caption']", "domains_out": "['caption']"}
    save_file(load_file(str(weights)), str(weights), metadata=meta)
    with pytest.raises(ValueError) as e:
        FourM.from_pretrained(folder)
    assert one_line(e).startswith(f"{weights} (header): dim=None is not an integer"), str(e.value)


# ------------------------------------------------------------------------------------------ the path given


@pytest.mark.parametrize("name", ["config.json", "pytorch_model.bin", "model.pt"])
def test_a_file_that_is_not_safetensors_is_refused_by_name_unread(folder, name, monkeypatch):
    """The config's path, or a pickle, given instead of the folder: said so, not 'truncated or corrupt'."""
    if name != "config.json":
        torch.save({"w": torch.zeros(2)}, folder / name)
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load called"))
    with pytest.raises(CheckpointError) as e:
        FourM.from_pretrained(folder / name)
    text = one_line(e)
    assert text.startswith(f"{folder / name}: not a .safetensors file; give the model folder"), text
    assert "truncated" not in text


def test_a_folder_with_only_a_pickle_says_it_is_never_read(folder, monkeypatch):
    (folder / "model.safetensors").unlink()
    torch.save({"w": torch.zeros(2)}, folder / "pytorch_model.bin")
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load called"))
    with pytest.raises(CheckpointError) as e:
        FourM.from_pretrained(folder)
    assert one_line(e) == (f"{folder}: no model.safetensors (or other .safetensors file) in this folder; it holds "
                           "pytorch_model.bin, a pickle, which polymodal never loads (convert it to safetensors)")


@pytest.mark.parametrize("dtype", [torch.int32, "bfloat16"])
def test_a_non_floating_dtype_is_refused_in_one_line(folder, dtype):
    """Was load_state_dict's multi-line RuntimeError (an integer dtype) or a TypeError (a dtype's name)."""
    with pytest.raises(ValueError) as e:
        FourM.from_pretrained(folder, dtype=dtype)
    assert one_line(e) == f"dtype={dtype!r}: weights load in a floating dtype (torch.float32, torch.bfloat16, ...)"


@pytest.mark.parametrize(("fields", "message"), [({"num_heads": 3}, "dim 32 is not divisible by num_heads 3"),
                                                 ({"dim": None}, "model.dim: got None, expected an integer >= 1")])
def test_a_bad_field_of_a_polymodal_folder_names_its_config_too(folder, tmp_path, fields, message):
    """polymodal's own format (save_pretrained): ModelConfig's checks name the field, the loader adds the file."""
    ours = FourM.from_pretrained(folder).save_pretrained(tmp_path / "ours")
    cfg = set_fields(ours, **fields)
    with pytest.raises(ValueError) as e:
        FourM.from_pretrained(ours)
    assert one_line(e) == f"{cfg}: {message}"


def test_a_tokenizer_folder_given_as_the_model_says_so():
    """A user mixing up the release's folders: was 'missing required 4M config field(s): dim, ...' (a released
    tokenizer) or 'unknown field(s) for ModelConfig: 'values', ...' (a polymodal tokenizer)."""
    released = fixtures_dir("ml4m-4m21-tiny-tokenizers", "tok_rgb@224")
    with pytest.raises(CheckpointError) as e:
        FourM.from_pretrained(released)
    assert one_line(e) == (f"{released / 'config.json'}: a released 4M tokenizer's config (enc_type, dec_type, "
                           "quant_type), not a 4M model's; load it with polymodal.tokenizers.load_tokenizer")
    ours = Path(__file__).parents[1] / "src/polymodal/weights/default/tokenizers/tok_depth_64"
    with pytest.raises(CheckpointError) as e:
        FourM.from_pretrained(ours)
    assert one_line(e) == (f"{ours / 'config.json'}: the config of a ViTVQVAE, not of a FourM model (tokenizer "
                           "folders load with polymodal.tokenizers.load_tokenizer)")


def test_a_config_that_shares_what_the_file_holds_apart_is_refused(folder):
    """4M-21 keeps separate encoder and decoder modality embeddings; a config.json without
    share_modality_embeddings (absent means shared, as 4M-7) tied them to one of the two values silently: the
    logits moved by 4.5 from the reference's."""
    cfg = json.loads((folder / "config.json").read_text())
    del cfg["share_modality_embeddings"]
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError) as e:
        FourM.from_pretrained(folder)
    assert one_line(e) == (
        f"{folder / 'model.safetensors'}: decoder_embeddings.caption.mod_emb and encoder_embeddings.caption.mod_emb "
        "differ in the file, but the config makes them one parameter (share_modality_embeddings is absent or true "
        "in the config: set it to false for separate encoder and decoder modality embeddings)")
