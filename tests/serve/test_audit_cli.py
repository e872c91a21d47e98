"""`polymodal serve` options found wrong by the session 9 audit: a port out of range was an OverflowError traceback
(after the model had loaded), a host that is not this machine's or does not resolve said "choose another --port",
and --port 0 (any free port) printed http://127.0.0.1:0/ instead of the port it listens on."""

from __future__ import annotations

import re

import pytest
import uvicorn

from polymodal.cli import main
from polymodal.serve import server


@pytest.fixture
def bundle(serve_pipe, tmp_path):
    return serve_pipe.save(tmp_path / "bundle")


@pytest.mark.parametrize("port", ["99999", "-1"])
def test_a_port_out_of_range_is_one_line_before_loading(monkeypatch, capsys, port):
    monkeypatch.setattr(server, "load_demo_pipeline", lambda *a, **k: pytest.fail("loaded the model first"))
    assert main(["serve", "--port", port]) == 2
    assert capsys.readouterr().err == f"polymodal serve: --port must be from 0 to 65535, got {port}\n"


@pytest.mark.parametrize("host", ["no.such.host.invalid", "192.0.2.1"])  # no name; TEST-NET-1: not this machine's
def test_a_host_that_cannot_be_listened_on_names_the_host(bundle, capsys, host):
    assert main(["serve", "--model", str(bundle), "--host", host, "--port", "8123"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"polymodal serve: cannot listen on {host}:8123 (") and err.endswith(
        "); choose another --host\n"), err


def test_port_0_prints_the_port_it_listens_on(bundle, monkeypatch, capsys):
    seen = {}

    def run(self, sockets=None):  # instead of serving: note the socket the command bound
        seen["port"] = sockets[0].getsockname()[1]
        sockets[0].close()

    monkeypatch.setattr(uvicorn.Server, "run", run)
    assert main(["serve", "--model", str(bundle), "--port", "0"]) == 0
    out = capsys.readouterr().out
    printed = re.search(r"http://127\.0\.0\.1:(\d+)/", out)
    assert printed and int(printed[1]) == seen["port"] > 0, out
