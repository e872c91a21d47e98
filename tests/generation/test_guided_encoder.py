"""A guided step's passes encoded together equal each pass encoded alone: one sample (its passes attend inside
their own runs of one packed row) and several (a block-diagonal mask), with and without committed tokens (an
unconditional pass with no input token reads an empty context)."""

from __future__ import annotations

import pytest
import torch

from polymodal.data.batch import ModalityTokens
from polymodal.generation import Plan, Step, initial_state
from polymodal.generation.guidance import Guidance, without
from polymodal.interop.ml4m import load_checkpoint

from ..conftest import fixtures_dir

DEPTH = "tok_depth@224"


@pytest.fixture(scope="module")
def model():
    return load_checkpoint(fixtures_dir("ml4m-4m21-tiny")).eval()


@pytest.mark.parametrize("b", [1, 3])
@pytest.mark.parametrize("committed", [0, 40])
def test_passes_together_equal_each_alone(model, b, committed):
    rgb = torch.randn(b, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    plan = Plan((Step(DEPTH, "maskgit", temperature=0.0, guidance_scale=2.0, num_steps=4),))
    state = initial_state(model, {"rgb@224": rgb}, plan)
    t = state[DEPTH]
    done = torch.zeros_like(t.is_input)
    for i in range(b):  # a different number committed per sample
        done[i, torch.randperm(196, generator=torch.Generator().manual_seed(i))[:committed + 5 * i]] = committed > 0
    state = state.replace(**{DEPTH: ModalityTokens(t.values + 3 * done, done, ~done)})
    guidance = Guidance(scale=2.0, drop=("rgb@224",))
    with torch.no_grad():
        both = model.encode(guidance.passes(state, model.config.modality), passes=2)
        alone = [model.encode(state), model.encode(without(state, guidance.drop, model.config.modality))]
    for p, one in enumerate(alone):
        ctx, valid = both.context[p * b:(p + 1) * b], both.valid[p * b:(p + 1) * b]
        assert torch.equal(valid.sum(1), one.valid.sum(1))
        torch.testing.assert_close(ctx[valid], one.context[one.valid], rtol=1e-4, atol=1e-5)

