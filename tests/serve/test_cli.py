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
    assert "the default model is missing" in capsys.readouterr().err


def test_a_port_in_use_is_a_clear_error(serve_pipe, tmp_path, capsys):
    import socket

    bundle = serve_pipe.save(tmp_path / "bundle")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert main(["serve", "--model", str(bundle), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err and "choose another --port" in err
