"""The notices of `polymodal train`: one line each on stderr, ``notice: ...``, as the command line's other notices."""

from __future__ import annotations

from dataclasses import replace

from polymodal.cli import main
from polymodal.data.sources import TokenSource, read_token_shard
from polymodal.train.loop import train

from ..data.test_pretokenize_train import experiment, tokens  # noqa: F401  (tokens: a token dataset fixture)
from .helpers import BASE, RECIPE


def _train(run, *overrides: str) -> list[str]:
    return ["train", str(RECIPE), *BASE, f"train.out_dir={run}", *overrides]


def test_a_resumed_run_says_where_it_continues_from(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(_train(run, "train.steps=4", "train.save_every=2")) == 0
    assert capsys.readouterr().err == ""  # a fresh start: no notice
    assert main(_train(run, "train.steps=6", "train.save_every=2")) == 0
    assert capsys.readouterr().err == f"notice: resuming from {run / 'checkpoints' / 'step_00000004'} (step 4 of 6)\n"
    # a rerun that asks for fewer steps than were done: said so, not "(step 6 of 3)"
    assert main(_train(run, "train.steps=3", "train.save_every=2")) == 0
    assert capsys.readouterr().err == (f"notice: resuming from {run / 'checkpoints' / 'step_00000006'} (step 6: "
                                       "train.steps=3 is reached, nothing left to train)\n")


def test_a_torn_metrics_line_is_a_one_line_notice(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(_train(run, "train.steps=2", "train.save_every=2")) == 0
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 3, "train/lo')  # a kill while a line was appended
    capsys.readouterr()
    assert main(_train(run, "train.steps=4", "train.save_every=2")) == 0
    lines = capsys.readouterr().err.splitlines()
    assert any(x.startswith("notice: ") and "metrics.jsonl" in x for x in lines), lines
    assert not any("Warning" in x or "warn(" in x for x in lines), lines


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


def test_validation_from_the_training_data_says_it_is_not_held_out(tokens, tmp_path, capsys):  # noqa: F811
    cfg = experiment(tokens, tmp_path / "run", 1)
    # The fact behind the notice: one pass of the training stream holds every sample validation reads.
    source = TokenSource(tokens / "tokens")
    stream = source.stream(cfg.data.seed, 0, 1, shuffle=8)
    trained = {next(stream)["__key__"] for _ in range(len(source))}
    held = [s["__key__"] for s in read_token_shard(source.shards[0])[: cfg.data.val_samples]]
    assert len(held) == cfg.data.val_samples and set(held) <= trained

    capsys.readouterr()
    train(cfg)
    assert capsys.readouterr().err == (
        f"notice: validation reads the first {cfg.data.val_samples} samples of the first token dataset, which "
        "training reads too: the validation loss is not held out (give held-out samples as data.val_path)\n")
    train(replace(cfg, data=replace(cfg.data, val_path=str(tokens / "tokens")), train=replace(
        cfg.train, out_dir=str(tmp_path / "held"))))
    assert capsys.readouterr().err == ""  # a val_path given: no notice
