"""`polymodal serve`: its options, and a missing model is one line and exit code 2 (no server started)."""

from __future__ import annotations

from polymodal.cli import build_parser, main
from polymodal.pipeline import demo


def test_serve_defaults_to_loopback():
    args = build_parser().parse_args(["serve"])
    assert (args.host, args.port, args.model) == ("127.0.0.1", 8000, None)


def test_a_missing_model_is_a_clear_error(tmp_path, capsys, monkeypatch):
    assert main(["serve", "--model", str(tmp_path / "nothing")]) == 2
    assert "no such folder" in capsys.readouterr().err
    monkeypatch.setattr(demo, "DEFAULT_MODEL", tmp_path / "default")
    assert main(["serve"]) == 2
    assert "the default model is not shipped" in capsys.readouterr().err
