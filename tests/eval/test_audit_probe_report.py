"""`polymodal probe --test 1 --bootstrap 5` (session 9 audit): a count accuracy of 0 against 0 has no relative gap
(NaN). probe.json held bare NaN tokens, which is not JSON (strict parsers refuse it; `polymodal eval`'s report
writes null), and probe.md printed "+nan% (+nan% to +nan%)" where the eval report prints "–"."""

from __future__ import annotations

import json
import math

from polymodal.eval.probe import markdown, write

NAN = math.nan


def _results() -> dict:
    row = {"dim": 8, "classes": {"test": {"mAP": NAN, "F1": 0.25}, "decay": 1.0},
           "count": {"test": {"acc": 0.0, "MAE": 1.0}, "decay": 10.0},
           "ci95": {"mAP": [NAN, NAN], "F1": [0.25, 0.25], "acc": [0.0, 0.0], "MAE": [1.0, 1.0]}}
    gap = {"mAP": {"gap": 0.0, "lo": 0.0, "hi": 0.0}, "acc": {"gap": NAN, "lo": NAN, "hi": NAN}}
    return {"rows": {"a": row, "b": row}, "gaps": {"b": gap},
            "setup": {"train": "seed 0", "val_fraction": 0.2, "test": "seed 1", "res": 64},
            "seconds": {"fit": 1.0}}


def _strict(text: str):
    def refuse(token):
        raise ValueError(f"{token} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_probe_json_is_strict_json_with_null_for_nan(tmp_path):
    md, js = write(_results(), tmp_path)
    data = _strict(js.read_text())
    assert data["gaps"]["b"]["acc"] == {"gap": None, "lo": None, "hi": None}
    assert data["rows"]["a"]["classes"]["test"]["mAP"] is None and data["rows"]["a"]["count"]["test"]["acc"] == 0.0


def test_probe_table_shows_a_dash_for_a_gap_that_has_no_value():
    table = markdown(_results())
    assert "nan" not in table.lower()
    assert "| b | +0.0% (+0.0% to +0.0%) | – |" in table
