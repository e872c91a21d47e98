"""mAP@0.5 on hand-made boxes whose AP is worked out by hand (COCO's 101-point interpolation)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from polymodal.eval.detection import average_precision, box_iou, match_image, mean_average_precision


def box(x0, y0, x1, y1, cls="cube", score=None) -> dict:
    d = {"class": cls, "box": [x0, y0, x1, y1]}
    if score is not None:
        d["score"] = score
    return d


def shifted(det: list[dict], dx: float) -> list[dict]:
    return [{**d, "box": [d["box"][0] + dx, d["box"][1], d["box"][2] + dx, d["box"][3]]} for d in det]


def test_iou():
    assert box_iou([[0, 0, 10, 10]], [[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]]).tolist() == [
        [1.0, pytest.approx(1 / 3), 0.0]]
    assert box_iou([[0, 0, 0, 10]], [[0, 0, 0, 10]]).tolist() == [[0.0]]  # empty boxes never match


def test_perfect_boxes_give_map_one(scenes):
    dets = [s["det"] for s in scenes]
    m = mean_average_precision(dets, dets)
    assert m["map"] == 1.0 and m["precision"] == 1.0 and m["recall"] == 1.0
    assert set(m["ap"]) == {d["class"] for det in dets for d in det}


def test_shifted_boxes_lower_map_at_known_values():
    gt = [[box(0, 0, 10, 10)], [box(0, 0, 10, 10)]]
    assert mean_average_precision([shifted(gt[0], 2), gt[1]], gt)["map"] == 1.0  # IoU 8/12 still matches
    # one image's box shifted by 5 (IoU 1/3): no scores, so the order is the list order; ties across images keep
    # image order: TP then FP -> precision 1 up to recall 0.5 (51 of 101 points), then nothing
    m = mean_average_precision([gt[0], shifted(gt[1], 5)], gt)
    assert m["map"] == pytest.approx(51 / 101)
    assert m["precision"] == 0.5 and m["recall"] == 0.5
    # FP first (image order): the best precision at recall 0.5 is 1/2 -> AP = 51 * 0.5 / 101
    assert mean_average_precision([shifted(gt[0], 5), gt[1]], gt)["map"] == pytest.approx(25.5 / 101)
    assert mean_average_precision([shifted(g, 6) for g in gt], gt)["map"] == 0.0


def test_scores_order_predictions_and_precision_is_interpolated():
    gt = [[box(0, 0, 10, 10), box(20, 20, 30, 30)]]
    preds = [[box(40, 40, 50, 50, score=0.8), box(20, 20, 30, 30, score=0.7), box(0, 0, 10, 10, score=0.9)]]
    # by score: TP, FP, TP -> recall .5 .5 1, precision 1 .5 2/3 -> interpolated 1 (51 points), 2/3 (50 points)
    assert mean_average_precision(preds, gt)["map"] == pytest.approx((51 + 50 * 2 / 3) / 101)


def test_class_aware_and_classes_without_ground_truth():
    gt = [[box(0, 0, 10, 10, "cube"), box(20, 0, 30, 10, "sphere")]]
    wrong = [[box(0, 0, 10, 10, "sphere"), box(20, 0, 30, 10, "sphere")]]
    m = mean_average_precision(wrong, gt)
    assert m["ap"]["cube"] == 0.0
    assert m["ap"]["sphere"] == 0.5  # FP then TP: precision 1/2 at every recall up to 1
    extra = [[*gt[0], box(40, 40, 50, 50, "torus")]]  # a class without ground truth is not averaged
    m = mean_average_precision(extra, gt)
    assert m["map"] == 1.0 and "torus" not in m["ap"] and m["precision"] == pytest.approx(2 / 3)
    assert math.isnan(mean_average_precision([[]], [[]])["map"])


def test_one_ground_truth_box_is_matched_once():
    tp, matched = match_image([box(0, 0, 10, 10), box(0, 0, 10, 10)], [box(0, 0, 10, 10)])
    assert tp.tolist() == [True, False] and matched.tolist() == [True]
    assert average_precision(np.zeros(0, bool), np.zeros(0), 3) == 0.0
