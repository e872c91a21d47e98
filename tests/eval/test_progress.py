"""`evaluate` shows a progress bar per task on stderr when asked (as `polymodal eval` does), and is silent
otherwise."""

from __future__ import annotations

import re

from polymodal.eval import Oracle, evaluate


def test_a_bar_per_task_counts_every_scene(scenes, capsys):
    evaluate(Oracle(scenes), scenes, tasks=["depth", "semseg"], batch_size=4, progress="oracle")
    err = capsys.readouterr().err
    for task in ("depth", "semseg"):
        # The bar's last state: its title, all six scenes of six, the unit (tqdm adds rate and time left).
        assert re.search(rf"oracle: {task}: 100%.*\b6/6\b.*scene/s", err), err
    assert "oracle: normal" not in err


def test_silent_without_a_name(scenes, capsys):
    evaluate(Oracle(scenes), scenes, tasks=["depth"], batch_size=4)
    assert capsys.readouterr().err == ""
