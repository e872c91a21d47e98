"""Depth pictures that stray predictions cannot flatten, and texts shown whole (PNG cells, grids, the demo page)."""

from __future__ import annotations

import html

import numpy as np
import pytest
from PIL import Image

from polymodal.data.world import render_sample
from polymodal.eval.examples import example_rows
from polymodal.pipeline.outputs import tile
from polymodal.viz import depth_rgb, draw_text, grid_size, picture, robust_range, tile_grid
from polymodal.viz.pictures import font, text_height, wrap

LONG = ("A room with sand walls and a checkered floor. There are five objects: a person in purple raising both "
        "arms, a small shiny blue cube, a person in red pointing, a small shiny red cylinder and a small white "
        "cone. The person in red pointing is to the left of the small white cone.")


def ramp_with_outliers(frac: float = 0.05, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A 64 x 64 depth ramp from 2 m (top) to 10 m (bottom) with ``frac`` of its pixels at 0.0001-0.01 m (what a
    decoded depth of garbage tokens holds); returns (depth, mask of the outliers)."""
    rng = np.random.default_rng(seed)
    depth = np.repeat(np.linspace(2.0, 10.0, 64)[:, None], 64, axis=1)
    bad = rng.random(depth.shape) < frac
    depth[bad] = rng.uniform(1e-4, 1e-2, bad.sum())
    return depth, bad


def real_surface_colours(rgb: np.ndarray, bad: np.ndarray) -> tuple[int, float]:
    """(distinct colours, luminance of the nearest row minus the farthest) over the pixels that are not outliers."""
    colours = len(np.unique(rgb[~bad].reshape(-1, 3), axis=0))
    lum = rgb.astype(float) @ np.array([0.2126, 0.7152, 0.0722])
    near, far = lum[0][~bad[0]].mean(), lum[-1][~bad[-1]].mean()
    return colours, near - far


def test_a_few_near_zero_depths_do_not_flatten_the_real_surfaces():
    depth, bad = ramp_with_outliers()
    colours, contrast = real_surface_colours(depth_rgb(depth), bad)
    assert colours >= 40 and contrast > 150  # the ramp spans the colour map, near bright, far dark
    # The old range (min to max of all positive depths) crushes the same ramp into a colour or two: the case above
    # is the one that was broken.
    crushed, flat = real_surface_colours(depth_rgb(depth, lo=depth.min(), hi=depth.max()), bad)
    assert crushed <= 3 and abs(flat) < 5


def test_every_place_that_draws_depth_uses_the_robust_range():
    depth, bad = ramp_with_outliers(seed=1)
    size = 64  # one pixel per depth value, so the pixel mask of the outliers applies to the pictures
    rgb = np.zeros((64, 64, 3), np.uint8)
    drawn = {
        "picture (generate, serve, grids)": np.asarray(picture("depth", depth, size=size)),
        "pipeline tile (Outputs.save, demo)": np.asarray(tile("depth", depth, size)),
        "eval examples": np.asarray(example_rows("depth", [{
            "input": ("rgb", rgb), "output": ("depth", depth.astype(np.float32)),
            "truth": ("depth", depth.astype(np.float32)), "res": 64, "rgb": rgb}], size=size)[0][1][1]),
    }
    for where, img in drawn.items():
        colours, contrast = real_surface_colours(img, bad)
        assert colours >= 40 and contrast > 150, where


def test_robust_range_is_the_percentiles_of_the_values_without_the_strays():
    ramp = np.linspace(1.0, 10.0, 101)  # evenly spaced: the p-th percentile is 1 + 9 p / 100
    assert robust_range(ramp) == pytest.approx((1.18, 9.82))
    assert robust_range(ramp, low=0, high=100) == pytest.approx((1.0, 10.0))
    # A fifth of the values near zero, NaN, infinite or negative: ignored or dropped as strays in log space.
    noisy = np.concatenate([ramp, np.full(25, 1e-3), [np.nan, np.inf, -1.0, 0.0]])
    lo, hi = robust_range(noisy)
    assert 1.0 <= lo < 1.5 and hi == pytest.approx(9.82, abs=0.05)
    assert robust_range(np.array([0.0, np.nan])) == (1.0, 1.0)


def test_wrap_keeps_every_word_within_the_width():
    f = font(9)
    lines = wrap(LONG, 90, f)
    assert " ".join(lines).split() == LONG.split()
    assert len(lines) > 5 and all(f.getlength(line) <= 90 for line in lines)
    # A word wider than a line is split by characters, not cut off.
    word = "supercalifragilisticexpialidocious" * 2
    pieces = wrap(f"a {word} b", 40, f)
    assert "".join(pieces).replace(" ", "") == f"a{word}b" and all(f.getlength(p) <= 40 for p in pieces)


def test_a_long_caption_is_drawn_whole_in_a_taller_cell():
    f = font(9)  # draw_text's font at 96 px
    img = np.asarray(draw_text(LONG, 96))
    lines = wrap(LONG, 96 - 6, f)
    assert img.shape[1] == 96 and img.shape[0] == text_height(len(lines), f) > 96
    inked = np.flatnonzero((img < 128).any(axis=(1, 2)))
    assert inked.max() > img.shape[0] - (f.getbbox("Ag")[3] + 2) - 4  # the last line is drawn, at the bottom
    assert draw_text("two red cubes", 96).size == (96, 96)  # a short text keeps the square


def test_tile_grid_gives_a_tall_text_its_row():
    red = Image.new("RGB", (20, 20), (255, 0, 0))
    text = draw_text(LONG, 20 * 3)  # a tall text cell 60 px wide
    img = tile_grid([[("r", red.resize((60, 60))), ("t", text)], [("r", red)]], tile=60, pad=2, title_height=6)
    w, h = grid_size(2, 2, tile=60, pad=2, title_height=6)
    assert img.size == (w, h + text.height - 60)
    a = np.asarray(img)
    assert np.array_equal(a[2 + 6:2 + 6 + text.height, 2 + 62:2 + 62 + 60], np.asarray(text))  # pasted as drawn
    assert a[2 + 6 + text.height + 2 + 6, 2].tolist() == [255, 0, 0]  # the next row starts below it


def test_demo_shows_whole_captions_in_the_page_and_the_figure(tmp_path):
    from polymodal.pipeline.demo import DEFAULT_MODEL, run_demo

    if not DEFAULT_MODEL.exists():
        pytest.skip("the shipped default model is absent from this checkout")
    r = run_demo(None, out=tmp_path, scenes=1, notify=lambda m: None)
    page = r.html.read_text()
    truth = render_sample(1, 0, 64)["caption"]
    assert len(truth) > 200 and html.escape(truth) in page
    predicted = r.tasks["RGB -> all"].values["caption"][0]
    assert html.escape(predicted) in page
    # The figure's caption cells are taller than the squares: the whole text, wrapped, not cut to "...".
    rows = sum(1 for _ in r.tasks) + 1  # one row per task and the ground truth
    cols = max(len(o.tiles(0, size=96)) for o in r.tasks.values())
    assert Image.open(r.figure).height > grid_size(rows, cols, tile=96)[1]
