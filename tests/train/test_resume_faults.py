"""Resuming after faults: other settings are refused by name, a torn metrics line and a damaged newest checkpoint
are passed over with a warning, and the run still ends with the weights of one that never stopped."""

from __future__ import annotations

import json
import re

import pytest
import torch

from polymodal.cli import main
from polymodal.train import checkpoint as ckpt_mod
from polymodal.train.checkpoint import CheckpointManager, CheckpointSkipped, Progress, verify
from polymodal.train.loop import CheckpointMismatch, resume_differences, train
from polymodal.train.metrics import TornMetricsLine, read_metrics

from .helpers import BASE, RECIPE, assert_same_weights, release_weights, tiny_experiment

FOUR = ("train.steps=4", "train.save_every=2", "train.log_every=1")


def _steps_logged(run) -> list[int]:
    return [r["step"] for r in read_metrics(run / "metrics.jsonl") if "train/loss" in r]


def test_resume_refuses_other_settings_by_name_and_keeps_config_json(tmp_path, capsys):
    run = tmp_path / "run"
    train(tiny_experiment(run, "train.steps=2", "train.save_every=2"))
    before = (run / "config.json").read_bytes()
    with pytest.raises(CheckpointMismatch) as e:
        train(tiny_experiment(run, "train.steps=4", "model.dim=32", "model.num_heads=2", "optim.base_lr=0.1"))
    assert str(e.value) == (
        f"{run / 'checkpoints' / 'step_00000002'} was written with other settings, which a resumed run cannot "
        "change: model.dim: 64 -> 32; model.num_heads: 4 -> 2; optim.base_lr: 0.05 -> 0.1 (use the same "
        "settings, or a new train.out_dir)")
    assert (run / "config.json").read_bytes() == before  # a refused rerun leaves the run's config as it was
    # The command line: one line, exit code 2.
    args = ["train", str(RECIPE), f"train.out_dir={run}", *BASE, "train.steps=2", "train.save_every=2", "train.seed=3"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("polymodal train: ") and err.count("\n") == 1 and "train.seed: 0 -> 3" in err
    # What may change does: more steps, other logging and saving cadence.
    result = train(tiny_experiment(run, "train.steps=4", "train.log_every=1", "train.save_every=1",
                                   "train.keep_last=3"))
    assert result.steps == 4 and CheckpointManager(run).steps() == [2, 3, 4]
    assert json.loads((run / "config.json").read_text())["train"]["steps"] == 4


def test_resume_differences_ignore_what_may_change_and_name_what_appeared():
    saved = {"objective": "fourm", "model": {"dim": 64}, "train": {"steps": 2, "out_dir": "a", "seed": 0}}
    now = {"objective": "fourm", "model": {"dim": 64, "qk_norm": True},
           "train": {"steps": 9, "out_dir": "b", "seed": 0}}
    assert resume_differences(saved, now) == ['model.qk_norm: "(absent)" -> true']
    assert resume_differences(saved, {**saved, "objective": "tokenizer"}) == ['objective: "fourm" -> "tokenizer"']


def test_a_torn_metrics_line_is_dropped_on_resume(tmp_path):
    run = tmp_path / "run"
    train(tiny_experiment(run, *FOUR, "train.stop_at=2"))
    torn = len((run / "metrics.jsonl").read_text().splitlines()) + 1
    with (run / "metrics.jsonl").open("a") as f:
        f.write('{"step": 3, "train/lo')  # killed while appending
    with pytest.warns(TornMetricsLine, match=rf"metrics.jsonl: dropped line\(s\) {torn}, not whole JSON records"):
        train(tiny_experiment(run, *FOUR))
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert all(isinstance(json.loads(line), dict) for line in lines)  # every line whole: the torn one is gone
    assert _steps_logged(run) == [1, 2, 3, 4]


def test_read_metrics_leaves_out_a_torn_tail(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "lr": 0.5}\n{"step": 2, "lr": 0.25}\n{"step": 3, "l')
    assert read_metrics(path) == [{"step": 1, "lr": 0.5}, {"step": 2, "lr": 0.25}]


def _truncate(path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def test_a_damaged_newest_checkpoint_is_skipped_and_the_run_ends_as_one_that_never_stopped(tmp_path):
    reference = train(tiny_experiment(tmp_path / "straight", *FOUR))
    run = tmp_path / "run"
    train(tiny_experiment(run, *FOUR))
    newest = run / "checkpoints" / "step_00000004"
    _truncate(newest / "model.safetensors")  # a power loss after the rename, before the data reached the disk
    with pytest.warns(CheckpointSkipped, match=r"skipping damaged checkpoint .*step_00000004 \(model.safetensors: "):
        result = train(tiny_experiment(run, *FOUR))
    assert result.steps == 4 and verify(newest) is None  # resumed at step 2, step 4 written again
    assert_same_weights(release_weights(reference.run_dir), release_weights(run))
    assert _steps_logged(run) == [1, 2, 3, 4]


def test_no_checkpoint_that_verifies_is_one_line_not_a_fresh_start(tmp_path):
    run = tmp_path / "run"
    train(tiny_experiment(run, "train.steps=2", "train.save_every=2"))
    (run / "checkpoints" / "step_00000002" / "state.json").write_text("")
    with pytest.warns(CheckpointSkipped), pytest.raises(CheckpointMismatch, match=r"no checkpoint in .* verifies "
                                                        r"\(.*step_00000002: state.json: "):
        train(tiny_experiment(run, "train.steps=2", "train.save_every=2"))


def _tiny_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    manager = CheckpointManager(tmp_path / "run")
    config = {"objective": "fourm", "model": {"dim": 2}}
    return manager, manager.save(model, optimizer, Progress(step=1), config), model, optimizer


@pytest.mark.parametrize(("name", "damage", "problem"), [
    ("model.safetensors", lambda p: _truncate(p, 0.9), "model.safetensors: .*incomplete metadata"),
    ("optimizer.safetensors", lambda p: p.write_bytes(b""), "optimizer.safetensors: .*header too small"),
    ("state.json", lambda p: _truncate(p, 0.5), "state.json: Unterminated string|state.json: Expecting"),
    ("config.json", lambda p: p.write_text("[]"), "config.json lacks objective, model"),
    ("config.json", lambda p: p.unlink(), "config.json is missing"),
])
def test_verify_names_the_damaged_file(tmp_path, name, damage, problem):
    _, path, _, _ = _tiny_checkpoint(tmp_path)
    assert verify(path) is None
    damage(path / name)
    assert verify(path) is not None
    assert re.match(problem, verify(path)), verify(path)


def test_a_checkpoint_reaches_the_disk_before_its_rename(tmp_path, monkeypatch):
    events = []
    real_replace = ckpt_mod.os.replace
    monkeypatch.setattr(ckpt_mod, "fsync_path", lambda p: events.append(("fsync", str(p))))
    monkeypatch.setattr(ckpt_mod.os, "replace", lambda a, b: (events.append(("rename", str(b))),
                                                              real_replace(a, b)))
    _, path, _, _ = _tiny_checkpoint(tmp_path)
    rename = events.index(("rename", str(path)))
    synced_before = {p.rsplit("/", 1)[-1] for kind, p in events[:rename] if kind == "fsync"}
    assert set(ckpt_mod.FILES) <= synced_before  # every file's data
    assert any(p.rsplit("/", 1)[-1].startswith(".tmp-step_00000001") for kind, p in events[:rename])  # its folder
    assert ("fsync", str(path.parent)) in events[rename + 1:]  # and the rename itself
