"""`polymodal data show --n` below 1 is refused with one line naming the flag (a negative one gave islice's
'Indices for islice() must be None or an integer: 0 <= x <= sys.maxsize.')."""

from __future__ import annotations

import pytest

from polymodal.cli import main


@pytest.mark.parametrize("n", ["0", "-2"])
def test_n_below_one_names_the_flag(tmp_path, capsys, n):
    assert main(["data", "show", str(tmp_path), "--n", n, "--out", str(tmp_path / "x.png")]) == 2
    assert capsys.readouterr().err.strip() == f"polymodal data show: --n must be >= 1, got {n}"
    assert not (tmp_path / "x.png").exists()
