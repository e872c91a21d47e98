"""Invariants of the schemes and of `generate` on a tiny random model."""

from __future__ import annotations

import pytest
import torch

from polymodal.data.batch import ModalityTokens
from polymodal.generation import (
    ConditionError,
    Guidance,
    GuidanceError,
    Plan,
    PlanError,
    PromptError,
    Step,
    generate,
    generate_iter,
    initial_state,
    merge_spans,
    preset,
)
from polymodal.generation.schemes import roar_order

from .conftest import GLOBAL, RGB, TEXT, TOK, pixels, text

S1, S2, S3 = 5, 6, 7


def run_steps(model, conditions, plan, **kw):
    return list(generate_iter(model, conditions, plan, **kw))


@pytest.mark.parametrize("scheme,steps", [("maskgit", 5), ("maskgit", 16), ("roar", 6)])
def test_every_target_position_is_filled_exactly_once_in_the_scheduled_steps(model, scheme, steps):
    plan = Plan((Step(TOK, scheme, num_steps=steps, temperature=1.0),))
    results = run_steps(model, {RGB: pixels(3)}, plan, generator=torch.Generator().manual_seed(0))
    tokens, _ = plan.steps[0].schedules(16)
    assert len(results) == len(tokens) and results[-1].finished
    seen = torch.zeros(3, 16, dtype=torch.long)
    before = initial_state(model, {RGB: pixels(3)}, plan)[TOK]
    for r, k in zip(results, tokens):
        now = r.state[TOK]
        new = now.is_input & ~before.is_input
        assert new.sum(1).tolist() == [k] * 3
        assert torch.equal(now.values[before.is_input], before.values[before.is_input])  # committed never change
        seen += new.long()
        before = now
    assert (seen == 1).all() and not before.is_target.any()


def test_greedy_is_deterministic_and_seeds_reproduce(model):
    plan = Plan((Step(TOK, num_steps=4, temperature=0.0), Step(TEXT.name, "autoregressive", temperature=0.0)))
    a, b = generate(model, {RGB: pixels()}, plan), generate(model, {RGB: pixels()}, plan)
    assert all(torch.equal(a[k], b[k]) for k in a)
    sampled = Plan((Step(TOK, num_steps=4, temperature=2.0), Step(TEXT.name, "autoregressive", temperature=1.5)))
    s1 = generate(model, {RGB: pixels()}, sampled, seed=3)
    s2 = generate(model, {RGB: pixels()}, sampled, seed=3)
    s3 = generate(model, {RGB: pixels()}, sampled, seed=4)
    g1 = generate(model, {RGB: pixels()}, sampled, generator=torch.Generator().manual_seed(9))
    g2 = generate(model, {RGB: pixels()}, sampled, generator=torch.Generator().manual_seed(9))
    assert all(torch.equal(s1[k], s2[k]) for k in s1) and all(torch.equal(g1[k], g2[k]) for k in g1)
    assert not torch.equal(s1[TOK], s3[TOK])


@pytest.mark.parametrize("temperature,scale", [(0.0, 1.0), (1.0, 1.0), (0.0, 3.0), (1.0, 2.5)])
def test_cached_and_uncached_decoding_give_identical_tokens(model, temperature, scale):
    plan = Plan((Step(TEXT.name, "autoregressive", temperature=temperature, guidance_scale=scale),))
    cond = {RGB: pixels(3), TOK: torch.randint(0, 50, (3, 16), generator=torch.Generator().manual_seed(1))}
    a = generate(model, cond, plan, seed=5, cache=True)
    b = generate(model, cond, plan, seed=5, cache=False)
    assert torch.equal(a[TEXT.name], b[TEXT.name])


def test_guidance_scale_one_equals_no_guidance(model):
    cond = {RGB: pixels()}
    plain = Plan((Step(TOK, num_steps=4, temperature=1.0), Step(TEXT.name, "autoregressive", temperature=1.0)))
    guided = Plan(tuple(Step(s.target, s.scheme, num_steps=s.num_steps, temperature=1.0, guidance_scale=1.0,
                             guide=(RGB,)) for s in plain.steps))
    a, b = generate(model, cond, plain, seed=1), generate(model, cond, guided, seed=1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    # and the batched passes' combination at scale 1 is the conditional logits
    state = initial_state(model, cond, plain)
    g = Guidance(scale=1.0 + 1e-9, drop=(RGB,))  # forces the second pass
    assert torch.allclose(g.combine(_logits(model, state, g)), _logits(model, state, Guidance()), atol=1e-5)


def _logits(model, state, guidance):
    with torch.no_grad():
        batched = guidance.passes(state, model.config.modality)
        enc = model.encode(batched, passes=guidance.num_passes)
        return model.logits(TOK, model.decode(batched, enc, [TOK], logits=False)[TOK].hidden)


def test_batched_passes_equal_separate_passes(model):
    """Cond and uncond rows share one forward; each equals its pass run alone, also when the unconditional pass
    has no encoder token at all (its cross-attention reads nothing, as an empty context in ml-4m)."""
    plan = Plan((Step(TOK, num_steps=2),))
    state = initial_state(model, {RGB: pixels(), TEXT.name: text([[210, 220, 3], [230, 3]])}, plan)
    no_rgb = state.replace(**{RGB: state[RGB].with_masks(is_input=torch.zeros_like(state[RGB].is_input))})
    both = _logits(model, state, Guidance(scale=3.0, drop=(RGB,)))
    assert torch.allclose(both.chunk(2)[0], _logits(model, state, Guidance()), atol=1e-5)
    assert torch.allclose(both.chunk(2)[1], _logits(model, no_rgb, Guidance()), atol=1e-5)
    rgb_only = initial_state(model, {RGB: pixels()}, plan)
    empty = rgb_only.replace(**{RGB: no_rgb[RGB]})
    both = _logits(model, rgb_only, Guidance(scale=3.0, drop=(RGB,)))
    alone = _logits(model, empty, Guidance())
    assert torch.isfinite(both).all() and torch.allclose(both.chunk(2)[1], alone, atol=1e-5)
    assert not torch.allclose(both.chunk(2)[0], alone, atol=1e-3)


def test_multi_condition_weights(model):
    cond = {RGB: pixels(), GLOBAL: torch.randint(0, 30, (2, 4), generator=torch.Generator().manual_seed(2))}
    state = initial_state(model, cond, Plan((Step(TOK, num_steps=2),)))
    one, cfg, two = (g.combine(_logits(model, state, g)) for g in (
        Guidance(weights={RGB: 2.0}), Guidance(scale=2.0, drop=(RGB,)), Guidance(weights={RGB: 1.5, GLOBAL: -0.5})))
    assert torch.allclose(one, cfg, atol=1e-5) and torch.isfinite(two).all() and not torch.allclose(two, one)
    # a later step may weight an earlier target: the conditioning set grows with the chain
    plan = Plan((Step(GLOBAL, num_steps=2, temperature=0.0),
                 Step(TOK, num_steps=2, temperature=0.0, condition_weights={RGB: 2.0, GLOBAL: 0.5})))
    out = generate(model, {RGB: pixels()}, plan)
    assert out[TOK].shape == (2, 16)
    bad = Plan((Step(TOK, num_steps=2, condition_weights={GLOBAL: 1.0}),))
    with pytest.raises(GuidanceError, match="tok_global@test"):
        generate(model, {RGB: pixels()}, bad)


def test_inpainting_keeps_given_tokens(model):
    values = torch.randint(0, 50, (2, 16), generator=torch.Generator().manual_seed(3))
    given = torch.zeros(2, 16, dtype=torch.bool)
    given[0, :10] = True
    given[1, 4:7] = True  # different counts per sample: each gets its own schedule
    tokens = ModalityTokens(values, given, torch.zeros_like(given))
    results = run_steps(model, {RGB: pixels(), TOK: tokens}, Plan((Step(TOK, num_steps=3, temperature=1.0),)), seed=0)
    final = results[-1].state[TOK]
    assert len(results) == 3 and final.is_input.all() and not final.is_target.any()
    assert torch.equal(final.values[given], values[given])


def test_span_infilling_and_captions_from_scratch(model):
    prompt = text([[210, S1, 220, 3], [S1, 230, 3]])
    plan = Plan((Step(TEXT.name, "autoregressive", temperature=0.0),))
    results = run_steps(model, {RGB: pixels(), TEXT.name: prompt}, plan)
    merged, decoded = results[-1].state[TEXT.name], results[-1].tokens
    assert (decoded[:, 0] == S1).all()
    for b, (row, pre, post) in enumerate([(merged.values[0], [210], [220, 3]), (merged.values[1], [], [230, 3])]):
        n = int(merged.is_input[b].sum())
        ids = row[:n].tolist()
        assert ids[:len(pre)] == pre and ids[n - len(post):] == post
        assert not any(4 <= i < 204 for i in ids)  # every sentinel replaced
    scratch = generate(model, {RGB: pixels()}, plan)[TEXT.name]
    assert scratch.shape[0] == 2 and not ((scratch >= 4) & (scratch < 204)).any()


def test_merge_spans():
    assert merge_spans([210, S1, 211, S2], [S1, 220, 221, S2, 222, S3]) == [210, 220, 221, 211, 222]
    assert merge_spans([S1], [S1, 230, 231]) == [230, 231]  # no closing sentinel: everything written goes in
    assert merge_spans([S1, 210], [S1, S2, 240]) == [210]  # an empty span


def test_batched_generation_equals_one_sample_at_a_time(model):
    plan = Plan((Step(GLOBAL, num_steps=2, temperature=0.0), Step(TEXT.name, "autoregressive", temperature=0.0)))
    x = pixels(3)
    together = generate(model, {RGB: x}, plan)
    for i in range(3):
        alone = generate(model, {RGB: x[i:i + 1]}, plan)
        assert torch.equal(alone[GLOBAL][0], together[GLOBAL][i])
        n = alone[TEXT.name].shape[1]
        assert torch.equal(alone[TEXT.name][0], together[TEXT.name][i, :n])


def test_presets_follow_the_demo_order_and_settings():
    outs = ("tok_rgb@224", "tok_depth@224", "tok_clip@224", "caption", "det", "metadata")
    rgb = preset("rgb_to_all", outs)
    assert rgb.targets == ("tok_clip@224", "tok_depth@224", "caption", "det", "metadata") and rgb.grow_conditioning
    assert (rgb.steps[0].scheme, rgb.steps[0].num_steps, rgb.steps[0].guidance_scale) == ("roar", 1, 2.0)
    cap = preset("caption_to_all", outs)
    assert cap.targets == ("tok_clip@224", "tok_depth@224", "tok_rgb@224", "det", "metadata")
    clip = cap.steps[0]
    assert (clip.num_steps, clip.temperature, clip.guidance_scale) == (50, 5.0, 3.0)
    assert clip.temperature_schedule == "onex:0.5:0.5"
    with pytest.raises(PlanError, match="unknown preset 'everything'"):
        preset("everything", outs)


def test_a_demo_like_chain_runs(model):
    with pytest.raises(PlanError, match="outputs none of its targets"):
        preset("rgb_to_all", model.config.domains_out)  # the demo's domains only
    plan = Plan((Step(GLOBAL, "roar", num_steps=1, temperature=0.01, guidance_scale=2.0),
                 Step(TOK, "roar", num_steps=8, temperature=3.0, temperature_schedule="onex:0.5:0.5",
                      guidance_scale=2.0)), grow_conditioning=True)
    out = generate(model, {RGB: pixels()}, plan, seed=0)
    assert out[TOK].shape == (2, 16) and out[GLOBAL].shape == (2, 4)


def test_bad_inputs_name_the_problem(model):
    cond = {RGB: pixels()}
    with pytest.raises(ConditionError, match="'tok_nope@test' is not a domain"):
        generate(model, {**cond, "tok_nope@test": torch.zeros(2, 16)}, Plan((Step(TOK, num_steps=2),)))
    with pytest.raises(PlanError, match="rgb@test: this model cannot output it"):
        generate(model, cond, Plan((Step(RGB, num_steps=2),)))
    with pytest.raises(ConditionError, match="text@gen: sample 1 is empty"):
        generate(model, {**cond, TEXT.name: text([[210, 3], [0]])}, Plan((Step(TOK, num_steps=2),)))
    with pytest.raises(PlanError, match="tok_global@test: 5 steps for 4 tokens: use 1 to 4 steps"):
        generate(model, cond, Plan((Step(GLOBAL, num_steps=5),)))
    with pytest.raises(PlanError, match="text@gen: a sequence is decoded autoregressively"):
        generate(model, cond, Plan((Step(TEXT.name, "maskgit"),)))
    with pytest.raises(PromptError, match="text@gen: the prompt of sample 0 has no sentinel"):
        generate(model, {**cond, TEXT.name: text([[210, 3], [220, S1]])},
                 Plan((Step(TEXT.name, "autoregressive"),)))
    with pytest.raises(PlanError, match="tok_a@test: is a target but fully given"):
        generate(model, {**cond, TOK: torch.zeros(2, 16, dtype=torch.long)}, Plan((Step(TOK, num_steps=2),)))
    with pytest.raises(PlanError, match="tok_a@test: condition_weights name the step's own target"):
        Step(TOK, condition_weights={TOK: 1.0})
    with pytest.raises(PlanError, match="unknown scheme 'diffusion'"):
        Step(TOK, "diffusion")
    assert all(issubclass(e, ValueError) for e in (ConditionError, PlanError, PromptError, GuidanceError))


def test_roar_order_is_a_seeded_uniform_draw_over_the_grid():
    todo = torch.rand(2, 16, generator=torch.Generator().manual_seed(1)) < 0.6
    ranks = roar_order(todo, torch.Generator().manual_seed(3))
    r = torch.rand(16, generator=torch.Generator().manual_seed(3))  # ml-4m: torch.rand(N) after seeding
    for b in range(2):
        pos = todo[b].nonzero()[:, 0]
        assert torch.equal(ranks[b, pos[r[pos].argsort()]], torch.arange(len(pos)))  # positions to come first
        assert (ranks[b, ~todo[b]] >= len(pos)).all()


def test_unconditional_generation_from_nothing(model):
    plan = Plan((Step(GLOBAL, num_steps=2, temperature=0.0), Step(TEXT.name, "autoregressive", temperature=0.0)))
    a = generate(model, {}, plan, batch_size=2)
    b = generate(model, {}, plan, batch_size=2)
    assert a[GLOBAL].shape == (2, 4) and all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(a[GLOBAL][0], a[GLOBAL][1])  # nothing tells the samples apart
