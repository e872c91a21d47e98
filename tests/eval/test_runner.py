"""The runner end to end: an oracle scores perfectly, corrupted predictors score worse, reports are written."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from polymodal.eval import Oracle, ceiling_predictor, evaluate, world_test_set, write_report
from polymodal.eval.tasks import HEADLINE, TASKS
from polymodal.tokenizers import ViTVQVAE, VQVAEConfig


def _with_vectors(scenes):
    rng = np.random.default_rng(0)  # stand-ins for caption embeddings: the task only needs distinct vectors
    return [{**s, "minilm_global": rng.normal(size=16).astype(np.float32)} for s in scenes]


def corrupt(key: str, values: list) -> list:
    if key == "depth":
        return [v * 1.5 for v in values]
    if key == "normal":
        return [v[..., [1, 0, 2]] for v in values]
    if key == "semseg":
        return [np.where(v == 2, 1, v) for v in values]  # floor called wall
    if key == "det":
        return [[{**d, "box": [d["box"][0] + 8, d["box"][1], d["box"][2] + 8, d["box"][3]]} for d in v]
                for v in values]
    if key == "caption":
        return ["There are two objects: a small red cube and a large blue sphere."] * len(values)
    if key == "minilm_global":
        return [values[(i + 1) % len(values)] for i in range(len(values))]
    return values


def test_oracle_is_perfect_and_a_corrupted_oracle_is_worse(scenes, tmp_path):
    samples = _with_vectors(scenes)
    good = evaluate(Oracle(samples), samples, batch_size=4, examples=2)
    assert set(good["tasks"]) == set(TASKS) and good["meta"]["n"] == len(samples)
    t = good["tasks"]
    assert t["depth"] == {"abs_rel": 0.0, "delta1": 1.0}
    assert t["normal"]["angle_deg"] < 1e-3 and t["normal"]["within_11.25"] == 1.0
    assert t["semseg"]["miou"] == 1.0 and t["det"]["map"] == 1.0 and t["caption"]["object_f1"] == 1.0
    assert t["retrieval"] == {"recall@1": 1.0, "recall@5": 1.0}
    for task in ("caption2rgb", "det2rgb"):
        assert all(v == 1.0 for v in t[task].values()), (task, t[task])

    bad = evaluate(Oracle(samples, transform=corrupt), samples, batch_size=4)["tasks"]
    assert bad["depth"]["abs_rel"] == pytest.approx(0.5) and bad["depth"]["delta1"] == 0.0
    assert bad["normal"]["within_11.25"] < 1.0
    for task in ("semseg", "det", "caption", "retrieval"):
        assert bad[task][HEADLINE[task]] < t[task][HEADLINE[task]], task
    # generated images read back through a corrupted det: boxes 8 px off no longer land on the scene's objects
    assert bad["det2rgb"]["box_recall"] < 1.0 and bad["det2rgb"]["seg_class_f1"] == 1.0

    paths = write_report({"oracle": good, "corrupted": {"tasks": bad, "meta": good["meta"]}}, tmp_path / "out")
    table = paths["markdown"].read_text()
    assert "| depth | abs_rel (lower is better) | 0.000 | 0.500 |" in table
    assert json.loads(paths["json"].read_text())["oracle"]["tasks"]["det"]["map"] == 1.0
    assert paths["figure"].stat().st_size > 0
    assert paths["examples oracle"].is_file() and "examples" not in json.loads(paths["json"].read_text())["oracle"]


def test_missing_data_is_skipped_with_a_reason_and_bad_predictors_fail_clearly(scenes):
    r = evaluate(Oracle(scenes), scenes, tasks=["retrieval", "depth"])
    assert "minilm_global" in r["tasks"]["retrieval"]["skipped"] and r["tasks"]["depth"]["delta1"] == 1.0
    with pytest.raises(ValueError, match="unknown task"):
        evaluate(Oracle(scenes), scenes, tasks=["depht"])
    with pytest.raises(ValueError, match="returned 0 values"):
        evaluate(lambda inputs, targets: {t: [] for t in targets}, scenes, tasks=["depth"])


def test_world_test_set_is_fixed_by_its_seed():
    a, b = world_test_set(2, seed=1, res=32), world_test_set(2, seed=1, res=32)
    assert a[1]["caption"] == b[1]["caption"] and np.array_equal(a[0]["rgb"], b[0]["rgb"])
    assert a[0]["caption"] != world_test_set(1, seed=0, res=32)[0]["caption"]


def test_tokenizer_ceiling_is_below_the_oracle(scenes):
    torch.manual_seed(0)
    cfg = VQVAEConfig("depth", name="tok_depth@32", image_size=32, patch_size=8, dim=16, encoder_depth=1,
                      decoder_depth=1, num_heads=2, codebook_size=32, code_dim=8)
    tok = ViTVQVAE(cfg).eval()  # untrained: a poor but real round trip
    r = evaluate(ceiling_predictor(scenes, {"depth": tok}, res=32), scenes, tasks=["depth", "det"])["tasks"]
    assert r["depth"]["abs_rel"] > 0.05 and r["depth"]["delta1"] < 1.0
    assert r["det"]["map"] == 1.0  # no tokenizer given for boxes: answered exactly
