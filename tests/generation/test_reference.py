"""Generation on the official-format tiny checkpoint, checked against ml-4m's semantics without re-implementing its
sampler: the oracle is `FourM.forward`, whose logits match the reference's own (tests/test_interop.py).

- greedy MaskGIT, one step: the ids are the argmax of the forward pass with RGB as input and every token a target;
- greedy MaskGIT, several steps: before each step, the forward pass of the state (conditions and committed tokens
  as inputs, the rest as targets) gives the argmax; the committed positions are those `torch.topk` picks from
  confidences that are all 1 (ml-4m's greedy confidence), and the number per step is the cosine schedule;
- classifier-free guidance: the committed ids are the argmax of ``u + s (c - u)``, u from the state without RGB;
  at the first step u has no encoder token: ml-4m's cross-attention then reads an empty context (output 0
  before the projection), reproduced here by patching the blocks' cross-attention;
- greedy captions: teacher-forcing the decoded tokens (``[S_1]`` the only caption input, targets ``[S_1] ...``)
  gives back each next token as the argmax; decoding stops at ``[S_2]`` or after max_length - 1 tokens.
"""

from __future__ import annotations

import pytest
import torch

from polymodal.data.batch import ModalityTokens
from polymodal.generation import Plan, Step, generate, generate_iter, initial_state
from polymodal.interop.ml4m import load_checkpoint
from polymodal.model.fourm import EncoderState

from ..conftest import fixtures_dir

DEPTH, S1, S2 = "tok_depth@224", 5, 6


@pytest.fixture(scope="module")
def model():
    return load_checkpoint(fixtures_dir("ml4m-4m21-tiny")).eval()


@pytest.fixture(scope="module")
def rgb():
    return torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))


def dense_logits(model, batch, name=DEPTH):
    with torch.no_grad():
        out = model(batch)[name]
    return out.dense(), out.positions, out.valid


def without_rgb(state):
    t = state["rgb@224"]
    return state.replace(**{"rgb@224": t.with_masks(is_input=torch.zeros_like(t.is_input))})


def empty_context_logits(model, state):
    """ml-4m's pass with no encoder token: attention over an empty context is 0, so each cross-attention block
    returns proj(0)."""
    saved = [b.cross_attn.forward for b in model.decoder]
    try:
        for b in model.decoder:
            b.cross_attn.forward = lambda x, c, key_mask=None, p=b.cross_attn.proj: p(torch.zeros_like(x))
        d = model.config.dim
        enc = EncoderState(torch.zeros(state.batch_size, 1, d), torch.ones(state.batch_size, 1, dtype=torch.bool))
        with torch.no_grad():
            out = model.decode(state, enc, [DEPTH])[DEPTH]
    finally:
        for b, f in zip(model.decoder, saved):
            b.cross_attn.forward = f
    return out.dense()


def test_greedy_one_step_is_the_forward_argmax(model, rgb):
    ids = generate(model, {"rgb@224": rgb}, Plan((Step(DEPTH, num_steps=1, temperature=0.0),)))[DEPTH]
    state = initial_state(model, {"rgb@224": rgb}, Plan((Step(DEPTH, num_steps=1),)))
    logits, positions, _ = dense_logits(model, state)
    assert torch.equal(positions, torch.arange(196).expand(2, 196))
    assert torch.equal(ids, logits.argmax(-1))


@pytest.mark.parametrize("scale", [1.0, 2.5])
def test_greedy_multi_step_follows_the_reference_semantics(model, rgb, scale):
    plan = Plan((Step(DEPTH, num_steps=4, temperature=0.0, guidance_scale=scale),))
    state = initial_state(model, {"rgb@224": rgb}, plan)
    expected_counts = [29, 69, 69, 29]  # cosine schedule of 196 tokens in 4 steps
    for i, result in enumerate(generate_iter(model, {"rgb@224": rgb}, plan)):
        todo = state[DEPTH].is_target
        c, positions, _ = dense_logits(model, state)
        if scale != 1.0:
            u_state = without_rgb(state)
            u = empty_context_logits(model, u_state) if i == 0 else dense_logits(model, u_state)[0]
            c = u + (c - u) * scale
        k = expected_counts[i]
        picked = torch.topk(torch.ones(positions.shape), k, dim=-1).indices  # greedy confidences are all 1
        new = result.state[DEPTH].is_input & ~state[DEPTH].is_input
        for b in range(2):
            pos = positions[b, picked[b]]
            assert sorted(pos.tolist()) == new[b].nonzero()[:, 0].tolist()
            assert torch.equal(result.state[DEPTH].values[b, pos], c[b, picked[b]].argmax(-1))
        assert int(todo.sum()) - int(result.state[DEPTH].is_target.sum()) == 2 * k
        state = result.state
    assert not state[DEPTH].is_target.any()


def test_greedy_caption_is_the_teacher_forced_argmax(model, rgb):
    plan = Plan((Step("caption", "autoregressive", temperature=0.0),))
    result = list(generate_iter(model, {"rgb@224": rgb}, plan))[-1]
    decoded = result.tokens
    assert (decoded[:, 0] == S1).all()
    for b in range(2):
        row = decoded[b].tolist()
        n = row.index(S2) + 1 if S2 in row else len(row)
        assert n == len(row) or not any(row[n:])  # PAD after the stop
        assert S2 in row[:n] or n == 256  # stopped at the closing sentinel or after max_length - 1 tokens
        ids = torch.tensor([S1] + row[:n])  # the prompt, then the decoded target
        is_in = torch.zeros(len(ids), dtype=torch.bool)
        is_in[0] = True
        batch = initial_state(model, {"rgb@224": rgb[b:b + 1]}, Plan((Step(DEPTH, num_steps=1),))).select(["rgb@224"])
        batch = batch.replace(caption=ModalityTokens(ids[None], is_in[None], ~is_in[None]))
        logits, _, valid = dense_logits(model, batch, "caption")
        assert torch.equal(logits[0][valid[0]].argmax(-1), ids[2:])
        # merged (ml-4m's merge_span_masking): the prompt's [S_1] becomes what follows [S_1] up to any sentinel
        span = next((j for j, t in enumerate(row[1:n], 1) if 4 <= t < 204), n)
        m = int(result.state["caption"].is_input[b].sum())
        assert result.state["caption"].values[b, :m].tolist() == row[1:span]


def test_cached_equals_uncached_and_greedy_is_deterministic(model, rgb):
    plan = Plan((Step(DEPTH, num_steps=2, temperature=0.0),
                 Step("caption", "autoregressive", temperature=0.0, guidance_scale=2.0, max_tokens=40)))
    a = generate(model, {"rgb@224": rgb}, plan)
    b = generate(model, {"rgb@224": rgb}, plan, cache=False)
    c = generate(model, {"rgb@224": rgb}, plan)
    assert all(torch.equal(a[k], b[k]) and torch.equal(a[k], c[k]) for k in a)
