"""Every config field is checked by type and range when the config is built: one line naming the field, the value
and what is allowed; the command line answers it with exit code 2 and writes nothing."""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path

import numpy as np
import pytest

from polymodal import modalities
from polymodal.cli import load_recipe, main
from polymodal.config import (
    ConfigError,
    DataConfig,
    ExperimentConfig,
    MaskingConfig,
    ModelConfig,
    OptimConfig,
    TrainConfig,
    apply_overrides,
    from_dict,
    load_json,
    save_json,
    to_dict,
)
from polymodal.data.pretokenize import write_tokens
from polymodal.modalities import Kind, Modality
from polymodal.tokenizers.mlp import MLPTokenizerConfig
from polymodal.tokenizers.vqvae import VQVAEConfig

from .data.helpers import index_dataset

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TINY = CONFIGS / "fourm_tiny_cpu.py"
CLASSES = (ModelConfig, MaskingConfig, OptimConfig, DataConfig, TrainConfig, VQVAEConfig, MLPTokenizerConfig)

# The examples (each a traceback or a silently wrong run before) and a few of each kind of check.
BAD = [
    ("train.steps=abc", "train.steps: got 'abc', expected an integer >= 1"),
    ("model.dim=-4", "model.dim: got -4, expected an integer >= 1"),
    ("train.batch_size=0", "train.batch_size: got 0, expected an integer >= 1"),
    ("train.log_every=0", "train.log_every: got 0, expected an integer >= 1"),
    ("optim.base_lr=nan", "optim.base_lr: got 'nan', expected a finite number > 0"),
    ("optim.base_lr=NaN", "optim.base_lr: got nan, expected a finite number > 0"),
    ("optim.final_lr=Infinity", "optim.final_lr: got inf, expected a finite number >= 0"),
    ("train.device=tpu", "train.device: got 'tpu', expected one of 'auto', 'cpu', 'cuda', 'mps'"),
    ("train.steps=-5", "train.steps: got -5, expected an integer >= 1"),
    ("train.steps=2.5", "train.steps: got 2.5, expected an integer >= 1"),
    ("train.save_every=-1", "train.save_every: got -1, expected an integer >= 0"),
    ("train.progress=maybe", "train.progress: got 'maybe', expected true or false"),
    ("train.progress=1", "train.progress: got 1, expected true or false"),
    ("train.steps=true", "train.steps: got True, expected an integer >= 1"),
    ("optim.betas=[0.9]", "optim.betas: got [0.9], expected a list of 2 finite numbers in [0, 1)"),
    ("optim.betas=[0.9,1.0]", "optim.betas: got [0.9, 1.0], expected a list of 2 finite numbers in [0, 1)"),
    ('masking.input_alphas={"caption":-1}', "masking.input_alphas['caption']: got -1, expected a finite number >= 0"),
    ('masking.keep_schemes={"caption":"x"}',
     "masking.keep_schemes['caption']: got 'x', expected one of 'random', 'all', 'binary'"),
    ("model.vocab_sizes=[1]", "model.vocab_sizes: got [1], expected an object mapping names to integers >= 1"),
    ("model.domains_in=3", "model.domains_in: got 3, expected a list of strings"),
    ("data.on_bad_shard=ignore", "data.on_bad_shard: got 'ignore', expected one of 'raise', 'skip'"),
    ("data.seed=-1", "data.seed: got -1, expected an integer >= 0"),
]


def tiny():
    return load_recipe(str(TINY))


@pytest.mark.parametrize(("override", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_values_are_one_line_naming_field_value_and_what_is_allowed(override, message):
    with pytest.raises(ConfigError) as e:
        apply_overrides(tiny(), [override])
    assert str(e.value) == message


def test_the_command_line_answers_a_bad_value_with_exit_2_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", str(TINY), f"train.out_dir={out}", "train.steps=-5"]) == 2
    assert capsys.readouterr().err == "polymodal train: train.steps: got -5, expected an integer >= 1\n"
    assert not out.exists()  # before: exit 0 and an untrained release
    assert main(["tokenizer", "train", str(CONFIGS / "tokenizer_rgb_world64.py"), f"train.out_dir={out}",
                 "model.ema_decay=1.5"]) == 2
    assert capsys.readouterr().err == ("polymodal tokenizer train: model.ema_decay: got 1.5, expected a finite "
                                       "number in [0, 1]\n")
    assert not out.exists()


def test_integral_numbers_are_integers_and_good_values_pass():
    cfg = apply_overrides(tiny(), ["train.steps=1e3", "optim.warmup=100", "train.progress=false",
                                   "optim.betas=[0.8,0.9]", 'masking.input_alphas={"caption":0}'])
    assert cfg.train.steps == 1000 and type(cfg.train.steps) is int
    assert cfg.optim.warmup == 100.0 and cfg.optim.betas == (0.8, 0.9) and cfg.train.progress is False
    assert cfg.masking.input_alphas == {"caption": 0.0}


def test_dataclasses_built_in_python_are_checked_too():
    with pytest.raises(ConfigError, match=r"^train.keep_last: got 0, expected an integer >= 1$"):
        TrainConfig(keep_last=0)
    with pytest.raises(ConfigError, match=r"^model.codebook_size: got 0, expected an integer >= 1$"):
        VQVAEConfig("rgb", codebook_size=0)
    with pytest.raises(ConfigError, match=r"^model.fsq_levels: got \(8, 1\), expected a list of integers >= 2$"):
        MLPTokenizerConfig(8, quantizer="fsq", fsq_levels=(8, 1))
    with pytest.raises(ConfigError, match=r"^train: got a dict, expected a TrainConfig$"):
        ExperimentConfig(objective="fourm", model=tiny().model, train={"steps": 3})


def test_a_bad_value_in_a_config_json_names_the_file(tmp_path):
    save_json(tiny().train, tmp_path / "train.json")
    data = json.loads((tmp_path / "train.json").read_text())
    (tmp_path / "train.json").write_text(json.dumps({**data, "batch_size": "32"}))
    with pytest.raises(ConfigError) as e:
        load_json(TrainConfig, tmp_path / "train.json")
    assert str(e.value) == f"{tmp_path / 'train.json'}: train.batch_size: got '32', expected an integer >= 1"


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_every_number_field_declares_its_range(cls):
    """The contract that keeps new fields checked: each int or float field carries a `rule` beside it."""
    hints = typing.get_type_hints(cls)
    missing = [f.name for f in dataclasses.fields(cls) if hints[f.name] in (int, float) and "rule" not in f.metadata]
    assert not missing, f"{cls.__name__}: fields without a rule: {missing}"


def test_every_recipe_validates_and_round_trips(tmp_path, monkeypatch):
    index_dataset(tmp_path / "tokens", 8, shard_size=4, crops=1)
    monkeypatch.setenv("POLYMODAL_TOKENS", str(tmp_path / "tokens"))
    # The specialist recipe derives from a base recipe with the world's domains (registered for this test only).
    for name in ("tok_rgb@64", "tok_depth@64"):
        monkeypatch.setitem(modalities._REGISTRY, name, Modality(name, Kind.IMAGE_TOKENS, vocab_size=64, grid=(8, 8)))
    (tmp_path / "base.py").write_text(
        "from polymodal.config import ExperimentConfig, ModelConfig\n"
        "def config():\n"
        "    names = ('tok_rgb@64', 'tok_depth@64')\n"
        "    return ExperimentConfig('fourm', ModelConfig.preset('test', domains_in=names, domains_out=names))\n")
    monkeypatch.setenv("POLYMODAL_BASE_RECIPE", str(tmp_path / "base.py"))
    monkeypatch.setenv("POLYMODAL_NEW_MODALITY", "tok_a@data")  # finetune_world64's new domain: one the data holds
    # The transfer recipes build on the world's own domains: a small token dataset of them (ids only).
    world = ("tok_rgb@64", "tok_semseg@64", "tok_sam_edge@64")
    for name in world:
        monkeypatch.setitem(modalities._REGISTRY, name, Modality(name, Kind.IMAGE_TOKENS, vocab_size=64, grid=(8, 8)))
    rng = np.random.default_rng(0)
    write_tokens(tmp_path / "world_tokens", ({"__key__": f"{i:03d}", **{n: rng.integers(0, 64, (1, 64)) for n in world}}
                                             for i in range(4)), {n: modalities.get(n) for n in world}, shard_size=4)
    recipes = sorted(CONFIGS.glob("*.py"))
    assert len(recipes) >= 10
    for recipe in recipes:
        if recipe.name.startswith("transfer_"):
            monkeypatch.setenv("POLYMODAL_TOKENS", str(tmp_path / "world_tokens"))
        else:
            monkeypatch.setenv("POLYMODAL_TOKENS", str(tmp_path / "tokens"))
        cfg = load_recipe(str(recipe))
        assert isinstance(cfg, ExperimentConfig), recipe.name
        assert from_dict(ExperimentConfig, to_dict(cfg)) == cfg, recipe.name


@pytest.mark.parametrize("field,value", [("mixture", {"data/a": 1.0}), ("text_tokenizer", "tok.json"),
                                         ("val_path", "data/val")])
def test_token_stream_fields_on_another_source_are_refused(field, value):
    """Only data.source=tokens reads them; on the world's index-addressed sources they were ignored without a word."""
    from polymodal.config import ConfigError, DataConfig

    with pytest.raises(ConfigError, match=rf"^data.{field}: set for data.source='world', which does not read it"):
        DataConfig(source="world", **{field: value})
    assert getattr(DataConfig(source="tokens", **{field: value}), field) == value
