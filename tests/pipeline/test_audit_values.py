"""Python values of the wrong type or range given to `Pipeline.generate`: a PipelineError that names the modality
and what is expected, instead of NumPy's, torch's or Python's own error (or a silent wrong picture)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from polymodal.pipeline import PipelineError

RGB = "rgb@pt"  # the tiny bundle's pixel input (tests/pipeline/conftest.py)


@pytest.mark.parametrize("value, message", [
    (None, f"{RGB}: expected an image (a file path, a PIL image, an array or a tensor), got NoneType"),
    ({"x": 1}, f"{RGB}: expected an image (a file path, a PIL image, an array or a tensor), got dict"),
    ([], f"{RGB}: an empty list; give at least one image"),
    ("", f"{RGB}: an empty file name; give an image file"),
    # an ImageNet-normalized tensor or a float array of 0..255 was taken as 0..1 and clipped: a wrong picture
    (np.full((64, 64, 3), 200.0, np.float32), f"{RGB}: float image values must be from 0 to 1 (uint8 arrays are "
                                               "read as 0 to 255), got 200 to 200"),
    (torch.linspace(-2.1, 2.6, 3 * 64 * 64).reshape(3, 64, 64), f"{RGB}: float image values must be from 0 to 1 "
                                                                "(uint8 arrays are read as 0 to 255), got -2.1 to 2.6"),
])
def test_a_wrong_image_value_is_named(pipe, value, message):
    with pytest.raises(PipelineError) as e:
        pipe.generate({RGB: value}, ["caption"])
    assert str(e.value) == message


def test_float_images_from_0_to_1_still_work(pipe):
    img = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))
    out = pipe.generate({RGB: img}, ["tok_depth@pt"])
    assert torch.equal(out.inputs[RGB][0], img)  # shown as given: nothing clipped or rescaled


@pytest.mark.parametrize("inputs, targets, message", [
    ([RGB], ["caption"], "inputs: expected a mapping of modality name -> value, got list"),
    ({RGB: np.zeros((64, 64, 3), np.uint8)}, 5, "targets: expected modality names (a list, or one string with "
                                                  "commas), got int"),
])
def test_wrong_container_types_are_named(pipe, inputs, targets, message):
    with pytest.raises(PipelineError) as e:
        pipe.generate(inputs, targets)
    assert str(e.value) == message


@pytest.mark.parametrize("images, captions", [(2, 1), (1, 2)])
def test_an_input_given_once_beside_a_batch_is_shown_in_every_row(pipe, tmp_path, images, captions):
    # generation repeats a batch-1 input for every sample; saving indexed it per sample: IndexError after the
    # first sample's files were written
    rng = np.random.default_rng(0)
    rgb = [rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(images)]
    text = ["two red cubes", "a blue sphere"][:captions]
    out = pipe.generate({RGB: rgb if images > 1 else rgb[0], "caption": text if captions > 1 else text[0]},
                        ["tok_depth@pt"])
    assert len(out) == 2
    paths = out.save(tmp_path / "o")
    assert {p.relative_to(tmp_path / "o").as_posix() for p in paths} == {
        "sample_0/tok_depth_pt.png", "sample_1/tok_depth_pt.png", "tokens.safetensors", "values.safetensors",
        "grid.png"}
    assert [[t for t, _ in out.tiles(b)] for b in range(2)] == [["in: rgb@pt", "in: caption", "out: tok_depth@pt"]] * 2


def test_a_sequence_output_without_a_text_tokenizer_is_a_notice(pipe, tmp_path):
    # without a text tokenizer a caption was dropped from the values and the files without a word (exit 0)
    from polymodal.pipeline import Pipeline

    bare = Pipeline(pipe.model, {k: v for k, v in pipe.tokenizers.items() if k != "text"})
    notes: list[str] = []
    out = bare.generate({RGB: np.zeros((64, 64, 3), np.uint8)}, ["caption"], notify=notes.append)
    assert notes == ["caption: no text tokenizer to decode it, so it is kept as ids only (tokens.safetensors); "
                     "load the pipeline with one (--text-tokenizer PATH) to get its text"]
    assert out.ids["caption"].shape[0] == 1 and "caption" not in out.values
    assert out.notices == notes


def test_a_folder_or_an_empty_file_given_as_an_image_is_named(pipe, tmp_path):
    # were "image file 'DIR' not found" and "cannot identify image file <_io.BufferedReader name='...'>"
    (tmp_path / "empty.png").write_bytes(b"")
    for path, why in ((tmp_path, "is a folder, not an image file"), (tmp_path / "empty.png", "is empty (0 bytes)")):
        with pytest.raises(PipelineError) as e:
            pipe.generate({RGB: str(path)}, ["caption"])
        assert str(e.value) == f"{RGB}: image file {str(path)!r} {why}"


def test_guidance_with_nothing_given_is_a_notice(pipe):
    # u + s (c - u) with no condition to drop is c: --guidance 3 from nothing changed nothing, silently
    notes: list[str] = []
    out = pipe.generate({}, ["tok_depth@pt"], guidance=3.0, seed=0, notify=notes.append)
    assert notes == ["guidance 3 has no effect: no input is given to guide by"]
    assert torch.equal(out.ids["tok_depth@pt"], pipe.generate({}, ["tok_depth@pt"], seed=0).ids["tok_depth@pt"])
    notes.clear()
    pipe.generate({}, ["tok_depth@pt"], guidance=1.0, notify=notes.append)
    assert notes == []
