"""An empty train.out_dir (`train.out_dir=$OUT` with OUT unset) is refused: it ran in the current folder, writing
config.json, checkpoints/, release/, tb/ among whatever was there (a project's own config.json replaced)."""

from __future__ import annotations

import pytest

from polymodal.cli import main
from polymodal.config import ConfigError, TrainConfig

from .helpers import BASE, RECIPE


@pytest.mark.parametrize("value", ["", " "])
def test_an_empty_out_dir_is_refused(value):
    with pytest.raises(ConfigError, match=r"^train.out_dir: got '\s*', expected a folder for the run"):
        TrainConfig(out_dir=value)


def test_the_command_refuses_it_and_writes_nothing_here(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["train", str(RECIPE), *BASE, "train.out_dir="]) == 2
    assert capsys.readouterr().err.strip().startswith("polymodal train: train.out_dir: got '', expected a folder")
    assert list(tmp_path.iterdir()) == []
    assert TrainConfig(out_dir=".").out_dir == "."  # the current folder on purpose still works
