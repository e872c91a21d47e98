"""The attention modules' cache arguments and the packing helper: a cached step computes what the uncached module
computes (the oracle is the same module run over the whole prefix), and packing keeps what it should."""

from __future__ import annotations

import pytest
import torch

from polymodal.nn import (
    ContextMask,
    CrossAttention,
    DecoderBlock,
    Segment,
    SelfAttention,
    context_mask,
    key_padding_mask,
    pack_order,
    take,
)
from tests.conftest import single_thread

one_thread = pytest.fixture(autouse=True)(single_thread)
D, H = 32, 4


def _rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("qk_norm", [False, True])
@pytest.mark.parametrize("chunks", [[1] * 7, [3, 1, 2, 1], [7]])
def test_cached_self_attention_equals_a_causal_segment_over_the_prefix(qk_norm, chunks):
    torch.manual_seed(0)
    attn = SelfAttention(D, H, qk_norm=qk_norm).eval()
    x = _rand(2, 7, D)
    with torch.no_grad():
        full = attn(x, segments=[Segment(0, 7, causal=True)])
        cache = attn.new_cache(2, capacity=7, like=x)
        outs, start = [], 0
        for n in chunks:  # several tokens at once attend causally among themselves
            outs.append(attn(x[:, start:start + n], cache=cache))
            start += n
    assert cache.length == 7
    assert torch.allclose(torch.cat(outs, dim=1), full, atol=1e-5)


def test_a_full_cache_refuses_more_tokens():
    attn = SelfAttention(D, H)
    x = _rand(1, 3, D)
    cache = attn.new_cache(1, capacity=2, like=x)
    with pytest.raises(ValueError, match="KV cache holds 2 tokens; 3 were fed"):
        attn(x, cache=cache)


def test_cross_attention_reads_nothing_for_a_sample_without_context():
    """A sample with no valid context key gets proj(0) (attention over an empty set); the others are unchanged by
    the padding they do not read, and projected keys (`project`) give the forward's output."""
    torch.manual_seed(0)
    attn = CrossAttention(D, H, qk_norm=True).eval()
    x, ctx = _rand(3, 5, D), _rand(3, 4, D, seed=1)
    valid = torch.tensor([[True, True, True, False], [False] * 4, [True] * 4])
    mask = context_mask(valid)
    assert mask.empty is not None and mask.empty.flatten().tolist() == [False, True, False]
    with torch.no_grad():
        out = attn(x, ctx, key_mask=mask)
        cached = attn(x, None, cache=attn.project(ctx, valid))
        alone = attn(x[:1], ctx[:1, :3])  # sample 0 with only its valid keys, no mask at all
    assert torch.allclose(out[1], attn.proj(torch.zeros(5, D)), atol=1e-6)
    assert torch.allclose(out[0], alone[0], atol=1e-5)
    assert torch.allclose(cached, out, atol=1e-5)


def test_context_mask_is_none_when_every_key_is_valid():
    assert context_mask(torch.ones(2, 3, dtype=torch.bool)) == ContextMask(None, None)
    some = context_mask(torch.tensor([[True, False], [True, True]]))
    assert some.empty is None and some.mask.shape == (2, 1, 1, 2)
    # the encoder's key mask keeps key 0 for a sample with no key, so that its (ignored) output stays finite
    assert key_padding_mask(torch.tensor([[False, False]])).flatten().tolist() == [True, False]


def test_cached_decoder_block_equals_the_uncached_block():
    torch.manual_seed(0)
    block = DecoderBlock(D, H, 2 * D, gated_mlp=True, qk_norm=True).eval()
    x, ctx = _rand(2, 6, D), _rand(2, 5, D, seed=1)
    valid = torch.tensor([[True] * 5, [True, True, False, False, False]])
    with torch.no_grad():
        full = block(x, ctx, segments=[Segment(0, 6, causal=True)], context_mask=context_mask(valid))
        cache = block.new_cache(ctx, valid, capacity=6)
        steps = torch.cat([block(x[:, i:i + 1], cache=cache) for i in range(6)], dim=1)
    assert torch.allclose(steps, full, atol=1e-5)


def test_pack_order_puts_used_positions_first_in_order():
    used = torch.tensor([[False, True, False, True, True], [True, False, False, False, False],
                         [False, False, False, False, False]])
    order = pack_order(used)
    assert order.shape == (3, 3)  # the largest count
    assert order[0].tolist() == [1, 3, 4] and order[1, 0] == 0
    packed = take(used, order)
    assert packed.tolist() == [[True, True, True], [True, False, False], [False, False, False]]
    values = torch.arange(15).reshape(3, 5, 1)
    assert take(values, order)[0, :, 0].tolist() == [1, 3, 4]
    assert pack_order(torch.zeros(2, 0, dtype=torch.bool)).shape == (2, 0)
