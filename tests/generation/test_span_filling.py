"""Span filling (T5-style): a prompt with several gaps ``[S_1] ... [S_2] ... [S_3]`` is completed autoregressively
and each gap gets its own span, in order.

The model here is scripted: its greedy next text token is a fixed function of the token it reads (a chain written
out below), so the decoded sequence and the filled-in text are known by hand, whatever the code computes them
with. The decoder's blocks are switched off (every weight 0: a pre-norm block is then x + 0), the token
embedding of each scripted id is its own axis, 100 long (the position table and modality embedding add at most
~1 per axis), and the head maps that axis to the id that follows.
"""

from __future__ import annotations

import pytest
import torch

from polymodal.config import ModelConfig
from polymodal.generation import Plan, PromptError, Step, generate, generate_iter
from polymodal.model import FourM

from .conftest import IN, OUT, RGB, TEXT, pixels, text

S1, S2, S3, S4, S5 = 5, 6, 7, 8, 9  # [S_k] = 4 + k in 4M's vocabulary
PAD = 0
# What the scripted decoder writes after each token: the T5 target "[S_1] 220 221 [S_2] 222 [S_3] 223 224 [S_4]",
# and past [S_4] more words (230, 231, [S_5], ...) that a correct decoder never reaches for a 3-gap prompt.
CHAIN = {S1: 220, 220: 221, 221: S2, S2: 222, 222: S3, S3: 223, 223: 224, 224: S4, S4: 230, 230: 231, 231: S5,
         S5: 232, 232: 233, 233: 234}
GREEDY = Plan((Step(TEXT.name, "autoregressive", temperature=0.0),))


def script(model: FourM, target: str, chain: dict[int, int]) -> FourM:
    """``model``, changed in place so that its greedy next token of sequence ``target`` after ``t`` is ``chain[t]``
    (see the module docstring); its other heads are left as they are, but its decoder blocks are switched off."""
    head = model.decoder_embeddings[target]
    assert len(chain) <= model.config.dim  # one axis per scripted token
    with torch.no_grad():
        for p in model.decoder.parameters():
            p.zero_()
        head.mod_emb.zero_()
        head.token_emb.weight.zero_()
        head.to_logits.weight.zero_()
        for axis, (tok, nxt) in enumerate(chain.items()):
            head.token_emb.weight[tok, axis] = 100.0
            head.to_logits.weight[nxt, axis] = 1.0
    return model


def scripted_model(chain: dict[int, int]) -> FourM:
    """A tiny FourM whose greedy next text token after ``t`` is ``chain[t]``."""
    torch.manual_seed(0)
    return script(FourM(ModelConfig.preset("test", domains_in=IN, domains_out=OUT, dim=32, num_heads=2)).eval(),
                  TEXT.name, chain)


@pytest.fixture(scope="module")
def scripted() -> FourM:
    return scripted_model(CHAIN)


def filled(ids: torch.Tensor) -> list[list[int]]:
    return [[i for i in row.tolist() if i != PAD] for row in ids]


def test_three_gaps_are_each_filled_with_their_span_in_order(scripted):
    # "210 [S_1] 211 [S_2] 212 [S_3] 213 [EOS]": 220 221 go in the first gap, 222 in the second, 223 224 in the third
    prompt = text([[210, S1, 211, S2, 212, S3, 213, 3]])
    (step,) = generate_iter(scripted, {RGB: pixels(1), TEXT.name: prompt}, GREEDY)
    assert step.tokens[0].tolist()[:9] == [S1, 220, 221, S2, 222, S3, 223, 224, S4]  # stops at [S_4]
    assert set(step.tokens[0].tolist()[9:]) <= {PAD}
    assert filled(step.state[TEXT.name].values) == [[210, 220, 221, 211, 222, 212, 223, 224, 213, 3]]
    assert step.state[TEXT.name].is_input.sum().item() == 10 and not step.state[TEXT.name].is_target.any()


def test_each_sample_stops_at_its_own_closing_sentinel(scripted):
    # one gap closes at [S_2], two gaps at [S_3], three at [S_4]; the same chain runs past each of them
    prompt = text([[S1, 213, 3], [210, S1, 211, S2, 3], [S1, S2, S3]])
    (step,) = generate_iter(scripted, {RGB: pixels(3), TEXT.name: prompt}, GREEDY)
    assert step.tokens.tolist() == [[S1, 220, 221, S2, PAD, PAD, PAD, PAD, PAD],  # PAD once a sample has stopped
                                    [S1, 220, 221, S2, 222, S3, PAD, PAD, PAD],
                                    [S1, 220, 221, S2, 222, S3, 223, 224, S4]]
    assert filled(step.state[TEXT.name].values) == [[220, 221, 213, 3], [210, 220, 221, 211, 222, 3],
                                                    [220, 221, 222, 223, 224]]


def test_gaps_need_not_start_at_s1(scripted):
    # a prompt whose gaps are [S_2] and [S_3]: decoding starts at [S_2] and closes at [S_4]
    prompt = text([[210, S2, 211, S3]])
    out = generate(scripted, {RGB: pixels(1), TEXT.name: prompt}, GREEDY)[TEXT.name]
    assert filled(out) == [[210, 222, 211, 223, 224]]


def test_uncached_decoding_fills_the_same_spans(scripted):
    prompt = text([[210, S1, 211, S2, 212, S3, 213]])
    cached = generate(scripted, {RGB: pixels(1), TEXT.name: prompt}, GREEDY)[TEXT.name]
    plain = generate(scripted, {RGB: pixels(1), TEXT.name: prompt}, GREEDY, cache=False)[TEXT.name]
    assert filled(plain) == filled(cached) == [[210, 220, 221, 211, 222, 212, 223, 224, 213]]


def test_max_tokens_cuts_the_last_span_and_leaves_later_gaps_empty(scripted):
    # 4 tokens after [S_1]: "220 221 [S_2] 222"; the third gap never gets a span and is left out
    plan = Plan((Step(TEXT.name, "autoregressive", temperature=0.0, max_tokens=4),))
    prompt = text([[210, S1, 211, S2, 212, S3, 213]])
    (step,) = generate_iter(scripted, {RGB: pixels(1), TEXT.name: prompt}, plan)
    assert step.tokens[0].tolist() == [S1, 220, 221, S2, 222]
    assert filled(step.state[TEXT.name].values) == [[210, 220, 221, 211, 222, 212, 213]]


def test_a_prompt_that_fills_the_modality_has_no_room():
    full = text([[S1] + [210] * (TEXT.max_length - 1)])
    model = scripted_model({S1: 220})
    with pytest.raises(PromptError, match=f"text@gen: the prompt fills the modality's {TEXT.max_length} tokens"):
        generate(model, {RGB: pixels(1), TEXT.name: full}, GREEDY)


def test_eos_ends_the_text_only_when_asked():
    # the scripted decoder writes "[S_1] 220 [EOS] 221 [S_2]": ml-4m reads on to the closing sentinel
    model = scripted_model({S1: 220, 220: 3, 3: 221, 221: S2, S2: 222})
    prompt = text([[210, S1]])
    for stop_at_eos, decoded, merged in ((False, [S1, 220, 3, 221, S2], [210, 220, 3, 221]),
                                         (True, [S1, 220, 3], [210, 220, 3])):
        plan = Plan((Step(TEXT.name, "autoregressive", temperature=0.0, stop_at_eos=stop_at_eos),))
        (step,) = generate_iter(model, {RGB: pixels(1), TEXT.name: prompt}, plan)
        assert step.tokens[0].tolist() == decoded, stop_at_eos
        assert filled(step.state[TEXT.name].values) == [merged], stop_at_eos
