"""`polymodal data tokenize` refuses a --size or --shard-size below 1 with one line, before it writes anything: a
negative --size normalized every box out of the frame and stored empty ``det`` sequences (exit 0); --size 0 was
taken for the default without a word."""

from __future__ import annotations

import pytest

from polymodal.cli import main
from polymodal.data.world import synthesize


@pytest.mark.parametrize("flag, value", [("--size", "-5"), ("--size", "0"), ("--shard-size", "0")])
def test_size_and_shard_size_below_one_are_refused(tmp_path, capsys, flag, value):
    synthesize(tmp_path / "world", 2, 32, 0, 1)
    args = ["data", "tokenize", str(tmp_path / "world"), "--tokenizer", "det=unused", "--out", str(tmp_path / "tok"),
            flag, value, "--quiet"]
    assert main(args) == 2
    name = flag.removeprefix("--").replace("-", "_")
    assert capsys.readouterr().err.strip() == f"polymodal data tokenize: {name} must be >= 1, got {value}"
    assert not (tmp_path / "tok").exists()


def test_a_dataset_key_given_twice_is_refused(tmp_path, capsys):
    args = ["data", "tokenize", str(tmp_path), "--tokenizer", "rgb=tok/a", "rgb=tok/b", "--out", str(tmp_path / "t")]
    assert main(args) == 2  # it took the last one without a word
    assert capsys.readouterr().err.strip() == ("polymodal data: --tokenizer rgb is given twice (rgb=tok/a and "
                                               "rgb=tok/b); give each once")


@pytest.mark.parametrize("make, message", [
    (lambda p: None, "{p}: no such folder or shard"),
    (lambda p: p.mkdir(), "{p} holds no shards (*.tar), no dataset.json and no folder per modality"),
    (lambda p: (p / "rgb").mkdir(parents=True), "{p} holds no samples (its modality folders are empty)"),
])
def test_a_dataset_that_is_not_there_or_empty_says_so(tmp_path, capsys, make, message):
    path = tmp_path / "data"
    make(path)
    args = ["data", "tokenize", str(path), "--tokenizer", "rgb=unused", "--out", str(tmp_path / "t"), "--quiet"]
    assert main(args) == 2  # was "shard DATA is missing" / "'rgb' is a modality this dataset does not hold (the
    # dataset holds: )" / a tokenizer error
    assert capsys.readouterr().err.strip() == "polymodal data tokenize: " + message.format(p=path)
    assert not (tmp_path / "t").exists()
