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


def test_a_damaged_checkpoint_is_a_one_line_notice_and_the_run_resumes_from_the_one_before(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(_train(run, "train.steps=4", "train.save_every=2")) == 0
    newest = run / "checkpoints" / "step_00000004" / "model.safetensors"
    newest.write_bytes(newest.read_bytes()[:100])  # cut short: its header no longer covers it
    capsys.readouterr()
    assert main(_train(run, "train.steps=4", "train.save_every=2")) == 0
    skipped, resumed = capsys.readouterr().err.splitlines()  # two lines: no warning format, no source line
    assert skipped.startswith(f"notice: skipping damaged checkpoint {newest.parent} (model.safetensors: ")
    assert skipped.endswith(")") and "Warning" not in skipped
    assert resumed == f"notice: resuming from {run / 'checkpoints' / 'step_00000002'} (step 2 of 4)"
