"""An empty --out (``--out "$OUT"`` with OUT unset) is refused by every command that writes a folder: each wrote its
dataset, tokens or tokenizer into the current folder (a project's own config.json or README.md replaced)."""

from __future__ import annotations

import pytest

from polymodal.cli import main


@pytest.mark.parametrize("argv, command", [
    (["data", "synth", "--n", "2"], "data synth"),
    (["data", "tokenize", "x", "--tokenizer", "rgb=y"], "data tokenize"),
    (["data", "import", "--images", "x"], "data import"),
    (["data", "label", "--images", "x", "--labelers", "canny"], "data label"),
    (["tokenizer", "train-text", "--corpus", "c.txt", "--vocab-size", "4400"], "tokenizer train-text"),
])
def test_an_empty_out_is_refused_and_nothing_is_written_here(tmp_path, capsys, monkeypatch, argv, command):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.txt").write_text("a red cube\n" * 10)
    assert main([*argv, "--out", ""]) == 2
    assert capsys.readouterr().err.strip() == (f"polymodal {command}: --out is empty; give the folder to write "
                                               '("." for the current one)')
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.txt"]
