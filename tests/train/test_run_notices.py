"""The notices of `polymodal train`: one line each on stderr, ``notice: ...``, as the command line's other notices."""

from __future__ import annotations

from polymodal.cli import main

from .helpers import BASE, RECIPE


def _train(run, *overrides: str) -> list[str]:
    return ["train", str(RECIPE), *BASE, f"train.out_dir={run}", *overrides]


def test_a_resumed_run_says_where_it_continues_from(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(_train(run, "train.steps=4", "train.save_every=2")) == 0
    assert capsys.readouterr().err == ""  # a fresh start: no notice
    assert main(_train(run, "train.steps=6", "train.save_every=2")) == 0
    assert capsys.readouterr().err == f"notice: resuming from {run / 'checkpoints' / 'step_00000004'} (step 4 of 6)\n"
