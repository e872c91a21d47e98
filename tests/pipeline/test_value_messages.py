"""A bad box or colour is named once: "det: box 0 ...", not "det: det: box 0 ..."."""

from __future__ import annotations

import pytest

from polymodal.pipeline import Pipeline, PipelineError
from tests.shipped import shipped_registry


@pytest.fixture()
def shipped():
    yield from shipped_registry()


@pytest.mark.parametrize("name, value, message", [
    ("det", [{"class": "chair", "box": [0.1, 0.1, 0.05, 0.2]}],
     "det: box 0 ('chair'): xmin > xmax or ymin > ymax in (0.1, 0.1, 0.05, 0.2)"),
    ("color_palette", [[300, 0, 0]], "color_palette: color 0 channel r is 300.0: must be in [0, 255]"),
])
def test_a_bad_value_is_named_once(shipped, name, value, message):
    pipe = Pipeline.from_pretrained(shipped)
    with pytest.raises(PipelineError) as e:
        pipe.generate({name: value}, ["caption"])
    assert str(e.value) == message
