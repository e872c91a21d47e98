"""A text with several gaps given and asked for (``"a [S_1] cube, a [S_2] sphere ..."``) comes back with every gap
filled in order, through the pipeline's text tokenizer, generation and decoding. The model is scripted (see
tests/generation/test_span_filling.py): it writes "[S_1] red [S_2] blue [S_3] green [S_4]", so the whole text is
known by hand."""

from __future__ import annotations

import copy

import pytest

from polymodal.data.world import render_sample
from polymodal.data.world.values import world_values
from polymodal.pipeline import Pipeline, PipelineError

from ..generation.test_span_filling import script

S1, S2, S3, S4 = 5, 6, 7, 8


@pytest.fixture(scope="module")
def scripted(pipe) -> Pipeline:
    tok = pipe.tokenizers["text"]
    (red,), (blue,), (green,) = (tok.tokenize(w) for w in ("red", "blue", "green"))  # one WordPiece id each
    chain = {S1: red, red: S2, S2: blue, blue: S3, S3: green, green: S4}
    return Pipeline(script(copy.deepcopy(pipe.model), "caption", chain), pipe.tokenizers)


def test_three_gaps_come_back_filled_in_order(scripted):
    rgb = world_values(render_sample(1, 0, 64))["rgb"]
    out = scripted.generate({"rgb": rgb, "caption": "a [S_1] cube, a [S_2] sphere and a [S_3] cone."}, ["caption"],
                            temperature=0.0)
    assert out.values["caption"] == ["a red cube, a blue sphere and a green cone."]


def test_a_text_without_gaps_cannot_be_asked_for(scripted):
    with pytest.raises(PipelineError, match=r"caption: given as input and asked as output; .* \[S_1\], \[S_2\]"):
        scripted.generate({"caption": "a red cube."}, ["caption"], temperature=0.0)
