"""Span masking laid out by hand: one content, one keep mask, the input and target 4M builds from them (T5's
layout), the windows a target budget may cut, and what budgets count.

    content  10 11 12 13 14 [EOS]        keep  10 .  .  13 .  .
    input    10 [S_1] 13 [S_2]
    target   [S_1] 11 12 [S_2] 14 [EOS] [S_3]
"""

from __future__ import annotations

import pytest
import torch

from polymodal.data.spans import assemble, sample_keep

S1, S2, S3 = 5, 6, 7
EOS = 3
CONTENT = torch.tensor([[10, 11, 12, 13, 14, EOS]])
KEEP = torch.tensor([[True, False, False, True, False, False]])
INPUT = [10, S1, 13, S2]
TARGET = [S1, 11, 12, S2, 14, EOS, S3]


def layout(budget: int | None, *, with_input: bool = True, seed: int = 0) -> tuple[list[int], list[int], int]:
    keep = KEEP if with_input else torch.zeros_like(KEEP)  # `sample_keep` keeps nothing of a row without input
    values, is_in, is_tg = assemble(CONTENT, keep, torch.tensor([6]), torch.tensor([with_input]),
                                    None if budget is None else torch.tensor([budget]),
                                    generator=torch.Generator().manual_seed(seed))
    return values[0][is_in[0]].tolist(), values[0][is_tg[0]].tolist(), values.shape[1]


def test_input_then_target_side_by_side():
    inp, tgt, width = layout(None)
    assert (inp, tgt, width) == (INPUT, TARGET, 11)
    values, is_in, is_tg = assemble(CONTENT, KEEP, torch.tensor([6]), torch.tensor([True]), None,
                                    generator=torch.Generator().manual_seed(0))
    assert values[0].tolist() == INPUT + TARGET and is_in[0].tolist() == [True] * 4 + [False] * 7
    assert is_tg[0].tolist() == [False] * 4 + [True] * 7


def test_without_input_the_whole_content_is_one_span():
    inp, tgt, _ = layout(None, with_input=False)
    assert inp == [] and tgt == [S1, 10, 11, 12, 13, 14, EOS, S2]


# Sentinels sit at positions 0, 3 and 6 of the full target; a cut starts at [S_1] or [S_2] (never the closing
# [S_3]) and runs for the budget, or, when fewer tokens follow, from the earliest sentinel after which the rest fits.
@pytest.mark.parametrize("budget, windows", [
    (1, {(S1,), (S2,)}),
    (3, {(S1, 11, 12), (S2, 14, EOS)}),
    (4, {(S1, 11, 12, S2), (S2, 14, EOS, S3)}),
    (5, {(S1, 11, 12, S2, 14), (S2, 14, EOS, S3)}),  # from [S_2] only 4 follow: the rest from [S_2], 4 long
    (6, {(S1, 11, 12, S2, 14, EOS), (S2, 14, EOS, S3)}),
    (7, {tuple(TARGET)}),
])
def test_a_target_over_budget_is_one_of_4ms_windows(budget, windows):
    seen = {tuple(layout(budget, seed=s)[1]) for s in range(40)}
    assert seen == windows
    assert all(layout(budget, seed=s)[0] == INPUT for s in range(3))  # the cut leaves the input alone


def test_input_budgets_count_one_sentinel_per_span():
    """Keep probability 1/2 on 12 tokens under a budget of 5: every input (kept tokens + one sentinel per span of
    removed ones) is at most 5 long, counted here by hand from the keep mask."""
    n, rows = 12, 200
    keep = sample_keep(torch.full((rows,), n), torch.full((rows,), 5), torch.full((rows,), 0.5),
                       generator=torch.Generator().manual_seed(0))
    for row in keep.tolist():
        spans = sum(1 for i in range(n) if not row[i] and (i == 0 or row[i - 1]))
        assert sum(row) + spans <= 5, row
    # the budget binds: without the sentinels counted, some inputs would have kept more
    assert max(sum(r) for r in keep.tolist()) < 5
