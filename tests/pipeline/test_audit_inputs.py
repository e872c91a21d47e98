"""A new user's inputs to `Pipeline` with the shipped model (image tokens only, no pixel input): pixel boxes, a
target also given, vectors from JSON, long captions, a device that is not there."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest
import torch

from polymodal.pipeline import Pipeline, PipelineError
from tests.shipped import shipped_registry


@pytest.fixture(scope="module")
def shipped_pipe():
    for folder in shipped_registry():
        yield Pipeline.from_pretrained(folder)


def test_pixel_boxes_are_measured_in_the_models_image_side(shipped_pipe):
    # The shipped model sees 64 px images through tok_rgb@64 (no pixel input): a world box [16, 16, 48, 48] is the
    # middle half of the image, 0.25..0.75 (was divided by 224: 0.071..0.214).
    _, shown, _ = shipped_pipe.prepare({"det": [{"class": "cube", "box": [16, 16, 48, 48]}]})
    (box,) = shown["det"][0]
    assert box.label == "cube"
    assert box.coords == pytest.approx((0.25, 0.25, 0.75, 0.75), abs=2e-3)


def test_an_image_target_given_as_input_is_named(shipped_pipe):
    rgb = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(PipelineError) as e:
        shipped_pipe.generate({"rgb": rgb}, ["depth", "rgb"])
    assert str(e.value) == "tok_rgb@64: given as input and asked as output; drop one of them"


def test_a_vector_reads_from_a_json_file_or_text(shipped_pipe, tmp_path):
    v = torch.linspace(-0.1, 0.1, 384)
    file = tmp_path / "vec.json"
    file.write_text(json.dumps(v.tolist()))
    want = shipped_pipe.conditions({"minilm_global": v})["tok_minilm_global"]
    assert torch.equal(shipped_pipe.conditions({"minilm_global": str(file)})["tok_minilm_global"], want)
    assert torch.equal(shipped_pipe.conditions({"minilm_global": json.dumps(v.tolist())})["tok_minilm_global"], want)
    with pytest.raises(PipelineError) as e:
        shipped_pipe.conditions({"minilm_global": "nope.json"})
    assert str(e.value) == ("tok_minilm_global: 'nope.json' is neither a .json file nor JSON text of a list of "
                            "numbers")


def test_a_cut_caption_is_a_notice_not_a_warning(shipped_pipe):
    notes: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a Python warning here would fail the test
        shipped_pipe.prepare({"caption": "a red cube " * 200}, notify=notes.append)
    assert len(notes) == 1 and notes[0].startswith("caption: text is ") and "over the maximum of 256" in notes[0]


@pytest.mark.parametrize("value, message", [
    ({"class": "cube", "box": [0.1, 0.2, 0.3, 0.4]}, "det: expected a list of boxes, got a dict"),
    ([{"class": "cube", "box": [0.1, 0.2]}], "det: box 0 has 2 coordinates, expected 4 [x0, y0, x1, y1]: "
                                              "{'class': 'cube', 'box': [0.1, 0.2]}"),
    # pixel boxes out of the image were named by their scaled value ("xmin is -0.078125: must be in [0.0, 1.0]")
    ([{"class": "cube", "box": [-5, 10, 50, 70]}], "det: box 0 ('cube') has pixel coordinates [-5.0, 10.0, 50.0, "
                                                    "70.0] outside the model's 64x64 image (or give 0..1 "
                                                    "coordinates)"),
])
def test_a_malformed_box_list_is_named(shipped_pipe, value, message):
    with pytest.raises(PipelineError) as e:
        shipped_pipe.prepare({"det": value})
    assert str(e.value) == message


@pytest.mark.parametrize("device, message", [
    ("nonsense", "device 'nonsense' is not a torch device (cpu, cuda, cuda:1, mps, ...)"),
    pytest.param("cuda", "device 'cuda': this machine has no CUDA device; use cpu",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is here")),
])
def test_an_unusable_device_is_refused(device, message):
    for folder in shipped_registry():
        with pytest.raises(PipelineError) as e:
            Pipeline.from_pretrained(folder, device=device)
        assert str(e.value) == message


def test_a_missing_json_file_is_not_read_as_text(shipped_pipe, tmp_path):
    # "det=missing.json" was tokenized as the text 'missing.json' and generation ran on it
    missing = tmp_path / "missing.json"
    for name in ("det", "metadata", "color_palette"):
        with pytest.raises(PipelineError) as e:
            shipped_pipe.prepare({name: str(missing)})
        assert str(e.value) == f"{name}: file '{missing}' not found"


def test_a_bad_plan_in_a_bundle_names_the_file_and_the_plan(shipped_pipe, tmp_path):
    from polymodal.pipeline.demo import DEFAULT_MODEL

    copy = tmp_path / "b"
    shutil.copytree(DEFAULT_MODEL, copy)
    info = json.loads((copy / "pipeline.json").read_text())
    info["plans"] = {"mine": {"steps": [{"target": "tok_depth@64", "scheme": "maskgit", "num_steps": 0}]}}
    (copy / "pipeline.json").write_text(json.dumps(info))
    with pytest.raises(PipelineError) as e:
        Pipeline.from_pretrained(copy)
    assert str(e.value) == f"{copy / 'pipeline.json'}: plan 'mine': tok_depth@64: num_steps must be >= 1, got 0"
