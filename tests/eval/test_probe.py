"""Linear probes (`eval.probe`): AP and F1 by hand, a probe that learns a separable task and stays at chance on
random labels, region means on a hand grid, the world's probe labels against its detections, and the command."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from polymodal.cli import main
from polymodal.data.world import OBJECT_CLASSES, render_sample
from polymodal.eval.probe import (
    Scenes,
    average_precision,
    chance,
    macro_f1,
    pixel_features,
    probe,
    region_means,
    world_scenes,
)


def test_average_precision_by_hand():
    scores = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.6, 0.4]])
    labels = np.array([[1, 0], [0, 0], [1, 0], [0, 0]])
    ap = average_precision(scores, labels)
    # class 0: positives ranked 1st and 3rd -> precisions 1/1 and 2/3; class 1 has no positive
    assert ap[0] == pytest.approx((1 + 2 / 3) / 2) and np.isnan(ap[1])
    assert average_precision(-scores[:, :1], labels[:, :1])[0] == pytest.approx((1 / 2 + 2 / 4) / 2)


def test_macro_f1_by_hand():
    pred = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0]])
    true = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 0]])
    # class 0: tp 1, fp 1 -> 2/3; class 1: tp 1, fp 1 -> 2/3; class 2: never present nor predicted -> 1
    assert macro_f1(pred, true) == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)


def _blobs(n: int, k: int, d: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """k well-separated Gaussian clusters in d dimensions (linearly separable with margin)."""
    centres = torch.randn(k, d, generator=g) * 6
    y = torch.randint(0, k, (n,), generator=g)
    return centres[y] + torch.randn(n, d, generator=g), y


def test_probe_learns_a_separable_task_and_not_random_labels():
    g = torch.Generator().manual_seed(0)
    x, y = _blobs(1400, 4, 10, g)
    r = probe(x[:1000], y[:1000], x[1000:], y[1000:], multilabel=False, steps=100)
    assert r["test"]["acc"] >= 0.99 and r["test"]["MAE"] <= 0.02
    noise = torch.randint(0, 4, (1400,), generator=g)  # labels that nothing in x predicts
    r = probe(x[:1000], noise[:1000], x[1000:], noise[1000:], multilabel=False, steps=100)
    assert abs(r["test"]["acc"] - 0.25) < 0.07  # chance: 1/4 (400 test rows: 2 standard deviations ~ 0.04)


def test_multilabel_probe_separable_and_random():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1400, 12, generator=g)
    w = torch.randn(12, 5, generator=g)
    labels = (x @ w > 0).float()  # each label a half-space: separable
    r = probe(x[:1000], labels[:1000], x[1000:], labels[1000:], multilabel=True, steps=100)
    assert r["test"]["mAP"] >= 0.99 and r["test"]["F1"] >= 0.95
    noise = (torch.rand(1400, 5, generator=g) < 0.3).float()
    r = probe(x[:1000], noise[:1000], x[1000:], noise[1000:], multilabel=True, steps=100)
    prevalence = float(noise[1000:].mean())
    assert abs(r["test"]["mAP"] - prevalence) < 0.06  # a random ranking's AP is the class frequency


def test_region_means_on_a_hand_grid():
    tokens = torch.arange(16.0)[None, :, None].repeat(1, 1, 2)  # 4 x 4 grid, each token's value its position
    valid = torch.ones(1, 16, dtype=torch.bool)
    valid[0, 0] = False  # a padding token is left out of its quadrant
    out = region_means(tokens, torch.arange(16)[None], valid, (4, 4))
    # quadrants (row-major): {1, 4, 5} without 0, {2, 3, 6, 7}, {8, 9, 12, 13}, {10, 11, 14, 15}
    assert out[0, ::2].tolist() == pytest.approx([10 / 3, 4.5, 10.5, 12.5]) and out.shape == (1, 8)


def test_world_labels_match_the_detections():
    """Classes in view and counts from the instance map agree with the world's own detections (one per visible
    instance), and the images are those of `render_sample`."""
    s = world_scenes(6, seed=1, res=32)
    for i in range(6):
        sample = render_sample(1, i, 32)
        np.testing.assert_array_equal(s.rgb[i], sample["rgb"])
        assert int(s.counts[i]) == len(sample["det"])
        present = {d["class"] for d in sample["det"]}
        assert [OBJECT_CLASSES[c] for c in s.classes[i].nonzero()[:, 0].tolist()] == [
            c for c in OBJECT_CLASSES if c in present]
    assert pixel_features(s.rgb, 8).shape == (6, 3 * 8 * 8)


def test_chance_row_by_hand():
    rgb = np.zeros((4, 1, 1, 3), np.uint8)
    train = Scenes(rgb, torch.tensor([[1.0, 0.0], [1.0, 1.0], [1.0, 0.0], [0.0, 0.0]]), torch.tensor([2, 3, 3, 1]))
    test = Scenes(rgb, torch.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0], [1.0, 0.0]]), torch.tensor([3, 3, 2, 5]))
    r = chance(train, test)
    # mAP: the test frequency of each class (3/4, 1/4); F1: class 0 (train frequency 3/4) marked everywhere ->
    # tp 3, fp 1 -> 6/7, class 1 (1/4) never marked -> 0; count: the train majority 3 -> acc 2/4, MAE (0+0+1+2)/4
    assert r["classes"]["test"] == pytest.approx({"mAP": 0.5, "F1": (6 / 7 + 0) / 2})
    assert r["count"]["test"] == pytest.approx({"acc": 0.5, "MAE": 0.75})


def test_probe_command_refuses_too_few_scenes(tmp_path, capsys):
    assert main(["probe", "--train", "5", "--test", "3", "--out", str(tmp_path), "--quiet"]) == 2
    assert capsys.readouterr().err == ("polymodal probe: need at least 10 train scenes and 1 test scene, got --train 5 "
                                       "--test 3\n")
    assert not list(tmp_path.iterdir())
