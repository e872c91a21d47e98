"""Pictures: every kind at the size asked, boxes where they belong, colour maps that order and repeat, grids."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from polymodal.data.world import render_sample
from polymodal.tokenizers.serializers import Box, Instance, PersonPose, QueryPoint
from polymodal.viz import (
    KINDS,
    class_colors,
    colormap,
    decode_outputs,
    depth_rgb,
    draw_boxes,
    draw_palette,
    feature_pca_rgb,
    grid_size,
    inputs_outputs_grid,
    normal_rgb,
    picture,
    robust_range,
    save_png,
    tile_grid,
    value_kind,
)
from polymodal.viz.colors import VIRIDIS_LUT

from .helpers import mlp, text_tokenizer, vqvae


def random_value(kind: str, g: torch.Generator):
    """A random item of ``kind`` (what decoding gives, without a batch axis)."""
    h = w = 12
    if kind == "rgb":
        return torch.rand(3, h, w, generator=g)
    if kind == "depth":
        return torch.rand(h, w, generator=g) * 10
    if kind == "normal":
        return torch.nn.functional.normalize(torch.randn(3, h, w, generator=g), dim=0)
    if kind == "semseg":
        return torch.randint(0, 30, (h, w), generator=g)
    if kind == "edge":
        return torch.rand(h, w, generator=g)
    if kind == "feature":
        return torch.randn(7, h, w, generator=g)
    if kind == "vector":
        return torch.randn(50, generator=g)
    r = torch.rand(4, generator=g).tolist()
    if kind == "det":
        return [Box(min(r[0], r[1]), min(r[2], r[3]), max(r[0], r[1]), max(r[2], r[3]), "sphere")]
    if kind == "color_palette":
        return [tuple(torch.randint(0, 256, (3,), generator=g).tolist()) for _ in range(3)]
    if kind == "human_poses":
        return [PersonPose((0.1, 0.1, 0.5, 0.9), (0,) * 8, (1.0,) * 9, (0.0,) * 3, (0.0,) * 10)]
    if kind == "sam_instance":
        return [QueryPoint(int(r[0] * 223), int(r[1] * 223), (Instance((5, 8, 40, 50), (0,) * 16),))]
    if kind == "metadata":
        return {"n_humans": 2, "brightness": 127.5}
    return "a red sphere and a blue cube on the floor, the person is waving near a torus " * 3


@pytest.mark.parametrize("size", [37, 64])
@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_is_an_rgb_picture_of_the_size_asked(kind, size):
    g = torch.Generator().manual_seed(KINDS.index(kind))
    img = picture(kind, random_value(kind, g), size=size, background=torch.rand(3, 8, 8, generator=g))
    assert img.mode == "RGB" and img.width == size
    # A text keeps all of itself (the long test caption needs a taller panel at these sizes); the rest is square.
    assert img.height > size if kind in ("caption", "text") else img.height >= size if kind == "metadata" \
        else img.height == size
    assert len(np.unique(np.asarray(img).reshape(-1, 3), axis=0)) > 1  # not a blank picture


def test_boxes_land_where_they_should():
    black = np.zeros((16, 16, 3), np.uint8)
    img = np.asarray(draw_boxes([Box(0.25, 0.25, 0.75, 0.5, "x")], 64, background=black, labels=False))
    drawn = np.argwhere(img.any(-1))
    assert drawn[:, 0].min() == 16 and drawn[:, 0].max() == 31  # rows y0*64 .. y1*64 - 1
    assert drawn[:, 1].min() == 16 and drawn[:, 1].max() == 47  # columns x0*64 .. x1*64 - 1
    assert img[16, 30].any() and img[31, 30].any() and img[24, 16].any() and img[24, 47].any()
    assert not img[24, 30].any()  # an outline: the inside keeps the background
    assert len({tuple(img[y, x]) for y, x in drawn}) == 1  # one colour: the class's


def test_colormap_is_monotonic_in_lightness_and_matches_viridis():
    lum = VIRIDIS_LUT.astype(float) @ np.array([0.2126, 0.7152, 0.0722])
    assert np.all(np.diff(lum) > -0.5) and np.all(np.diff(lum[::8]) > 0)  # rising, up to rounding to uint8
    # A few entries of matplotlib's viridis table (0..255), which the polynomial fit follows within 4 levels.
    for i, ref in [(0, (68, 1, 84)), (64, (59, 82, 139)), (128, (33, 145, 140)), (255, (253, 231, 37))]:
        assert np.abs(VIRIDIS_LUT[i].astype(int) - ref).max() <= 4
    assert np.array_equal(colormap(np.array([0.0, 0.5, 1.0])), VIRIDIS_LUT[[0, 128, 255]])
    assert colormap(np.array([np.nan, 1.0])).tolist()[0] == [0, 0, 0]


def test_depth_is_brighter_near_deterministic_and_black_where_no_surface():
    depth = np.tile(np.linspace(1.0, 10.0, 32), (4, 1))
    depth[:, 0] = 0.0
    a = depth_rgb(depth)
    lum = a[0].astype(float) @ np.array([0.2126, 0.7152, 0.0722])
    assert np.all(np.diff(lum[1:]) < 0.5) and lum[1] > lum[-1] + 100  # farther is darker (up to rounding)
    assert not a[:, 0].any()
    assert np.array_equal(a, depth_rgb(torch.tensor(depth)))
    # A fixed range makes colours comparable across pictures; the default is the picture's robust range.
    valid = depth[:, 1:]
    assert np.array_equal(depth_rgb(valid, lo=valid.min(), hi=10.0), depth_rgb(valid, lo=valid.min(), hi=10.0))
    assert np.array_equal(depth_rgb(valid, **dict(zip(("lo", "hi"), robust_range(valid)))), depth_rgb(valid))
    assert not np.array_equal(depth_rgb(valid, lo=0.5, hi=20.0), depth_rgb(valid))


def test_normals_map_axes_to_channels():
    n = torch.zeros(3, 2, 2)
    n[2, 0, 0] = 1.0  # facing the viewer
    n[0, 0, 1] = 1.0  # facing right
    out = normal_rgb(n)
    assert out[0, 0].tolist() == [128, 128, 255] and out[0, 1].tolist() == [255, 128, 128]
    assert out[1, 1].tolist() == [0, 0, 0]  # no surface
    assert np.array_equal(out, normal_rgb(n.permute(1, 2, 0).numpy()))


def test_class_palette_is_fixed_and_distinct():
    c = class_colors(40)
    assert np.array_equal(c[:11], class_colors(11)) and np.array_equal(c, class_colors(40))
    assert len({tuple(x) for x in c}) == 40


def test_feature_pca_follows_the_main_direction_whatever_the_channel_order():
    x = torch.linspace(-1, 1, 16)
    f = torch.stack([x[None].expand(16, 16) * 5, torch.zeros(16, 16), 0.1 * x[:, None].expand(16, 16)])
    a = feature_pca_rgb(f)
    assert np.all(np.diff(a[8, :, 0].astype(int)) >= 0) and a[8, -1, 0] > a[8, 0, 0]  # R is the x ramp
    # The SVD's arbitrary signs are fixed by the loadings, so reordering the channels changes nothing.
    assert np.array_equal(a, feature_pca_rgb(f[[2, 0, 1]]))


def test_palette_swatches_hold_their_colours():
    img = np.asarray(draw_palette([(255, 0, 0), (0, 255, 0)], 20))
    assert img[5, 10].tolist() == [255, 0, 0] and img[15, 10].tolist() == [0, 255, 0]
    weighted = np.asarray(draw_palette({"colors": [[0, 0, 255], [9, 9, 9]], "weights": [0.75, 0.25]}, 20))
    assert weighted[14, 3].tolist() == [0, 0, 255] and weighted[16, 3].tolist() == [9, 9, 9]


def test_grid_size_arithmetic_and_tile_placement():
    red = Image.new("RGB", (10, 10), (255, 0, 0))
    blue = Image.new("RGB", (20, 20), (0, 0, 255))  # resized to the tile
    img = tile_grid([[("a", red), ("b", red), ("c", red)], [("d", blue)]], tile=10, pad=2, title_height=6)
    assert img.size == grid_size(2, 3, tile=10, pad=2, title_height=6) == (3 * 12 + 2, 2 * 18 + 2)
    a = np.asarray(img)
    assert a[2 + 6, 2 + 12 * 2].tolist() == [255, 0, 0]  # row 0, column 2: first pixel of the tile
    assert a[2 + 18 + 6 + 9, 2 + 9].tolist() == [0, 0, 255]  # row 1, column 0: last pixel
    assert a[2 + 18 + 6 + 5, 2 + 12 + 5].tolist() == [255, 255, 255]  # row 1, column 1: blank
    with pytest.raises(ValueError, match="nothing to draw"):
        tile_grid([[]])


def test_inputs_and_outputs_grid_of_decoded_values(tmp_path):
    tok = text_tokenizer()
    toks = {"text": tok, "tok_depth@16": vqvae("depth"), "tok_vec_global": mlp(12)}
    g = torch.Generator().manual_seed(0)
    ids = {"tok_depth@16": torch.randint(0, 32, (2, 16), generator=g),
           "tok_vec_global": torch.randint(0, 16, (2, 4), generator=g),
           "caption": tok.encode(["a sphere", "a torus"]), "det": tok.encode(["v0=1 v1=2 v2=500 v3=600 sphere"] * 2)}
    outputs = decode_outputs(ids, toks)
    kinds = {name: value_kind(name, toks) for name in ids} | {"rgb@16": "rgb"}
    inputs = {"rgb@16": torch.rand(2, 3, 16, 16, generator=g)}
    img = inputs_outputs_grid(inputs, outputs, kinds, size=48)  # 48 px: the short captions fit their square
    assert img.size == grid_size(2, 5, tile=48)
    path = save_png(inputs_outputs_grid(inputs, outputs, kinds, samples=[1], size=48), tmp_path / "a" / "g.png")
    assert Image.open(path).size == grid_size(1, 5, tile=48)
    with pytest.raises(KeyError, match="no kind for 'tok_depth@16'"):
        inputs_outputs_grid(inputs, outputs, {"rgb@16": "rgb"})
    with pytest.raises(IndexError, match="out of range"):
        inputs_outputs_grid(inputs, outputs, kinds, samples=[2])


def test_world_values_draw_too():
    s = render_sample(0, 3, 32)
    for kind, value in [("rgb", s["rgb"]), ("depth", s["depth"]), ("normal", s["normal"]), ("semseg", s["semseg"]),
                        ("color_palette", s["color_palette"]), ("caption", s["caption"]),
                        ("metadata", s["metadata"])]:
        img = picture(kind, value, size=48)
        assert img.width == 48 and (img.height >= 48 if kind in ("caption", "metadata") else img.height == 48)
    # World joints are pixels of the background image (32 px here): drawn at twice their value in a 64 px picture.
    black = np.zeros((32, 32, 3), np.uint8)
    people = np.asarray(picture("human_poses", [{"joints_2d": [[16.0, 8.0]] * 15}], size=64, background=black))
    drawn = np.argwhere(people.any(-1))
    assert np.abs(drawn.mean(0) - (16, 32)).max() < 1 and np.abs(drawn - (16, 32)).max() <= 3
