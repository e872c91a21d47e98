"""`polymodal train` and `polymodal tokenizer train|train-text` refuse what a user's audit ran into with one line
``polymodal <cmd>: <message>`` and exit code 2, never a traceback: a run folder under a file, a data folder that is
not there, a shard that is corrupt, a diverged loss, a checkpoint the disk refuses, a recipe whose config() is not
an experiment."""

from __future__ import annotations

import pytest

from polymodal.cli import main

from .helpers import BASE, RECIPE, ROOT

TOKENIZER = str(ROOT / "configs" / "tokenizer_rgb_world64.py")


def _train(*args: str) -> list[str]:
    return ["train", str(RECIPE), *BASE, *args]


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


def test_a_run_folder_under_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "afile").write_text("")
    assert main(_train(f"train.out_dir={tmp_path / 'afile' / 'run'}")) == 2
    err = _one_line(capsys)
    assert err.startswith("polymodal train: ") and "Not a directory" in err and "afile" in err


def test_a_loss_that_diverges_is_one_line_naming_the_step(tmp_path, capsys):
    assert main(_train(f"train.out_dir={tmp_path / 'run'}", "optim.base_lr=1e30")) == 2
    err = _one_line(capsys)
    assert err.startswith("polymodal train: loss is nan at step ") and "last good checkpoint: none" in err


def test_a_checkpoint_the_disk_refuses_is_one_line(tmp_path, capsys, monkeypatch):
    import polymodal.train.checkpoint as checkpoint

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint, "save_file", full_disk)
    assert main(_train(f"train.out_dir={tmp_path / 'run'}")) == 2
    err = _one_line(capsys)
    assert err.startswith("polymodal train: ") and "could not write checkpoint step_00000004" in err
    assert "No space left on device" in err and "previous checkpoints are intact" in err


@pytest.mark.parametrize("folder", ["missing", "empty"])
def test_a_tokenizer_data_folder_that_is_not_a_dataset_is_one_line(tmp_path, capsys, folder):
    (tmp_path / "empty").mkdir()
    args = ["tokenizer", "train", TOKENIZER, f"data.path={tmp_path / folder}", f"train.out_dir={tmp_path / 'run'}",
            "train.steps=2", "train.progress=false"]
    assert main(args) == 2
    assert _one_line(capsys) == (f"polymodal tokenizer train: {tmp_path / folder} is not a world dataset: no "
                                 "dataset.json (write one: `polymodal data synth`)")
    assert not (tmp_path / "run" / "config.json").exists()


def test_a_corrupt_shard_stops_tokenizer_training_with_one_line(tmp_path, capsys):
    from polymodal.data.world import synthesize

    synthesize(tmp_path / "world", 8, 64, 0, 1, shard_size=4)
    shard = tmp_path / "world" / "shard-000001.tar"
    shard.write_bytes(b"garbage" * 100 + shard.read_bytes()[700:])
    args = ["tokenizer", "train", TOKENIZER, f"data.path={tmp_path / 'world'}", f"train.out_dir={tmp_path / 'run'}",
            "data.val_samples=2", "train.batch_size=4", "train.steps=3", "train.progress=false", "train.eval_every=0"]
    assert main(args) == 2
    err = _one_line(capsys)
    assert err.startswith(f"polymodal tokenizer train: shard {shard} is truncated or corrupt (")


def test_a_recipe_whose_config_is_not_an_experiment_is_one_line(tmp_path, capsys):
    recipe = tmp_path / "five.py"
    recipe.write_text("def config():\n    return 5\n")
    assert main(["train", str(recipe)]) == 2
    assert _one_line(capsys) == f"polymodal train: recipe {recipe}: config() returned int, not an ExperimentConfig"


def test_a_text_tokenizer_out_folder_under_a_file_is_one_line(tmp_path, capsys):
    corpus = tmp_path / "c.txt"
    corpus.write_text("a red cube left of a blue sphere\n" * 20)
    (tmp_path / "afile").write_text("")
    args = ["tokenizer", "train-text", "--corpus", str(corpus), "--vocab-size", "4400", "--quiet",
            "--out", str(tmp_path / "afile" / "tok")]
    assert main(args) == 2
    err = _one_line(capsys)
    assert err.startswith("polymodal tokenizer train-text: ") and "afile" in err


def test_a_recipe_that_does_not_parse_names_the_file_and_line(tmp_path, capsys):
    recipe = tmp_path / "bad.py"
    recipe.write_text("def config():\n    return (\n")
    assert main(["train", str(recipe)]) == 2
    assert _one_line(capsys) == f"polymodal train: recipe {recipe}: line 2: '(' was never closed"


def test_a_recipes_own_refusal_is_prefixed_with_the_recipe(tmp_path, capsys):
    recipe = tmp_path / "env.py"  # as configs/transfer_world64.py refuses a bad POLYMODAL_TRANSFER
    recipe.write_text("def config():\n    raise SystemExit(\"POLYMODAL_X: 'bad' is not one of a, b\")\n")
    assert main(["train", str(recipe)]) == 2
    assert _one_line(capsys) == f"polymodal train: recipe {recipe}: POLYMODAL_X: 'bad' is not one of a, b"


def test_a_run_folder_of_another_objective_is_named_as_such(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["tokenizer", "train", TOKENIZER, f"train.out_dir={run}", "train.steps=1", "train.batch_size=2",
                 "data.num_samples=4", "data.val_samples=0", "train.progress=false"]) == 0
    capsys.readouterr()
    assert main(_train(f"train.out_dir={run}")) == 2  # was one line of every field of both models (~1800 chars)
    assert _one_line(capsys) == (f"polymodal train: {run / 'checkpoints' / 'step_00000001'} holds a run of objective "
                                 "'tokenizer', not 'fourm' (use a new train.out_dir)")
