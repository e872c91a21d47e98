"""A run folder, or its checkpoints/, that refuses new files stops `polymodal train` before its first step with one
line naming the folder, instead of at the first checkpoint (losing every step trained until then).

The folder's refusal is made by refusing, under it, the two calls that create entries (``os.open``, ``os.mkdir``):
the tests run as root, whom a ``chmod 555`` does not stop."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import polymodal.train.loop as loop
from polymodal.cli import main

from .helpers import BASE, RECIPE

MESSAGE = ("polymodal train: {} is not writable (Permission denied); the run writes its checkpoints, metrics and "
           "release there: make it writable, or use another train.out_dir")


def _read_only(folder: Path, monkeypatch) -> None:
    """Refuse creating anything directly inside ``folder``, as a read-only folder does."""
    real_open, real_mkdir = os.open, os.mkdir

    def refuse(path):
        if Path(path).parent == folder:
            raise PermissionError(13, "Permission denied", str(path))

    def open_(path, flags, *args, **kwargs):
        if flags & os.O_CREAT and not Path(path).exists():
            refuse(path)
        return real_open(path, flags, *args, **kwargs)

    def mkdir(path, *args, **kwargs):
        refuse(path)
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", open_)
    monkeypatch.setattr(os, "mkdir", mkdir)


@pytest.mark.parametrize("where", ["checkpoints", "."])
def test_a_folder_that_refuses_files_stops_the_run_before_its_first_step(tmp_path, capsys, monkeypatch, where):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    folder = run / where  # run / "." is run
    steps = []
    real_step = loop.train_step
    monkeypatch.setattr(loop, "train_step", lambda *a, **k: (steps.append(1), real_step(*a, **k))[1])
    _read_only(folder, monkeypatch)
    assert main(["train", str(RECIPE), *BASE, f"train.out_dir={run}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == MESSAGE.format(folder), err
    assert steps == []  # refused before any step was trained
