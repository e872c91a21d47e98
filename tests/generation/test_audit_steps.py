"""Step options a user can get wrong: refused when the step is made (with the option's name), not as a misleading
error after earlier steps ran; a tiny top-k fraction keeps the most probable token instead of crashing."""

from __future__ import annotations

import pytest
import torch

from polymodal.generation import PlanError, Step, filter_top_k, sample


@pytest.mark.parametrize("max_tokens", [0, -5])
def test_max_tokens_below_one_is_refused_at_the_step(max_tokens):
    with pytest.raises(PlanError) as e:
        Step("caption", "autoregressive", max_tokens=max_tokens)
    assert str(e.value) == f"caption: max_tokens must be a whole number >= 1 (or None), got {max_tokens}"


@pytest.mark.parametrize("top_k", [-1, -0.5, 1.5])
def test_top_k_outside_its_range_is_refused(top_k):
    with pytest.raises(PlanError) as e:
        Step("tok_depth@64", "maskgit", top_k=top_k)
    assert str(e.value) == ("tok_depth@64: top_k must be a count >= 0 or a fraction of the vocabulary in (0, 1], "
                            f"got {top_k}")


def test_a_top_k_fraction_under_one_token_keeps_the_best():
    logits = torch.randn(3, 512, generator=torch.Generator().manual_seed(0))
    kept = filter_top_k(logits, 0.0001)  # 0.05 of a token: the most probable one stays
    assert torch.equal(torch.isfinite(kept), torch.nn.functional.one_hot(logits.argmax(-1), 512).bool())
    ids, _ = sample(logits, temperature=1.0, top_k=0.0001, generator=torch.Generator().manual_seed(1))
    assert torch.equal(ids, logits.argmax(-1))
