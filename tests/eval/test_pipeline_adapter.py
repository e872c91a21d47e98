"""The runner through a real (tiny, untrained) `Pipeline`: values come back in the world's formats and scores are
computed; an untrained model scores far below the oracle."""

from __future__ import annotations

import numpy as np
import pytest

from polymodal.eval import evaluate, world_test_set
from polymodal.eval.pipeline_adapter import pipeline_predictor, to_world
from polymodal.tokenizers.serializers import Box

from ..pipeline.conftest import build_pipeline


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    return build_pipeline(tmp_path_factory)


def test_values_come_back_in_world_formats(pipe):
    samples = world_test_set(2, res=64)
    predict = pipeline_predictor(pipe, steps=1)
    out = predict({"rgb": [s["rgb"] for s in samples]}, ["depth", "normal", "semseg", "det"])
    assert out["depth"][0].shape == (64, 64) and out["normal"][1].shape == (64, 64, 3)
    assert out["semseg"][0].shape == (64, 64) and isinstance(out["det"][0], list)
    gen = predict({"det": [s["det"] for s in samples]}, ["rgb"])["rgb"]
    assert gen[0].shape == (64, 64, 3) and gen[0].dtype == np.uint8
    assert to_world("det", [[Box(0.5, 0.25, 1.0, 0.5, "cube")]], 64) == [[{"class": "cube",
                                                                          "box": [32.0, 16.0, 64.0, 32.0]}]]


def test_evaluate_a_pipeline(pipe):
    samples = world_test_set(2, res=64)
    r = evaluate(pipe, samples, tasks=["depth", "semseg", "caption2rgb"], batch_size=2)
    t = r["tasks"]
    assert 0 < t["depth"]["abs_rel"] and t["depth"]["delta1"] < 1.0 and t["semseg"]["miou"] < 1.0
    assert 0 <= t["caption2rgb"]["seg_class_recall"] <= 1


def test_polymodal_eval_writes_a_report_with_ceilings(pipe, tmp_path, capsys):
    from polymodal.cli import main

    bundle = pipe.save(tmp_path / "tiny")
    out = tmp_path / "report"
    assert main(["eval", "--model", str(bundle), "--n", "2", "--tasks", "depth,det,retrieval", "--ceiling",
                 "--out", str(out)]) == 0
    table = (out / "results.md").read_text()
    assert "tokenizer ceiling" in table and "| depth | delta1 |" in table
    assert "| retrieval | skipped |" in table  # no caption embeddings rendered
    assert (out / "results.png").is_file() and "wrote" in capsys.readouterr().out
    assert (out / "examples_tiny.png").is_file()

    # Beside itself with intervals: every gap is exactly 0, and each score carries its 95% interval.
    assert main(["eval", "--model", str(bundle), "--n", "3", "--tasks", "depth", "--compare", f"same={bundle}",
                 "--bootstrap", "10", "--out", str(out)]) == 0
    table = (out / "results.md").read_text()
    assert "## tiny against the others" in table
    assert "| depth | delta1 | +0.0% (+0.0% to +0.0%); within 10%: yes |" in table
    assert "| depth | delta1 | 0." in table and ")" in table.split("| depth | delta1 |")[1].split("\n")[0]
    assert (out / "examples_same.png").is_file()  # the compared model's examples beside the model's
    capsys.readouterr()
    assert main(["eval", "--model", str(bundle), "--n", "1", "--tasks", "depth", "--compare",
                 f"x={tmp_path / 'no-such-bundle'}", "--out", str(out)]) == 2  # a message, not a traceback
    assert "no-such-bundle" in capsys.readouterr().err


def test_tasks_a_model_cannot_do_are_skipped_with_the_reason(pipe):
    predict = pipeline_predictor(pipe)
    assert predict.supports("depth") is None and predict.supports("det2rgb") is None
    assert "minilm_global (output)" in predict.supports("retrieval")
    samples = [{**s, "minilm_global": np.zeros(4, np.float32)} for s in world_test_set(1, res=64)]
    assert "lacks minilm_global" in evaluate(predict, samples, tasks=["retrieval"])["tasks"]["retrieval"]["skipped"]


def test_perception_decodes_in_one_greedy_step_and_generation_in_several(pipe, monkeypatch):
    """As 4M-21 decodes RGB -> X (one step, near-greedy); generated RGB keeps MaskGIT's several steps."""
    calls = []
    real = pipe.generate

    def spy(inputs, targets, **kw):
        result = real(inputs, targets, **kw)
        calls.append((targets[0].split("@")[0], kw["steps"], kw["temperature"], result.plan.steps[0].num_steps))
        return result

    monkeypatch.setattr(pipe, "generate", spy)
    samples = world_test_set(1, res=64)
    pipeline_predictor(pipe)({"rgb": [s["rgb"] for s in samples]}, ["depth"])
    pipeline_predictor(pipe, generation_steps=3)({"det": [s["det"] for s in samples]}, ["rgb"])
    assert calls[0] == ("tok_depth", 1, 0.0, 1)
    name, steps, temperature, planned = calls[1]
    assert (name, steps, planned) == ("tok_rgb", 3, 3) and temperature is None
