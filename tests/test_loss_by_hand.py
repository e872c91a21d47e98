"""The masked-modeling loss on logits chosen so that every token's cross-entropy is known by hand: uniform logits
over V classes cost ln V; logits (ln 3, 0) give the classes probabilities 3/4 and 1/4, costing ln(4/3) and ln 4.

Modality A: 2 tokens over 4 classes, uniform: mean ln 4. Modality B: 3 tokens, classes 0, 0, 1 under (ln 3, 0):
mean (2 ln(4/3) + ln 4) / 3. Modality C: no target tokens in the batch. 4M's weighting averages the means of A and
B (C has nothing to average); the token weighting averages the 5 tokens."""

from __future__ import annotations

import math

import pytest
import torch

from polymodal.model import masked_modeling_loss
from polymodal.model.fourm import TargetLogits

LN3, LN4, LN43 = math.log(3), math.log(4), math.log(4 / 3)
A = LN4
B = (2 * LN43 + LN4) / 3


def outputs(*, fused: bool) -> dict[str, TargetLogits]:
    """The three modalities; ``fused``: as ``forward(logits=False)`` leaves them, rows and an identity head."""
    rows = {"A": (torch.zeros(2, 4), torch.tensor([[1, 2]])),
            "B": (torch.tensor([[LN3, 0.0]] * 3), torch.tensor([[0, 0], [1, 0]])),
            "C": (torch.zeros(0, 5), torch.tensor([[0]]))}
    valid = {"A": torch.tensor([[True, True]]), "B": torch.tensor([[True, True], [True, False]]),
             "C": torch.tensor([[False]])}
    out = {}
    for name, (x, targets) in rows.items():
        pos = torch.zeros_like(targets)
        if fused:
            out[name] = TargetLogits(None, targets, valid[name], pos, hidden=x, head=torch.eye(x.shape[1]))
        else:
            out[name] = TargetLogits(x, targets, valid[name], pos)
    return out


@pytest.mark.parametrize("fused", [False, True])
def test_modality_weighting_averages_the_modalities_that_have_targets(fused):
    total, per_mod = masked_modeling_loss(outputs(fused=fused))
    assert float(per_mod["A"]) == pytest.approx(A, rel=1e-6)
    assert float(per_mod["B"]) == pytest.approx(B, rel=1e-6)
    assert float(per_mod["C"]) == 0.0
    assert float(total) == pytest.approx((A + B) / 2, rel=1e-6)  # not / 3: C has no targets


@pytest.mark.parametrize("fused", [False, True])
def test_token_weighting_averages_every_target_token(fused):
    total, _ = masked_modeling_loss(outputs(fused=fused), weighting="token")
    assert float(total) == pytest.approx((2 * LN4 + 2 * LN43 + LN4) / 5, rel=1e-6)


def test_label_smoothing_mixes_in_the_mean_over_classes():
    # B's rows cost -log p = (ln(4/3), ln 4) over the classes, mean (ln(4/3) + ln 4) / 2; smoothing 0.1 gives
    # 0.9 * (the target's cost) + 0.1 * that mean
    spread = (LN43 + LN4) / 2
    expected = (2 * (0.9 * LN43 + 0.1 * spread) + (0.9 * LN4 + 0.1 * spread)) / 3
    for fused in (False, True):
        _, per_mod = masked_modeling_loss(outputs(fused=fused), label_smoothing=0.1)
        assert float(per_mod["B"]) == pytest.approx(expected, rel=1e-6), fused
