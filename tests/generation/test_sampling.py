"""Schedules and sampling: ml-4m's numbers, exact sums, filters, reproducible draws."""

from __future__ import annotations

import pytest
import torch

from polymodal.generation import (
    ScheduleError,
    cosine_schedule,
    filter_top_k,
    filter_top_p,
    linear_schedule,
    sample,
    select_confident,
    temperature_schedule,
    token_schedule,
)


@pytest.mark.parametrize("steps,total", [(1, 1), (1, 196), (8, 196), (16, 196), (12, 16), (16, 16), (7, 1000)])
@pytest.mark.parametrize("name", ["cosine", "linear"])
def test_token_schedules_sum_exactly(name, steps, total):
    s = token_schedule(name, steps, total)
    assert sum(s) == total and all(n >= 0 for n in s)
    assert len(s) == steps if name == "cosine" else len(s) <= steps


def test_cosine_schedule_values_and_half_even_rounding():
    # masked fractions 1, .854, .5, .146 -> diffs * 196 = 28.7, 69.3, 69.3, remainder 29
    assert cosine_schedule(4, 196) == [29, 69, 69, 29]
    assert cosine_schedule(2, 10) == [5, 5]
    assert cosine_schedule(2, 5) == [2, 3]  # 2.5 rounds to even (2), as numpy/Python round in ml-4m
    assert cosine_schedule(2, 3) == [2, 1]  # 1.5 -> 2
    # ml-4m's rounding gives [0, 1, 1, ...] here (a step that commits nothing); every step now commits one
    assert cosine_schedule(16, 16) == [1] * 16


def test_linear_schedule_floors_and_puts_large_shares_first():
    assert linear_schedule(3, 10) == [4, 3, 3]  # floor(linspace) = 0, 3, 6, 10
    assert linear_schedule(5, 5) == [1] * 5


def test_more_steps_than_tokens_is_an_error():
    with pytest.raises(ScheduleError, match="9 steps for 4 tokens: use 1 to 4 steps"):
        cosine_schedule(9, 4)
    with pytest.raises(ScheduleError, match="unknown token schedule 'cos'"):
        token_schedule("cos", 2, 4)


def test_temperature_schedules():
    tokens = [4, 3, 3]
    assert temperature_schedule("constant", 1.5, tokens) == [1.5] * 3
    assert temperature_schedule("linear", 2.0, tokens) == pytest.approx([2.0, 1.2, 0.6])
    onex = temperature_schedule("onex:0.5:1.0", 3.0, cosine_schedule(8, 196))
    assert len(onex) == 8 and onex[0] < 3.0 and onex[-1] == pytest.approx(0.5)
    assert all(a >= b for a, b in zip(onex, onex[1:]))
    with pytest.raises(ScheduleError, match="onex:MIN_T:POWER"):
        temperature_schedule("onex:0.5", 1.0, tokens)
    with pytest.raises(ScheduleError, match="unknown temperature schedule 'cubic'"):
        temperature_schedule("cubic", 1.0, tokens)


def test_top_k_keeps_k_and_ties():
    logits = torch.tensor([[1.0, 5.0, 3.0, 3.0, 0.0]])
    assert torch.isinf(filter_top_k(logits, 2)).tolist() == [[True, False, False, False, True]]  # 3.0 tied
    assert not torch.isinf(filter_top_k(logits, 0)).any()
    assert torch.isfinite(filter_top_k(logits, 0.4)).sum() == 3  # a fraction of the vocabulary: 2 + tie


def test_top_p_keeps_the_token_that_crosses_the_threshold():
    logits = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log()
    kept = torch.isfinite(filter_top_p(logits, 0.6))
    assert kept.tolist() == [[True, True, False, False]]
    assert torch.isfinite(filter_top_p(logits, 0.4)).sum() == 1  # the first token alone crosses 0.4
    assert torch.isfinite(filter_top_p(logits, 0.0)).all()


def test_greedy_is_argmax_with_unit_confidence():
    logits = torch.randn(3, 7, 11, generator=torch.Generator().manual_seed(0))
    ids, conf = sample(logits, temperature=0.0)
    assert torch.equal(ids, logits.argmax(-1)) and torch.equal(conf, torch.ones(3, 7))


def test_seeded_sampling_reproduces_and_respects_filters():
    logits = torch.randn(64, 30, generator=torch.Generator().manual_seed(1))
    a = sample(logits, temperature=1.3, top_k=5, generator=torch.Generator().manual_seed(7))
    b = sample(logits, temperature=1.3, top_k=5, generator=torch.Generator().manual_seed(7))
    c = sample(logits, temperature=1.3, top_k=5, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(a[0], c[0])
    top5 = logits.topk(5, dim=-1).indices
    assert (top5 == a[0][:, None]).any(-1).all()
    probs = (filter_top_k(logits, 5) / 1.3).softmax(-1)
    assert torch.allclose(a[1], probs.gather(1, a[0][:, None])[:, 0])


def test_sampling_matches_a_global_seeded_multinomial():
    """With the same seed, our generator draws what ml-4m's torch.manual_seed(seed) + multinomial draws."""
    logits = torch.randn(10, 20, generator=torch.Generator().manual_seed(2))
    ids, _ = sample(logits, temperature=0.7, generator=torch.Generator().manual_seed(11))
    torch.manual_seed(11)
    expected = torch.multinomial((logits / 0.7).softmax(-1), 1)[:, 0]
    assert torch.equal(ids, expected)


def test_select_confident_counts_and_padding():
    conf = torch.tensor([[0.1, 0.9, 0.5, 0.7], [0.3, 0.2, 0.8, 0.99]])
    valid = torch.tensor([[True, True, True, True], [True, True, True, False]])
    chosen = select_confident(conf, valid, torch.tensor([2, 1]))
    assert chosen.tolist() == [[False, True, False, True], [False, False, True, False]]
    # ties: the same positions torch.topk picks
    ones = torch.ones(1, 20)
    picked = select_confident(ones, torch.ones(1, 20, dtype=torch.bool), torch.tensor([5]))
    assert set(picked[0].nonzero()[:, 0].tolist()) == set(torch.topk(ones, 5, dim=-1).indices[0].tolist())
