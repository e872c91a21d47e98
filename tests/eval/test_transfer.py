"""eval.transfer: the new-modality edge scores and the curve's resumable rows."""

import json

import numpy as np
import pytest

from polymodal.eval import transfer


def _square(side=16, lo=4, hi=11):
    m = np.zeros((side, side), np.uint8)
    m[lo, lo:hi + 1] = m[hi, lo:hi + 1] = m[lo:hi + 1, lo] = m[lo:hi + 1, hi] = 255
    return m


def test_edge_scores_exact_shifted_and_empty():
    truth = [_square()]
    exact = transfer.edge_scores([truth[0] / 255.0], truth)
    assert exact["edge_f1"] == pytest.approx(1.0)
    # one pixel off is still the edge (1-pixel tolerance), two pixels off is not all of it
    assert transfer.edge_scores([np.roll(truth[0], 1, axis=1) / 255.0], truth)["edge_f1"] == pytest.approx(1.0)
    assert transfer.edge_scores([np.roll(truth[0], 3, axis=1) / 255.0], truth)["edge_f1"] < 0.7
    empty = transfer.edge_scores([np.zeros((16, 16), np.float32)], truth)
    assert empty["edge_recall"] == 0.0 and empty["edge_f1"] == 0.0
    # a (1, H, W) prediction (an edge tokenizer's channel) scores as (H, W)
    assert transfer.edge_scores([truth[0][None] / 255.0], truth)["edge_f1"] == pytest.approx(1.0)


def test_curve_keeps_rows_and_adds_new_checkpoints(tmp_path, monkeypatch):
    run = tmp_path / "run"
    for step in (25, 50):
        (run / "checkpoints" / f"step_{step:08d}").mkdir(parents=True)
        (run / "checkpoints" / f"step_{step:08d}" / "model.safetensors").write_bytes(b"")
    seen = []
    monkeypatch.setattr(transfer, "model_scores", lambda path, *a, **k: seen.append(path.name) or {"edge_f1": 0.5})
    out = tmp_path / "curve.json"
    out.write_text(json.dumps([{"step": 25, "edge_f1": 0.1}]))
    rows = transfer.curve(run, {}, [], out)
    assert seen == ["step_00000050"]  # step 25 was already there: not evaluated again
    assert [(r["step"], r["edge_f1"]) for r in rows] == [(25, 0.1), (50, 0.5)]
    assert json.loads(out.read_text()) == rows
