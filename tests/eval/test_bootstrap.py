"""Bootstrap intervals and paired gaps: right width, right sign, pairing that removes shared scene difficulty, and
the report and command paths that carry them."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from polymodal.eval import Oracle, evaluate, write_report
from polymodal.eval.bootstrap import draws, intervals, paired_gaps, relative_gap


def mean_of(values: np.ndarray, metric: str = "score"):
    return lambda idx: {metric: float(values[idx].mean()), "name": "not a number", "per_class": {"a": 1.0}}


def test_draws_are_seeded_resamples_and_bad_sizes_fail():
    a, b = draws(50, 7, seed=3), draws(50, 7, seed=3)
    assert a.shape == (7, 50) and np.array_equal(a, b) and not np.array_equal(a, draws(50, 7, seed=4))
    assert a.min() >= 0 and a.max() < 50
    assert any(len(set(row)) < 50 for row in a)  # with replacement
    with pytest.raises(ValueError, match="at least one scene"):
        draws(0, 10)


def test_interval_of_a_mean_has_the_normal_width():
    rng = np.random.default_rng(0)
    values = rng.normal(2.0, 1.0, size=400)
    ci = intervals(mean_of(values), len(values), rounds=2000, seed=1)
    assert set(ci) == {"score"}  # only scalar metrics get intervals
    lo, hi = ci["score"]
    expect = 2 * 1.96 * values.std() / math.sqrt(len(values))  # the normal interval of a mean: 0.196
    assert lo < values.mean() < hi
    assert hi - lo == pytest.approx(expect, rel=0.15)
    quarter = intervals(mean_of(values[:100]), 100, rounds=2000, seed=1)["score"]
    assert quarter[1] - quarter[0] == pytest.approx(2 * (hi - lo), rel=0.25)  # 4x fewer scenes: 2x wider


def test_relative_gap_is_positive_when_the_first_is_better():
    assert relative_gap(0.55, 0.50, "miou") == pytest.approx(0.1)
    assert relative_gap(0.45, 0.50, "miou") == pytest.approx(-0.1)
    assert relative_gap(0.45, 0.50, "abs_rel") == pytest.approx(0.1)  # lower error is better
    assert relative_gap(22.0, 20.0, "angle_deg") == pytest.approx(-0.1)
    assert math.isnan(relative_gap(0.1, 0.0, "map")) and math.isnan(relative_gap(math.nan, 0.3, "miou"))


def test_paired_gap_removes_what_both_models_find_hard():
    rng = np.random.default_rng(0)
    hardness = rng.uniform(0.2, 1.0, size=200)  # scenes differ a lot; both models see the same difference
    b = hardness
    a = hardness * 0.9 + rng.normal(0, 0.005, size=200)  # a is 10% worse on every scene
    gaps = paired_gaps(mean_of(a), mean_of(b), 200, rounds=500, seed=2)
    g = gaps["score"]
    assert g["gap"] == pytest.approx(-0.1, abs=0.005) and g["lo"] < g["gap"] < g["hi"]
    assert g["hi"] - g["lo"] < 0.01  # the paired interval is tight
    unpaired = intervals(mean_of(b), 200, rounds=500, seed=2)["score"]
    assert (unpaired[1] - unpaired[0]) / b.mean() > 5 * (g["hi"] - g["lo"])  # each alone is far wider
    assert set(gaps) == {"score"}


def test_evaluate_with_bootstrap_reports_intervals_and_gaps(scenes, tmp_path):
    def shifted(key, values):
        return [v * 1.2 for v in values] if key == "depth" else values

    oracle = evaluate(Oracle(scenes), scenes, tasks=["depth", "semseg", "det"], bootstrap=50)
    worse = evaluate(Oracle(scenes, transform=shifted), scenes, tasks=["depth", "semseg"], bootstrap=50)
    assert oracle["meta"]["bootstrap"] == 50
    assert oracle["tasks"]["semseg"]["ci95"]["miou"] == [1.0, 1.0] and oracle["tasks"]["det"]["ci95"]["map"] == [1, 1]
    lo, hi = worse["tasks"]["depth"]["ci95"]["abs_rel"]
    assert lo == pytest.approx(0.2) and hi == pytest.approx(0.2)  # every scene 20% off: no spread at all
    # The rescorer scores the kept predictions on any subset, without predicting again.
    assert worse["rescore"]["depth"](np.array([0, 0, 1]))["abs_rel"] == pytest.approx(0.2)

    both = [t for t in worse["rescore"] if t in oracle["rescore"]]
    gaps = {"worse": {t: paired_gaps(oracle["rescore"][t], worse["rescore"][t], len(scenes), rounds=50)
                      for t in both}}
    assert gaps["worse"]["depth"]["abs_rel"]["gap"] == pytest.approx(1.0)  # no error against 0.2: 100% better
    assert gaps["worse"]["semseg"]["miou"] == {"gap": 0.0, "lo": 0.0, "hi": 0.0}
    paths = write_report({"oracle": oracle, "worse": worse}, tmp_path, gaps=gaps)
    text = paths["markdown"].read_text()
    assert "| semseg | miou | 1.000 (1.000–1.000) | 1.000 (1.000–1.000) |" in text
    assert "## oracle against the others" in text
    assert "| semseg | miou | +0.0% (+0.0% to +0.0%); within 10%: yes |" in text
    saved = json.loads(paths["json"].read_text())
    assert "rescore" not in saved["oracle"] and saved["gaps"]["worse"]["semseg"]["miou"]["gap"] == 0.0
    assert saved["worse"]["tasks"]["depth"]["ci95"]["abs_rel"] == [pytest.approx(0.2)] * 2
    with pytest.raises(ValueError, match="bootstrap rounds"):
        evaluate(Oracle(scenes), scenes, tasks=["depth"], bootstrap=-1)


def test_retrieval_bootstrap_keeps_the_whole_gallery():
    rng = np.random.default_rng(0)
    gallery = rng.normal(size=(20, 8)).astype(np.float32)
    samples = [{"rgb": np.full((4, 4, 3), i, np.uint8), "minilm_global": g} for i, g in enumerate(gallery)]

    def predict(inputs, targets):  # right for the first ten scenes, a neighbour's vector for the rest
        rows = [int(x[0, 0, 0]) for x in inputs["rgb"]]
        return {"minilm_global": [gallery[i] if i < 10 else gallery[(i + 1) % 20] for i in rows]}

    r = evaluate(predict, samples, tasks=["retrieval"], bootstrap=20)
    assert r["tasks"]["retrieval"]["recall@1"] == 0.5
    assert r["rescore"]["retrieval"](np.arange(10))["recall@1"] == 1.0  # queries drawn, gallery whole
    assert r["rescore"]["retrieval"](np.arange(10, 20))["recall@1"] == 0.0
    lo, hi = r["tasks"]["retrieval"]["ci95"]["recall@1"]
    assert 0.2 < lo < 0.5 < hi < 0.8


def test_verdict_needs_the_whole_interval_on_one_side_of_ten_percent():
    from polymodal.eval.report import verdict

    assert verdict({"gap": -0.05, "lo": -0.09, "hi": -0.01}) == "yes"
    assert verdict({"gap": -0.20, "lo": -0.30, "hi": -0.12}) == "no"
    assert verdict({"gap": -0.10, "lo": -0.14, "hi": -0.06}) == "undecided"
    assert verdict({"gap": float("nan"), "lo": float("nan"), "hi": float("nan")}) == "–"
