"""Dense metrics on hand-made arrays whose answers are worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from polymodal.eval.metrics import confusion, depth_metrics, normal_metrics, segmentation_metrics


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
