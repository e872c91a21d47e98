"""Token schedules for every step count: 1 to N steps each give a schedule of N tokens with at least one token a
step, equal to ml-4m's numbers wherever ml-4m's own schedule is valid (issue 16: for 16 tokens only 1-7, 9-13
and 16 steps were accepted, and some of those committed nothing in a step)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from polymodal.generation import ScheduleError, Step, cosine_schedule, linear_schedule, temperature_schedule
from polymodal.generation.sampling import at_least_one_per_step

SIZES = (1, 2, 16, 64, 196, 256)


def ml4m_cosine(num_steps: int, total: int) -> list[int]:
    """apple/ml-4m fourm/utils/generation.py::cosine_schedule, transcribed (the oracle, not our code)."""
    iters = np.arange(num_steps)
    schedule = np.array([0.5 * (1 + math.cos(math.pi * i / len(iters))) for i in iters])
    tokens = [round(total * i) for i in (schedule[:-1] - schedule[1:])]
    tokens.append(total - sum(tokens))
    return [int(t) for t in tokens]


def ml4m_linear(num_steps: int, total: int) -> list[int]:
    """apple/ml-4m fourm/utils/generation.py::linear_schedule, transcribed."""
    schedule = np.linspace(0, total, num_steps + 1, dtype=int)
    tokens = np.diff(schedule)[::-1]
    tokens.sort()
    return np.trim_zeros(tokens[::-1], "b").tolist()


@pytest.mark.parametrize("total", SIZES)
def test_every_step_count_gives_a_full_schedule_with_a_token_a_step(total):
    kept = repaired = 0
    for steps in range(1, total + 1):
        cos, lin = cosine_schedule(steps, total), linear_schedule(steps, total)
        for s in (cos, lin):
            assert len(s) == steps and sum(s) == total and min(s) >= 1, (steps, s)
        assert lin == ml4m_linear(steps, total)  # ml-4m's linear shares are all >= 1 when steps <= tokens
        ref = ml4m_cosine(steps, total)
        if min(ref) >= 1:
            assert cos == ref, steps
            kept += 1
        else:
            repaired += 1
        temps = temperature_schedule("onex:0.5:1.0", 3.0, cos)  # one token: was 0/0 = NaN (ml-4m's too)
        assert len(temps) == steps and all(0.5 <= t <= 3.0 for t in temps)
    if total >= 16:  # both cases occur, so the parity branch is exercised
        assert kept and repaired


def test_the_counts_the_issue_names_for_16_tokens():
    assert ml4m_cosine(8, 16)[-1] == -1  # ml-4m's rounding overshoots: a negative last step
    assert cosine_schedule(8, 16) == [1, 2, 3, 3, 3, 2, 1, 1]
    assert ml4m_cosine(12, 16).count(0) > 0 and min(cosine_schedule(12, 16)) == 1
    assert cosine_schedule(16, 16) == [1] * 16


def test_repair_keeps_valid_schedules_and_fixes_broken_ones():
    assert at_least_one_per_step([29, 69, 69, 29]) == [29, 69, 69, 29]
    assert at_least_one_per_step([0, 3, 1]) == [1, 2, 1]  # a starved first step borrows from the next
    assert at_least_one_per_step([2, 2, 0, 0]) == [1, 1, 1, 1]  # tail steps keep one each
    assert at_least_one_per_step([1, 2, 3, 3, 3, 3, 2, -1]) == [1, 2, 3, 3, 3, 2, 1, 1]


@pytest.mark.parametrize("steps, total", [(0, 4), (5, 4), (65, 64), (17, 16)])
def test_outside_1_to_n_names_the_range(steps, total):
    with pytest.raises(ScheduleError, match=f"{steps} steps for {total} tokens: use 1 to {total} steps"):
        cosine_schedule(steps, total)


@pytest.mark.parametrize("scheme", ["maskgit", "roar"])
def test_a_plan_step_accepts_every_count_up_to_its_tokens(scheme):
    for steps in range(1, 17):
        tokens, temps = Step("tok_depth@64", scheme, num_steps=steps).schedules(16)
        assert sum(tokens) == 16 and len(tokens) == len(temps) == steps and min(tokens) >= 1


@pytest.mark.parametrize("field, value", [("temperature", float("nan")), ("temperature", float("inf")),
                                          ("guidance_scale", float("nan")), ("guidance_scale", float("-inf"))])
def test_a_step_refuses_non_finite_settings(field, value):
    with pytest.raises(ValueError, match=f"tok_depth@64: {field} must be"):
        Step("tok_depth@64", **{field: value})
