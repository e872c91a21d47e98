"""Every refusal of the command line is one line on stderr with exit code 2, also where a command refuses by
raising SystemExit with its message (missing recipe, malformed KEY=VALUE)."""

from __future__ import annotations

import pytest

from polymodal.cli import main


@pytest.mark.parametrize("argv, message", [
    (["train", "no/such/recipe.py"], "polymodal train: recipe 'no/such/recipe.py' not found"),
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


def test_a_reader_that_goes_away_is_not_a_traceback():
    """`polymodal info | head -c 10`: the pipe closes under the listing; it was a BrokenPipeError traceback, exit 1."""
    import os
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "polymodal", "info"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    proc.stdout.read(10)
    proc.stdout.close()  # the reader goes away before the listing ends
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) in (0, 141), err  # 0 if the listing had been written before the close
    assert "Traceback" not in err and "BrokenPipeError" not in err, err


def test_a_missing_tokenizer_recipe_names_its_command(capsys):
    assert main(["tokenizer", "train", "no/such/recipe.py"]) == 2
    assert capsys.readouterr().err == "polymodal tokenizer train: recipe 'no/such/recipe.py' not found\n"
