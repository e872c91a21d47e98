"""Every refusal of the command line is one line on stderr with exit code 2, also where a command refuses by
raising SystemExit with its message (missing recipe, malformed KEY=VALUE)."""

from __future__ import annotations

import pytest

from polymodal.cli import main


@pytest.mark.parametrize("argv, message", [
    (["train", "no/such/recipe.py"], "polymodal: recipe 'no/such/recipe.py' not found"),
    (["train", "configs/fourm_tiny_cpu.py", "masking.mixture=nope"],
     "polymodal train: masking.mixture: got 'nope', expected one of 'uniform', '4m21'"),
])
def test_a_refusal_is_one_line_and_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == message


def test_exit_codes_other_than_messages_pass_through(monkeypatch):
    import polymodal.cli as cli

    def quits(args):
        raise SystemExit(0)

    monkeypatch.setattr(cli, "_cmd_info", quits)
    with pytest.raises(SystemExit) as e:
        main(["info"])
    assert e.value.code == 0
