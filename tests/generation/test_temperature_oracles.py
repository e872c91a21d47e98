"""Temperature schedules against apple/ml-4m's, transcribed here as the oracle (fourm/utils/generation.py:
``onex_temp_schedule``, ``linear_temp_schedule``), on the token schedules generation uses."""

from __future__ import annotations

import numpy as np
import pytest

from polymodal.generation import cosine_schedule, linear_schedule, temperature_schedule


def ml4m_onex(max_t: float, min_t: float, token_schedule: list[int], power: float) -> list[float]:
    x = np.linspace(1, 100, num=sum(token_schedule))
    y = 1 / (x ** power)
    y = y - min(y)
    y = y / max(y)
    cumsum = np.cumsum(token_schedule) / np.sum(token_schedule)
    unscaled = [(1 - cs) * us for us, cs in zip(y, cumsum)]
    return np.array([min_t + (max_t - min_t) * s for s in unscaled]).clip(min=1e-9).tolist()


def ml4m_linear(temp: float, token_schedule: list[int]) -> list[float]:
    t = np.array(token_schedule)
    return np.concatenate([np.array([temp * 1.0]), (temp * (t.sum() - t.cumsum()) / t.sum())[:-1]]).clip(
        min=1e-9).tolist()


SCHEDULES = [cosine_schedule(8, 196), cosine_schedule(25, 196), linear_schedule(8, 196), linear_schedule(3, 16),
             cosine_schedule(50, 256), [5, 3, 1]]


@pytest.mark.parametrize("tokens", SCHEDULES, ids=lambda t: f"{len(t)}steps-{sum(t)}")
@pytest.mark.parametrize("min_t, power, temp", [(0.5, 0.5, 3.0), (0.5, 1.0, 5.0), (0.1, 2.0, 1.0)])
def test_onex_is_ml4ms(tokens, min_t, power, temp):
    ours = temperature_schedule(f"onex:{min_t}:{power}", temp, tokens)
    assert ours == pytest.approx(ml4m_onex(temp, min_t, tokens, power), rel=1e-12)


@pytest.mark.parametrize("tokens", SCHEDULES, ids=lambda t: f"{len(t)}steps-{sum(t)}")
def test_linear_is_ml4ms(tokens):
    assert temperature_schedule("linear", 2.5, tokens) == pytest.approx(ml4m_linear(2.5, tokens), rel=1e-12)


def test_onex_by_hand_for_three_steps():
    # 9 tokens as 5, 3, 1; power 1: x = 1, 13.375, ..., 100; y = 1/x rescaled to [0, 1] is 1 at x=1 and
    # (1/13.375 - 0.01) / 0.99 = 0.065419 at x=13.375, (1/25.75 - 0.01) / 0.99 = 0.029127 at x=25.75.
    # Damped by the decoded fraction after each step (5/9, 8/9, 1): 4/9 * 1, 1/9 * 0.065419, 0.
    # Temperature 3 down to 0.5: 0.5 + 2.5 * that.
    expected = [0.5 + 2.5 * 4 / 9, 0.5 + 2.5 * 0.065419 / 9, 0.5]
    assert temperature_schedule("onex:0.5:1.0", 3.0, [5, 3, 1]) == pytest.approx(expected, abs=1e-5)
