"""The training engine: schedules, parameter groups, a loss that falls, release export, bad input."""

from __future__ import annotations

import errno
import json
import math

import pytest
import torch

from polymodal.config import ConfigError, OptimConfig, apply_overrides
from polymodal.model import FourM
from polymodal.train import checkpoint as ckpt_mod
from polymodal.train import loop as loop_mod
from polymodal.train.checkpoint import CheckpointManager, CheckpointWriteError
from polymodal.train.loop import CheckpointMismatch, TrainingDiverged, train
from polymodal.train.optim import lr_at, param_groups, peak_lr

from .helpers import assert_same_weights, release_weights, tiny_experiment


def test_lr_schedule_warmup_then_cosine():
    kw = dict(peak=1.0, final=0.1)
    assert lr_at(0, 10, 100, **kw) == 0.0
    assert lr_at(5, 10, 100, **kw) == pytest.approx(0.5)
    assert lr_at(10, 10, 100, **kw) == pytest.approx(1.0)
    assert lr_at(55, 10, 100, **kw) == pytest.approx(0.55)
    assert lr_at(100, 10, 100, **kw) == pytest.approx(0.1)
    assert lr_at(100, 10, 100, schedule="linear", **kw) == pytest.approx(0.1)
    assert peak_lr(OptimConfig(base_lr=1e-4), 512) == pytest.approx(2e-4)


def test_no_weight_decay_on_norms_biases_and_by_default_embeddings_and_positions():
    from tests.conftest import tiny_config

    model = FourM(tiny_config(qkv_bias=True, norm_bias=True))
    decay, no_decay = param_groups(model, 0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    assert all(n.endswith("weight") for n in decayed)
    assert not any(k in n for n in decayed for k in ("norm", "token_emb", "pos_emb", "mod_emb", "mask_token"))
    assert "encoder.0.attn.qkv.weight" in decayed and "encoder.0.mlp.fc1.weight" in decayed
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    # 4M's own recipe (optim.decay_embeddings): only norms and biases are exempt
    decay4m, no_decay4m = param_groups(model, 0.05, decay_embeddings=True)
    decayed4m = {names[id(p)] for p in decay4m["params"]}
    assert decayed4m > decayed and "mask_token" in decayed4m
    assert any("token_emb" in n for n in decayed4m) and any("mod_emb" in n for n in decayed4m)
    assert all(p.ndim == 1 for p in no_decay4m["params"])


def test_loss_falls_and_release_matches_the_trained_model(tmp_path):
    cfg = tiny_experiment(tmp_path / "run", "train.steps=40", "train.save_every=20", "train.eval_every=20")
    result = train(cfg)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train/loss"] for r in records if "train/loss" in r]
    assert losses[-1] < 0.7 * losses[0], losses
    assert any("val/loss" in r for r in records)
    assert (tmp_path / "run" / "loss_curves.png").stat().st_size > 1000
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["train"]["steps"] == 40 and saved["model"]["dim"] == 64
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir() if p.name.startswith("step_")) == [
        "step_00000020", "step_00000040"]
    # The release loads alone and computes the same logits as the model in the last checkpoint.
    released = FourM.from_pretrained(result.release_dir).eval()
    trained = FourM(cfg.model)
    CheckpointManager(tmp_path / "run").load(tmp_path / "run" / "checkpoints" / "step_00000040", trained,
                                             torch.optim.AdamW(trained.parameters()))
    from polymodal.train.objectives import make_objective

    batch = make_objective(cfg).val_batches(0, 1)[0]
    with torch.no_grad():
        a, b = released(batch), trained.eval()(batch)
    for name in a:
        assert torch.equal(a[name].logits, b[name].logits)
    # A checkpoint folder loads as the model it holds, mid-run (bundle, eval and generate read it).
    mid = FourM.from_pretrained(tmp_path / "run" / "checkpoints" / "step_00000040").eval()
    with torch.no_grad():
        c = mid(batch)
    assert all(torch.equal(a[name].logits, c[name].logits) for name in a)


def test_resume_after_a_crash_inside_a_checkpoint_write(tmp_path, monkeypatch):
    reference = train(tiny_experiment(tmp_path / "straight"))
    calls = {"n": 0}
    real = ckpt_mod.save_file

    def dying_save(tensors, path, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 3:  # the second checkpoint's model file is written, its optimizer file is not
            raise KeyboardInterrupt("simulated kill in the middle of a checkpoint")
        return real(tensors, path, *a, **kw)

    monkeypatch.setattr(ckpt_mod, "save_file", dying_save)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_experiment(tmp_path / "crashed"))
    ckdir = tmp_path / "crashed" / "checkpoints"
    assert any(p.name.startswith(".tmp-") for p in ckdir.iterdir())  # the half-written one
    assert CheckpointManager(tmp_path / "crashed").steps() == [4]
    monkeypatch.setattr(ckpt_mod, "save_file", real)
    train(tiny_experiment(tmp_path / "crashed"))
    assert not any(p.name.startswith(".tmp-") for p in ckdir.iterdir())
    assert_same_weights(release_weights(reference.run_dir), release_weights(tmp_path / "crashed"))


def test_stop_at_pauses_on_the_full_schedule_and_a_rerun_continues(tmp_path):
    reference = train(tiny_experiment(tmp_path / "straight", "train.log_every=1"))
    paused = train(tiny_experiment(tmp_path / "paused", "train.log_every=1", "train.stop_at=3"))
    assert paused.steps == 3 and CheckpointManager(tmp_path / "paused").steps()[-1] == 3
    records = [json.loads(x) for x in (tmp_path / "paused" / "metrics.jsonl").read_text().splitlines()]
    straight = [json.loads(x) for x in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    lr_straight = {r["step"]: r["lr"] for r in straight if "lr" in r}
    assert [r["step"] for r in records if "lr" in r] == [1, 2, 3]
    assert all(r["lr"] == pytest.approx(lr_straight[r["step"]]) for r in records if "lr" in r)  # same schedule
    assert (paused.release_dir / "model.safetensors").is_file()  # a pause still releases its weights
    resumed = train(tiny_experiment(tmp_path / "paused", "train.log_every=1"))
    assert resumed.steps == reference.steps
    assert_same_weights(release_weights(reference.run_dir), release_weights(tmp_path / "paused"))
    with pytest.raises(ConfigError, match="stop_at"):
        tiny_experiment(tmp_path / "bad", "train.stop_at=-1")


def test_full_disk_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    real = ckpt_mod.save_file
    calls = {"n": 0}

    def full_disk(tensors, path, *a, **kw):
        calls["n"] += 1
        if calls["n"] >= 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(tensors, path, *a, **kw)

    monkeypatch.setattr(ckpt_mod, "save_file", full_disk)
    with pytest.raises(CheckpointWriteError, match="step_00000008.*previous checkpoints are intact"):
        train(tiny_experiment(tmp_path / "run"))
    manager = CheckpointManager(tmp_path / "run")
    assert manager.steps() == [4]
    assert not any(p.name.startswith(".tmp-") for p in manager.dir.iterdir())
    model = FourM(tiny_experiment(tmp_path / "run").model)
    progress = manager.load(manager.latest(), model, torch.optim.AdamW(model.parameters()))
    assert progress.step == 4


def test_nan_loss_stops_with_step_and_modalities(tmp_path, monkeypatch):
    from polymodal.train.objectives import FourMObjective

    real = FourMObjective.loss
    state = {"calls": 0}

    def poisoned(self, *args):
        loss, sums = real(self, *args)
        state["calls"] += 1
        if state["calls"] > 6:
            return loss * math.nan, sums * math.nan
        return loss, sums

    monkeypatch.setattr(FourMObjective, "loss", poisoned)
    with pytest.raises(TrainingDiverged, match=r"at step 6 \(tok_shape@syn=nan.*last good checkpoint: .*step_00000004"):
        train(tiny_experiment(tmp_path / "run"))
    assert CheckpointManager(tmp_path / "run").steps() == [4]


def test_checkpoint_from_another_config_is_refused(tmp_path):
    train(tiny_experiment(tmp_path / "run", "train.steps=4"))
    with pytest.raises(CheckpointMismatch, match="model.dim: 64 -> 32; model.num_heads: 4 -> 2 "):
        train(tiny_experiment(tmp_path / "run", "train.steps=8", "model.dim=32", "model.num_heads=2"))


def test_unknown_override_names_closest_keys(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown config key 'train.stpes'; closest: train.steps"):
        tiny_experiment(tmp_path, "train.stpes=3")
    with pytest.raises(ConfigError, match="precision"):
        apply_overrides(tiny_experiment(tmp_path), ["train.precision=fp8"])


def test_bf16_training_runs_and_stays_finite(tmp_path):
    result = train(tiny_experiment(tmp_path / "run", "train.precision=bf16", "train.steps=6"))
    assert math.isfinite(result.final_loss)
    assert all(torch.isfinite(t).all() for t in release_weights(tmp_path / "run").values())


def test_grad_accumulation_matches_one_big_batch(tmp_path):
    a = train(tiny_experiment(tmp_path / "a", "train.steps=4"))
    b = train(tiny_experiment(tmp_path / "b", "train.steps=4", "train.grad_accum=4"))
    assert_same_weights(release_weights(a.run_dir), release_weights(b.run_dir), atol=1e-5)


def test_the_train_command_runs_the_loop_on_the_recipe_with_its_overrides(tmp_path, monkeypatch):
    """`polymodal train RECIPE KEY=VALUE...` hands the loop's `train` exactly the recipe's config with the overrides
    applied (what `tiny_experiment` builds from the same recipe and overrides)."""
    from types import SimpleNamespace

    from polymodal.cli import main

    from .helpers import BASE, RECIPE

    seen = []
    monkeypatch.setattr(loop_mod, "train", lambda cfg: seen.append(cfg) or SimpleNamespace(release_dir=None))
    overrides = ["train.steps=3", "model.decoder_depth=1"]
    assert main(["train", str(RECIPE), f"train.out_dir={tmp_path}", *BASE, *overrides]) == 0
    assert seen == [tiny_experiment(tmp_path, *overrides)]
    assert (seen[0].train.steps, seen[0].model.decoder_depth, seen[0].train.out_dir) == (3, 1, str(tmp_path))


def test_activation_checkpointing_changes_nothing(tmp_path):
    a = train(tiny_experiment(tmp_path / "a", "train.steps=3"))
    b = train(tiny_experiment(tmp_path / "b", "train.steps=3", "train.activation_checkpointing=true"))
    assert_same_weights(release_weights(a.run_dir), release_weights(b.run_dir), atol=1e-6)
