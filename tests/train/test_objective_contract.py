"""The objective contract, run over every entry of `config.OBJECTIVES` (as timm runs one battery over every model):
one CPU step gives a finite loss and moves the weights; a run paused and resumed ends with the weights of a run that
never stopped; a run's config.json and its release folder load in a fresh interpreter that imported nothing else.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from polymodal import config as config_lib
from polymodal.config import DataConfig, ExperimentConfig, OptimConfig, TrainConfig, apply_overrides
from polymodal.data.indexed import SOURCES, register_source
from polymodal.tokenizers.mlp import MLPTokenizerConfig
from polymodal.tokenizers.vqvae import VQVAEConfig
from polymodal.train.loop import train
from polymodal.train.objectives import Objective, make_objective, objective_class
from polymodal.train.optim import build_optimizer
from polymodal.train.step import train_step

from .helpers import assert_same_weights, release_weights, tiny_experiment

RUN = ["train.progress=false", "train.tensorboard=false", "train.log_every=1"]


def _vectors(seed: int, index: int) -> dict[str, np.ndarray]:
    g = np.random.default_rng([seed, index])
    return {"vec12": g.standard_normal(12).astype(np.float32)}


def _tokenizer(out_dir) -> ExperimentConfig:
    # 32 px edge maps rendered by the world (deterministic by index), a 4x4-token ViT VQ-VAE
    return ExperimentConfig(
        objective="tokenizer",
        model=VQVAEConfig("edge", name="tok_canny_edge@32", image_size=32, patch_size=8, dim=32, encoder_depth=1,
                          decoder_depth=1, num_heads=4, codebook_size=32, code_dim=8),
        data=DataConfig(source="world", num_samples=16, val_samples=4),
        optim=OptimConfig(base_lr=0.05, weight_decay=0.0),
        train=TrainConfig(out_dir=str(out_dir), steps=4, batch_size=4, save_every=2, eval_every=2))


def _tokenizer_mlp(out_dir) -> ExperimentConfig:
    if "contract_vectors" not in SOURCES:
        register_source("contract_vectors", _vectors)
    return ExperimentConfig(
        objective="tokenizer_mlp",
        model=MLPTokenizerConfig(in_dim=12, name="tok_vec12", num_tokens=2, codebook_size=16, code_dim=4, hidden=16,
                                 standardize=True, loss="mse"),
        data=DataConfig(source="contract_vectors", num_samples=32, val_samples=4),
        optim=OptimConfig(base_lr=0.05, weight_decay=0.0),
        train=TrainConfig(out_dir=str(out_dir), steps=4, batch_size=4, save_every=2, eval_every=2))


def _fourm(out_dir) -> ExperimentConfig:
    return tiny_experiment(out_dir, "train.steps=4", "train.save_every=2", "train.eval_every=2")


# A tiny run of every objective: a new entry in config.OBJECTIVES fails test_every_objective_has_a_tiny_run until it
# gets one here.
TINY = {"fourm": _fourm, "tokenizer": _tokenizer, "tokenizer_mlp": _tokenizer_mlp}


def test_every_objective_has_a_tiny_run():
    assert set(TINY) == set(config_lib.OBJECTIVES)


@pytest.mark.parametrize("name", sorted(config_lib.OBJECTIVES))
def test_the_table_names_an_objective_and_a_model_config(name):
    spec = config_lib.OBJECTIVES[name]
    assert issubclass(objective_class(name), Objective)
    assert isinstance(config_lib.import_path(spec.model_config), type)


def test_an_unknown_objective_is_one_line_naming_the_known_ones():
    with pytest.raises(config_lib.ConfigError, match=r"^unknown objective 'fourn'; known: fourm, tokenizer, "):
        ExperimentConfig(objective="fourn", model={})


@pytest.mark.parametrize("name", sorted(TINY))
def test_one_cpu_step_gives_a_finite_loss_and_moves_every_trained_weight(name, tmp_path):
    cfg = apply_overrides(TINY[name](tmp_path / "run"), RUN)
    torch.manual_seed(0)
    objective = make_objective(cfg)
    model = objective.build_model()
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    optimizer = build_optimizer(model, cfg.optim, cfg.train.batch_size)
    micro = objective.micro_batches(0, 0, 1)
    stats = objective.step_stats(micro)
    out = train_step(model, micro, optimizer, objective, cfg, stats=stats)
    summary = objective.summarize(out.sums, stats)
    assert math.isfinite(summary["loss"]) and summary["loss"] > 0, summary
    assert math.isfinite(float(out.grad_norm)) and float(out.grad_norm) > 0
    moved = [k for k, v in model.named_parameters() if not torch.equal(v.detach(), before[k])]
    assert moved and all(torch.isfinite(v).all() for v in model.parameters())


@pytest.mark.parametrize("name", sorted(TINY))
def test_a_paused_and_resumed_run_ends_with_the_weights_of_a_straight_run(name, tmp_path):
    straight = train(apply_overrides(TINY[name](tmp_path / "straight"), RUN))
    paused = train(apply_overrides(TINY[name](tmp_path / "paused"), [*RUN, "train.stop_at=2"]))
    assert (straight.steps, paused.steps) == (4, 2)
    resumed = train(apply_overrides(TINY[name](tmp_path / "paused"), RUN))
    assert resumed.steps == 4 and resumed.final_loss == straight.final_loss
    assert_same_weights(release_weights(straight.run_dir), release_weights(resumed.run_dir))


# How a fresh interpreter loads each objective's release folder.
LOAD_RELEASE = {"fourm": "from polymodal.model import FourM as C; load = C.from_pretrained",
                "tokenizer": "from polymodal.tokenizers import load_tokenizer as load",
                "tokenizer_mlp": "from polymodal.tokenizers import load_tokenizer as load"}


@pytest.mark.parametrize("name", sorted(TINY))
def test_a_runs_config_json_and_release_load_in_a_fresh_interpreter(name, tmp_path):
    cfg = apply_overrides(TINY[name](tmp_path / "run"), [*RUN, "train.steps=1", "data.val_samples=0"])
    result = train(cfg)
    saved = tmp_path / "run" / "config.json"
    code = ("import json, sys; from polymodal.config import ExperimentConfig, load_json, to_dict; "
            "cfg = load_json(ExperimentConfig, sys.argv[1]); print(json.dumps(to_dict(cfg)))")
    proc = subprocess.run([sys.executable, "-c", code, str(saved)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout) == json.loads(saved.read_text())
    code = f"import sys; {LOAD_RELEASE[name]}; print(type(load(sys.argv[1])).__name__)"
    proc = subprocess.run([sys.executable, "-c", code, str(result.release_dir)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == type(make_objective(cfg).build_model()).__name__


def test_every_tokenizer_class_of_the_table_is_the_class_its_name_says():
    from polymodal.tokenizers.base import TOKENIZER_CLASSES, tokenizer_class

    assert {"ViTVQVAE", "MLPTokenizer", "TextTokenizer"} <= set(TOKENIZER_CLASSES)
    for name in TOKENIZER_CLASSES:
        cls = tokenizer_class(name)
        assert cls.__name__ == name and callable(cls.from_pretrained)  # save_folder writes _class_name = __name__
    with pytest.raises(ValueError, match=r"^x: unknown tokenizer class 'Nope'; known: MLPTokenizer, "):
        tokenizer_class("Nope", "x")
