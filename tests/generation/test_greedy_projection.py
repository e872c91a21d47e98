"""Greedy MaskGIT projects only the rows it commits (`maskgit_step`): the tokens must be those of projecting every
position still to come and sampling them all (what the step did before, and what ml-4m does)."""

from __future__ import annotations

import pytest
import torch

from polymodal.data.batch import ModalityTokens
from polymodal.generation import Guidance, Plan, Step, initial_state
from polymodal.generation.sampling import sample, select_confident
from polymodal.generation.schemes import _guided_image_logits, commit, maskgit_step

from .conftest import RGB, TEXT, TOK, pixels, text


def full_projection_step(model, state, target, counts, guidance):
    """The reference: logits of every position still to come, greedy sample, the most confident committed."""
    logits, valid, positions = _guided_image_logits(model, state, target, state[target].is_target, guidance)
    ids, conf = sample(logits, temperature=0.0)
    return commit(state, target, positions, ids, select_confident(conf, valid, counts))


@pytest.mark.parametrize("guidance", [Guidance(), Guidance(scale=3.0, drop=(RGB,)),
                                      Guidance(weights={RGB: 2.0, TEXT.name: -0.5})])
def test_greedy_step_commits_the_same_tokens_as_projecting_every_row(model, guidance):
    # Sample 1 in-paints (half its tokens given), so the samples commit different numbers of tokens per step.
    given = torch.zeros(2, 16, dtype=torch.bool)
    given[1, ::2] = True
    tok = ModalityTokens(torch.arange(32).reshape(2, 16) % 7, given, torch.zeros_like(given))
    cond = {RGB: pixels(), TEXT.name: text([[210, 220, 3], [230, 3]]), TOK: tok}
    plan = Plan((Step(TOK, num_steps=4, temperature=0.0),))
    a = b = initial_state(model, cond, plan)
    for counts in (torch.tensor([3, 1]), torch.tensor([5, 4]), torch.tensor([0, 3]), torch.tensor([8, 0])):
        with torch.no_grad():
            a = maskgit_step(model, a, TOK, counts, temperature=0.0, guidance=guidance)
            b = full_projection_step(model, b, TOK, counts, guidance)
        for x, y in zip((a[TOK].values, a[TOK].is_input, a[TOK].is_target),
                        (b[TOK].values, b[TOK].is_input, b[TOK].is_target)):
            assert torch.equal(x, y)
    assert not bool(a[TOK].is_target.any())  # 16 and 8 positions to come, all committed
