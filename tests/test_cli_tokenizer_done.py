"""What `polymodal tokenizer train` prints when it is done: the reconstructions folder only where the run wrote one
(image tokenizers); a vector tokenizer (features, global embeddings) writes no pictures, and the line said it did."""

from __future__ import annotations

from pathlib import Path

import pytest

import polymodal.train.loop as loop
from polymodal.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("pictures", [True, False])
def test_the_done_line_names_reconstructions_only_when_written(tmp_path, monkeypatch, capsys, pictures):
    run = tmp_path / "run"
    (run / "release").mkdir(parents=True)
    if pictures:
        (run / "reconstructions").mkdir()

    def fake_train(cfg):  # the CLI's part only: the engine is tested in tests/tokenizers/test_training.py
        return loop.TrainResult(run, 10, 0.5, None, run / "release")

    monkeypatch.setattr(loop, "train", fake_train)
    assert main(["tokenizer", "train", str(ROOT / "configs" / "tokenizer_minilm_global_world64.py")]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1].startswith(f"tokenizer:  {run / 'release'}")
    assert ("reconstructions/" in out) is pictures
