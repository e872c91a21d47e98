"""`polymodal data show`'s grid colours depth as every other depth picture (`colors.depth_rgb`), so that one stray
near-zero depth no longer turns every real surface into one colour (the old min-max stretch did)."""

from __future__ import annotations

import numpy as np

from polymodal.data.world import render_sample
from polymodal.viz import colors
from polymodal.viz.world import colorize, grid


def test_depth_is_coloured_as_the_depth_pictures_and_survives_a_stray():
    depth = np.tile(np.linspace(2.0, 10.0, 32), (32, 1))  # a wall going away, 2 m to 10 m
    depth[0, 0] = 0.01  # one stray prediction-like value
    depth[5:8, 5:8] = 0.0  # sky
    out = colorize("depth", depth)
    assert np.array_equal(out, colors.depth_rgb(depth))
    near, far = out[20, 1].astype(int), out[20, 30].astype(int)
    assert np.abs(near - far).max() > 100  # the wall spans the colour map (min-max: a few levels apart)
    assert near.sum() > far.sum()  # near bright, far dark
    assert (out[5:8, 5:8] == 0).all()  # sky black


def test_the_grid_has_one_row_per_sample():
    samples = [render_sample(0, i, 32) for i in range(2)]
    img = grid(samples)
    assert img.width == 10 * (128 + 4) + 4 and img.height > 2 * 128
