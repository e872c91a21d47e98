"""Which checkpoints a run keeps: the newest ``keep_last`` and the best by validation loss (lowest), recorded in
``checkpoints/best.json``. The validation losses are scripted and the kept folders written out by hand."""

from __future__ import annotations

import json

import pytest
import torch

from polymodal.train.checkpoint import CheckpointManager, Progress

# (step, validation loss or None when the step did not evaluate, steps on disk after its save, best step)
SCRIPT = [
    (10, 5.0, {10}, 10),
    (20, 4.0, {10, 20}, 20),
    (30, 4.5, {20, 30}, 20),  # 10 falls out of the last two and is not the best
    (40, 3.0, {30, 40}, 40),  # a new best: 20 is no longer kept for being the best
    (50, 3.5, {40, 50}, 40),
    (60, 3.8, {40, 50, 60}, 40),  # 40 is older than the last two but the best: kept
    (70, None, {40, 60, 70}, 40),  # no evaluation: the best stays
    (80, 2.0, {70, 80}, 80),  # a new best among the last two: the old best goes
]


def tiny():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(4, 3)).square().sum().backward()
    opt.step()
    return model, opt


def on_disk(ckpt: CheckpointManager) -> set[int]:
    return {int(p.name.removeprefix("step_")) for p in ckpt.dir.iterdir() if p.name.startswith("step_")}


def best_json(ckpt: CheckpointManager) -> dict:
    return json.loads((ckpt.dir / "best.json").read_text())


def test_keeps_the_last_two_and_the_best(tmp_path):
    model, opt = tiny()
    ckpt = CheckpointManager(tmp_path, keep_last=2)
    progress = Progress()
    best_metric = {10: 5.0, 20: 4.0, 40: 3.0, 80: 2.0}
    for step, loss, kept, best in SCRIPT:
        progress.step = step
        ckpt.save(model, opt, progress, {"objective": "test", "model": {}}, metric=loss)
        assert on_disk(ckpt) == kept, step
        assert ckpt.steps() == sorted(kept)
        assert best_json(ckpt) == {"step": best, "metric": best_metric[best]}, step
        assert (progress.best_step, progress.best_metric) == (best, best_metric[best])
    assert ckpt.latest() == ckpt.path(80)


def test_keep_last_three_without_evaluations_keeps_the_newest_three(tmp_path):
    model, opt = tiny()
    ckpt = CheckpointManager(tmp_path, keep_last=3)
    progress = Progress()
    for step in (1, 2, 3, 4, 5):
        progress.step = step
        ckpt.save(model, opt, progress, {"objective": "test", "model": {}})
    assert on_disk(ckpt) == {3, 4, 5} and not (ckpt.dir / "best.json").exists()
    assert progress.best_step is None


def test_the_best_survives_a_resume(tmp_path):
    """A restarted run reads the best step from the checkpoint it resumes, so it goes on keeping it."""
    model, opt = tiny()
    first = CheckpointManager(tmp_path, keep_last=2)
    progress = Progress()
    for step, loss in ((10, 3.0), (20, 4.0), (30, 5.0)):
        progress.step = step
        first.save(model, opt, progress, {"objective": "test", "model": {}}, metric=loss)
    assert on_disk(first) == {10, 20, 30}

    again = CheckpointManager(tmp_path, keep_last=2)
    resumed = again.load(again.latest(), *tiny())
    assert (resumed.step, resumed.best_step, resumed.best_metric) == (30, 10, 3.0)
    resumed.step = 40
    again.save(model, opt, resumed, {"objective": "test", "model": {}}, metric=3.5)  # worse than step 10's 3.0
    assert on_disk(again) == {10, 30, 40} and best_json(again) == {"step": 10, "metric": 3.0}


@pytest.mark.parametrize("keep_last", [1, 2])
def test_other_ranks_write_nothing_but_agree_on_the_best(tmp_path, keep_last):
    model, opt = tiny()
    ckpt = CheckpointManager(tmp_path, keep_last=keep_last, is_main=False)
    progress = Progress(step=5)
    assert ckpt.save(model, opt, progress, {"objective": "test", "model": {}}, metric=1.5) is None
    assert not (tmp_path / "checkpoints").exists()
    assert (progress.best_step, progress.best_metric) == (5, 1.5)


def test_the_loop_ranks_checkpoints_by_their_validation_loss(tmp_path):
    """Through `train`: the best checkpoint is the one whose logged ``val/loss`` is lowest, and its loss is what
    best.json holds (not the training loss, not the last step's)."""
    from polymodal.train.loop import train

    from .helpers import tiny_experiment

    run = train(tiny_experiment(tmp_path / "run", "train.eval_every=4", "train.keep_last=1")).run_dir
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    val = {r["step"]: r["val/loss"] for r in rows if "val/loss" in r}
    assert sorted(val) == [4, 8, 12]  # saves at 4, 8, 12, each after an evaluation
    best = min(val, key=val.get)
    ckpt = CheckpointManager(run, keep_last=1)
    assert best_json(ckpt) == {"step": best, "metric": val[best]}
    assert on_disk(ckpt) == {best, 12}
