"""Dense metrics on hand-made arrays whose answers are worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from polymodal.eval.metrics import (
    confusion,
    depth_metrics,
    image_sums,
    normal_metrics,
    pooled,
    segmentation_metrics,
)


def test_depth_perfect_and_known_errors():
    gt = np.array([[2.0, 4.0, 0.0]])  # the 0 is sky: no surface, never scored
    assert depth_metrics(gt, gt) == {"abs_rel": 0.0, "delta1": 1.0}
    pred = np.array([[2.0, 5.0, 100.0]])
    m = depth_metrics(pred, gt)
    assert m["abs_rel"] == pytest.approx(0.125)  # (0 + 1/4) / 2
    assert m["delta1"] == 0.5  # 5 / 4 = 1.25 is not < 1.25


def test_depth_pools_pixels_accepts_tensors_and_guards_zero():
    gt = torch.full((2, 3, 3), 2.0)
    pred = gt.clone()
    pred[1] = 0.0  # a predicted 0 is clamped to 1 mm: huge ratio, abs_rel ~ 1 on that image
    m = depth_metrics(pred, gt)
    assert m["abs_rel"] == pytest.approx(0.5 * (2 - 1e-3) / 2)
    assert m["delta1"] == 0.5
    assert all(math.isnan(v) for v in depth_metrics(np.ones((2, 2)), np.zeros((2, 2))).values())
    with pytest.raises(ValueError, match="shape"):
        depth_metrics(np.ones((2, 2)), np.ones((2, 3)))


def _rot_x(v: np.ndarray, deg: float) -> np.ndarray:
    a = np.radians(deg)
    r = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    return v @ r.T


def test_normals_angles_and_valid_pixels():
    gt = np.zeros((1, 1, 3, 3))  # (N, H, W, 3); pixel 2 has no normal (sky)
    gt[0, 0, :2] = [0.0, 0.0, 1.0]
    pred = gt.copy()
    pred[0, 0, 0] = _rot_x(gt[0, 0, 0], 10.0) * 3.0  # not unit: normalized first
    pred[0, 0, 1] = _rot_x(gt[0, 0, 1], 20.0)
    pred[0, 0, 2] = [1.0, 0.0, 0.0]  # ignored
    m = normal_metrics(pred, gt)
    assert m["angle_deg"] == pytest.approx(15.0)
    assert m["within_11.25"] == 0.5
    chw = np.moveaxis(gt, -1, 1)  # channel-first input reads the same
    assert normal_metrics(chw, chw)["angle_deg"] == pytest.approx(0.0, abs=1e-5)


def test_normals_zero_prediction_is_ninety_degrees():
    gt = np.zeros((1, 2, 3))
    gt[..., 2] = 1.0
    assert normal_metrics(np.zeros_like(gt), gt)["angle_deg"] == pytest.approx(90.0)


def test_miou_known_value_absent_classes_and_ignore_index():
    gt = np.array([[0, 0], [1, 1]])
    pred = np.array([[0, 1], [1, 1]])
    m = segmentation_metrics(pred, gt, 4)  # classes 2, 3 absent from both: not averaged
    assert m["miou"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert m["pixel_acc"] == 0.75
    assert set(m["iou"]) == {0, 1}
    assert segmentation_metrics(gt, gt, 4)["miou"] == 1.0
    # a class only predicted counts (IoU 0); an ignored ground-truth pixel is not looked at
    m = segmentation_metrics(np.array([[0, 3], [1, 1]]), np.array([[0, 255], [1, 1]]), 4, ignore_index=255)
    assert m["miou"] == 1.0 and m["pixel_acc"] == 1.0
    m = segmentation_metrics(np.array([[0, 3], [1, 1]]), gt, 4)
    assert m["miou"] == pytest.approx((1 / 2 + 2 / 2 + 0) / 3)


def test_confusion_refuses_out_of_range_ids():
    assert confusion(np.array([0, 1, 1]), np.array([0, 1, 0]), 2).tolist() == [[1, 1], [0, 1]]
    with pytest.raises(ValueError, match="predicted ids"):
        confusion(np.array([0, 5]), np.array([0, 1]), 2)


def reference(task: str, pred: np.ndarray, gt: np.ndarray) -> dict:
    """The metrics written out over the pooled valid pixels, independently of `image_sums`."""
    if task == "depth":
        valid = gt > 0
        p, t = np.maximum(pred[valid], 1e-3), gt[valid]
        return {"abs_rel": np.mean(np.abs(p - t) / t), "delta1": np.mean(np.maximum(p / t, t / p) < 1.25)}
    valid = np.linalg.norm(gt, axis=-1) > 0.5
    p, t = pred[valid], gt[valid] / np.linalg.norm(gt[valid], axis=-1, keepdims=True)
    cos = (p * t).sum(-1) / np.linalg.norm(p, axis=-1)
    angle = np.degrees(np.arccos(np.clip(cos, -1, 1)))
    return {"angle_deg": angle.mean(), "within_11.25": np.mean(angle < 11.25)}


@pytest.mark.parametrize("task", ["depth", "normal"])
def test_per_image_sums_pool_to_the_metrics_of_any_subset(task):
    rng = np.random.default_rng(0)
    if task == "depth":
        gt = rng.uniform(0.5, 8.0, size=(5, 8, 8))
        gt[0, :3] = 0.0  # sky: no valid pixels there
        gt[4] = 0.0  # a whole image of sky
        pred, score = gt * rng.uniform(0.6, 1.5, size=gt.shape), depth_metrics
    else:
        gt = rng.normal(size=(5, 8, 8, 3)) * 2.0  # not unit: the metric normalizes
        gt[1, :2] = 0.0
        pred, score = gt + rng.normal(scale=0.6, size=gt.shape), normal_metrics
    sums = image_sums(task, pred, gt)
    assert sums.shape == (5, 3)
    for idx in ([0, 1, 2, 3, 4], [0, 0, 3], [2], [4, 1]):
        expect = reference(task, pred[idx], gt[idx])
        assert pooled(task, sums[idx]) == pytest.approx(expect, rel=1e-12), idx
        assert score(pred[idx], gt[idx]) == pytest.approx(expect, rel=1e-12), idx
    if task == "depth":  # all sky: nothing to score
        assert all(np.isnan(v) for v in depth_metrics(pred[4:], gt[4:]).values())
    with pytest.raises(ValueError, match="no per-image sums"):
        image_sums("semseg", pred, gt)
