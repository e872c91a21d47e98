"""Aligned crop + flip of a world sample: every modality stays aligned with every other."""

from __future__ import annotations

import numpy as np
import pytest

from polymodal.data.transforms import Crop, apply_crop, center_crop, map_box, random_resized_crop
from polymodal.data.world import render_sample


@pytest.fixture(scope="module")
def sample():
    return render_sample(0, 3, 64)


def depth_normal_agreement(depth: np.ndarray, normal: np.ndarray, semseg: np.ndarray, instance: np.ndarray) -> float:
    """Share of surface pixels where depth's horizontal slope has the sign of the normal's x.

    For a plane seen in perspective (camera frame x right, z to the viewer), d(depth)/du has the sign of n_x.
    Only steep pixels (|n_x| > 0.3) whose two neighbours lie on the same segment and have a depth change count.
    """
    seg = semseg.astype(np.int32) * 256 + instance
    d = depth.astype(np.float64)
    dd = d[:, 2:] - d[:, :-2]
    same = (seg[:, 2:] == seg[:, 1:-1]) & (seg[:, :-2] == seg[:, 1:-1]) & (d[:, 1:-1] > 0)
    nx = normal[:, 1:-1, 0]
    use = same & (np.abs(nx) > 0.3) & (np.abs(dd) > 1e-4)
    assert use.sum() > 20, "too few steep surface pixels to test"
    return float((np.sign(dd[use]) == np.sign(nx[use])).mean())


def test_boxes_enclose_instances_after_crop_and_flip(sample):
    rng = np.random.default_rng(0)
    for _ in range(20):
        crop = random_resized_crop(64, 64, rng, scale=(0.3, 1.0), flip_p=0.5)
        out = apply_crop(sample, crop, 48)
        inst = out["instance"]
        kept = {d["instance"] for d in out["det"]}
        for d in out["det"]:
            x0, y0, x1, y1 = d["box"]
            ys, xs = np.nonzero(inst == d["instance"])
            if len(xs):  # nearest sampling may skip a thin instance; the box must still hold what is there
                assert xs.min() >= x0 and xs.max() < x1 and ys.min() >= y0 and ys.max() < y1
        # an instance that is visible in the crop keeps its box
        for i in np.unique(inst[inst > 0]):
            assert int(i) in kept
        assert out["rgb"].shape == (48, 48, 3) and out["normal"].shape == (48, 48, 3)
        assert "scene" not in out


def test_depth_normal_consistency_survives_crop_and_flip(sample):
    base = depth_normal_agreement(sample["depth"], sample["normal"], sample["semseg"], sample["instance"])
    assert base > 0.9
    for flip in (False, True):
        crop = Crop(8, 4, 48, 56, flip)
        out = apply_crop(sample, crop, 40)
        assert depth_normal_agreement(out["depth"], out["normal"], out["semseg"], out["instance"]) > 0.9
    # Without negating x the flipped normals would disagree with the flipped depth almost everywhere.
    out = apply_crop(sample, Crop(0, 0, 64, 64, True), 64)
    wrong = out["normal"].copy()
    wrong[..., 0] *= -1
    assert depth_normal_agreement(out["depth"], wrong, out["semseg"], out["instance"]) < 0.1


def test_flip_mirrors_every_map_and_negates_normal_x(sample):
    out = apply_crop(sample, Crop(0, 0, 64, 64, True), 64)
    for key in ("rgb", "depth", "semseg", "instance", "canny_edge", "sam_edge"):
        assert np.array_equal(out[key], sample[key][:, ::-1]), key
    assert np.array_equal(out["normal"][..., 0], -sample["normal"][:, ::-1, 0])
    assert np.array_equal(out["normal"][..., 1:], sample["normal"][:, ::-1, 1:])
    for a, b in zip(sample["det"], out["det"]):
        assert b["box"] == [64 - a["box"][2], a["box"][1], 64 - a["box"][0], a["box"][3]]


def test_boxes_that_leave_the_crop_are_dropped():
    crop = Crop(0, 0, 32, 32)
    assert map_box([40, 40, 50, 50], crop, 32) is None
    assert map_box([30, 0, 40, 10], crop, 64) == [60, 0, 64, 20]
    assert center_crop(48, 64) == Crop(0, 8, 48, 48, False)


def test_joints_move_with_the_image():
    crop = Crop(10, 20, 20, 20, True)
    people = [{"box": [22, 12, 30, 28], "joints_2d": [[25.0, 20.0], [21.5, 11.0]]}]
    out = apply_crop({"rgb": np.zeros((64, 64, 3), np.uint8), "human_poses": people}, crop, 40)
    assert out["human_poses"][0]["joints_2d"] == [[30.0, 20.0], [37.0, 2.0]]
