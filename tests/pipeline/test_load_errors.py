"""Damaged model and tokenizer files: every command that loads them (generate, bundle, data tokenize, eval, info,
retrieve) says so in one line that names the file, with exit code 2; the library raises one error type per loader
(`TokenizerLoadError`, `CheckpointError`), both ValueErrors."""

from __future__ import annotations

import re
import shutil

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from polymodal.cli import main
from polymodal.data.world import render_sample, synthesize
from polymodal.eval import command as eval_command
from polymodal.model.checkpoint import CheckpointError
from polymodal.pipeline import Pipeline, PipelineError
from polymodal.tokenizers import TokenizerLoadError, load_tokenizer

TOKENIZER = "tokenizers/tok_depth_pt"  # in the tiny bundle of conftest.py


def truncate(file) -> None:
    data = file.read_bytes()
    file.write_bytes(data[: len(data) // 2])


def garble(file) -> None:
    file.write_bytes(b"\x00\x01not a safetensors file" * 7)


def reshape_first(file, key_part: str) -> tuple[str, tuple, tuple]:
    """Rewrite ``file`` with its first tensor whose name holds ``key_part`` one row longer; (key, old, new)."""
    sd = load_file(str(file))
    key = next(k for k in sd if key_part in k and sd[k].ndim == 2)
    old = tuple(sd[key].shape)
    sd[key] = torch.zeros(old[0] + 1, old[1])
    save_file(sd, str(file), metadata={"format": "pt"})
    return key, old, (old[0] + 1, old[1])


@pytest.fixture()
def damaged(bundle, tmp_path):
    """A copy of the tiny bundle to damage, a scene image, a 2-sample world."""
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    Image.fromarray(render_sample(1, 0, 64)["rgb"]).save(tmp_path / "scene.png")
    return copy


def run(capsys, *args) -> str:
    """The command's one stderr line (asserting exit code 2 and no traceback)."""
    rc = main([str(a) for a in args])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err and err.count("\n") == 1, err
    return err.strip()


def commands(bundle, tmp_path) -> dict[str, list]:
    """Every command that loads a bundle, with arguments that would otherwise run."""
    return {
        "generate": ["generate", "--model", bundle, "--from", f"rgb={tmp_path / 'scene.png'}", "--to", "depth",
                     "--out", tmp_path / "gen"],
        "bundle": ["bundle", "--model", bundle, "--out", tmp_path / "rebundled"],
        "eval": ["eval", "--model", bundle, "--n", "1", "--tasks", "depth", "--out", tmp_path / "eval"],
        "info": ["info", "--model", bundle],
    }


@pytest.mark.parametrize("damage", [truncate, garble])
def test_a_damaged_tokenizer_file_is_one_line_naming_it(damaged, tmp_path, capsys, damage):
    damage(damaged / TOKENIZER / "model.safetensors")
    expected = f"tokenizer folder {damaged / TOKENIZER}: model.safetensors is truncated or corrupt ("
    for name, args in commands(damaged, tmp_path).items():
        assert run(capsys, *args).startswith(f"polymodal {name}: {expected}")
    assert not (tmp_path / "gen").exists() and not (tmp_path / "rebundled").exists()
    synthesize(tmp_path / "world", 2, 32, seed=0, shard_size=2)
    err = run(capsys, "data", "tokenize", tmp_path / "world", "--tokenizer", f"depth={damaged / TOKENIZER}",
              "--out", tmp_path / "tokens", "--quiet")
    assert err.startswith(f"polymodal data tokenize: {expected}") and not (tmp_path / "tokens").exists()
    with pytest.raises(TokenizerLoadError, match="truncated or corrupt"):
        load_tokenizer(damaged / TOKENIZER)


@pytest.mark.parametrize("damage", [truncate, garble])
def test_a_damaged_model_file_is_one_line_naming_it_before_eval_renders_anything(damaged, tmp_path, capsys,
                                                                                   monkeypatch, damage):
    damage(damaged / "model" / "model.safetensors")

    def no_rendering(*a, **k):
        raise AssertionError("the test set was rendered before the model loaded")

    monkeypatch.setattr(eval_command, "world_test_set", no_rendering)
    expected = f"model folder {damaged / 'model'}: model.safetensors is truncated or corrupt ("
    for name, args in commands(damaged, tmp_path).items():
        assert run(capsys, *args).startswith(f"polymodal {name}: {expected}")
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        Pipeline.from_pretrained(damaged)


def test_weights_of_the_wrong_shape_name_the_tensor_both_shapes_and_the_file(bundle, damaged, tmp_path, capsys):
    file = damaged / "model" / "model.safetensors"
    key, old, new = reshape_first(file, "encoder.")
    line = f"{file}: tensor {key} has shape {new} in the file, the config expects {old}"
    for name, args in commands(damaged, tmp_path).items():
        assert run(capsys, *args) == f"polymodal {name}: {line}"

    shutil.copy(bundle / "model" / "model.safetensors", file)  # the model whole again; now a tokenizer's shape
    tok_file = damaged / TOKENIZER / "model.safetensors"
    key, old, new = reshape_first(tok_file, "attn.qkv.weight")
    line = (f"{tok_file}: tensor {key} has shape {new} in the file, the config ({damaged / TOKENIZER / 'config.json'}) "
            f"expects {old}")
    for name, args in commands(damaged, tmp_path).items():
        assert run(capsys, *args) == f"polymodal {name}: {line}"


def test_a_tokenizer_file_missing_a_tensor_is_named(damaged):
    file = damaged / TOKENIZER / "model.safetensors"
    sd = load_file(str(file))
    gone = sorted(sd)[0]
    del sd[gone]
    save_file(sd, str(file))
    with pytest.raises(TokenizerLoadError, match=rf"{re.escape(str(file))}: .* missing \(1\): {re.escape(gone)}$"):
        load_tokenizer(damaged / TOKENIZER)


def test_a_broken_pipeline_file_is_named(damaged, tmp_path, capsys):
    (damaged / "pipeline.json").write_text('{"format": "polymodal-pipeline", "tokenizers": ')
    err = run(capsys, *commands(damaged, tmp_path)["generate"])
    assert err.startswith(f"polymodal generate: {damaged / 'pipeline.json'}: not valid JSON")
    (damaged / "pipeline.json").write_text('{"format": "polymodal-pipeline", "modalities": {"x": {"name": "x"}}}')
    with pytest.raises(PipelineError, match=r"modality 'x' has a bad definition in pipeline.json"):
        Pipeline.from_pretrained(damaged)
