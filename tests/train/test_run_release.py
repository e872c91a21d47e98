"""The release folder is written beside the run's other files and renamed into place: a kill while it is written
leaves the previous release whole (or none), never a folder that stops half-way; a rerun ends with a complete one."""

from __future__ import annotations

import pytest

from polymodal.model import FourM
from polymodal.train.loop import train
from polymodal.train.objectives import FourMObjective

from .helpers import assert_same_weights, release_weights, tiny_experiment

SHORT = ("train.steps=4", "train.save_every=2")


def _killed_half_way(monkeypatch):
    """Make the export stop as a kill would: after the first file, before the weights."""
    def export(self, state, path):
        path.mkdir(parents=True, exist_ok=True)
        (path / "config.json").write_text('{"half')
        raise KeyboardInterrupt

    monkeypatch.setattr(FourMObjective, "export", export)


def test_a_kill_while_the_release_is_replaced_leaves_the_old_one_whole(tmp_path, monkeypatch):
    run = tmp_path / "run"
    six = ("train.steps=6", "train.save_every=2")
    train(tiny_experiment(run, *six, "train.stop_at=4"))  # released at step 4, the schedule that of 6 steps
    before = release_weights(run)
    with monkeypatch.context() as m:
        _killed_half_way(m)
        with pytest.raises(KeyboardInterrupt):
            train(tiny_experiment(run, *six))
    FourM.from_pretrained(run / "release")  # the old release, whole
    assert_same_weights(release_weights(run), before)
    (run / ".release.tmp-99999").mkdir()  # what a kill -9 during the export leaves
    assert train(tiny_experiment(run, *six)).steps == 6  # resumed at step 6: only the export
    straight = train(tiny_experiment(tmp_path / "straight", *six))
    assert_same_weights(release_weights(run), release_weights(straight.run_dir))
    assert sorted(p.name for p in run.iterdir() if "release" in p.name) == ["release"]


def test_a_first_run_killed_in_its_export_has_no_release_until_a_rerun_writes_it(tmp_path, monkeypatch):
    run = tmp_path / "run"
    with monkeypatch.context() as m:
        _killed_half_way(m)
        with pytest.raises(KeyboardInterrupt):
            train(tiny_experiment(run, *SHORT))
    assert not (run / "release").exists()
    result = train(tiny_experiment(run, *SHORT))
    assert result.release_dir == run / "release"
    FourM.from_pretrained(run / "release")
