"""The shipped default model (src/polymodal/weights/default): within the size budget, safe formats only, and it
has learned the world: on held-out scenes its RGB -> depth follows each scene's layout (per-scene correlation with
the true depth; a constant answer has none) and its RGB -> segmentation beats the scene's own majority class.
(Its depth abs-rel does not beat each scene's true median depth as a constant: see the model card.)"""

from __future__ import annotations

import json

import numpy as np
import pytest

from polymodal.eval.metrics import segmentation_metrics
from polymodal.eval.pipeline_adapter import pipeline_predictor
from polymodal.eval.runner import world_test_set
from polymodal.pipeline import Pipeline
from polymodal.pipeline.demo import DEFAULT_MODEL

BUDGET_MB = 25.0


def test_shipped_files_fit_the_budget_and_are_safetensors_json_or_markdown():
    files = [p for p in DEFAULT_MODEL.rglob("*") if p.is_file()]
    assert (DEFAULT_MODEL / "pipeline.json").is_file(), f"{DEFAULT_MODEL} holds no bundle"
    assert {p.suffix for p in files} <= {".safetensors", ".json", ".md"}, sorted({p.suffix for p in files})
    assert sum(p.stat().st_size for p in files) / 1e6 <= BUDGET_MB
    card = (DEFAULT_MODEL / "README.md").read_text()
    assert "scripts/train_default.sh" in card  # the card says how to remake the weights
    assert json.loads((DEFAULT_MODEL / "pipeline.json").read_text())["format"] == "polymodal-pipeline"


@pytest.fixture(scope="module")
def pipe():
    # Other tests register toy modalities under the same names (e.g. a 2x2 tok_minilm_global); the shipped bundle
    # brings its own definitions, so load it into a registry without them and put the old one back afterwards.
    from polymodal import modalities

    saved = dict(modalities._REGISTRY)
    ours = json.loads((DEFAULT_MODEL / "pipeline.json").read_text())["modalities"]
    for name in ours:
        modalities._REGISTRY.pop(name, None)
    try:
        yield Pipeline.from_pretrained(DEFAULT_MODEL)
    finally:
        modalities._REGISTRY.clear()
        modalities._REGISTRY.update(saved)


# The world's modalities by the names generate takes, and the shipped model's domain for each (it has no pixel
# input: RGB comes in as its 64 px tokens).
SHIPPED_DOMAINS = {"rgb": "tok_rgb@64", "depth": "tok_depth@64", "normal": "tok_normal@64",
                   "semseg": "tok_semseg@64", "canny_edge": "tok_canny_edge@64", "minilm_global": "tok_minilm_global",
                   "caption": "caption", "det": "det", "metadata": "metadata", "color_palette": "color_palette"}


def test_every_world_modality_is_an_input_and_an_output(pipe):
    assert sorted(pipe.inputs) == sorted(pipe.outputs) == sorted(SHIPPED_DOMAINS.values())
    for name, domain in SHIPPED_DOMAINS.items():
        assert (pipe.resolve(name), pipe.resolve(name, output=True)) == (domain, domain), name


def test_depth_follows_the_scene_and_segmentation_beats_the_majority_class(pipe):
    samples = world_test_set(16)
    pred = pipeline_predictor(pipe)({"rgb": [s["rgb"] for s in samples]}, ["depth", "semseg"])
    corr = []
    for p, s in zip(pred["depth"], samples, strict=True):
        valid = s["depth"] > 0
        corr.append(np.corrcoef(np.asarray(p, np.float64)[valid], s["depth"][valid])[0, 1])
    assert np.mean(corr) > 0.6, np.round(corr, 2)  # measured 0.80 when shipped
    seg = np.stack([s["semseg"] for s in samples]).astype(np.int64)
    majority = np.stack([np.full_like(s, np.bincount(s.ravel()).argmax()) for s in seg])
    ours = segmentation_metrics(np.stack(pred["semseg"]).astype(np.int64), seg, 11)["miou"]
    baseline = segmentation_metrics(majority, seg, 11)["miou"]
    assert ours > baseline + 0.08, (ours, baseline)  # measured 0.21 vs 0.07 when shipped


def test_generate_without_model_uses_the_shipped_one(pipe, tmp_path):
    from PIL import Image

    from polymodal.cli import main
    from polymodal.data.world import render_sample

    img = tmp_path / "scene.png"
    Image.fromarray(render_sample(1, 0, 64)["rgb"]).save(img)
    assert main(["generate", "--from", f"rgb={img}", "--to", "depth,caption", "--out", str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / "caption.txt").read_text().strip() and (tmp_path / "o" / "grid.png").is_file()
