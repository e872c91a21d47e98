"""Quantizers: straight-through gradients, EMA codebook and dead-code restarts, FSQ and Memcodes id round trips."""

from __future__ import annotations

import pytest
import torch

from polymodal.tokenizers.quantizers import (
    FSQ,
    Memcodes,
    VectorQuantizer,
    code_histogram,
    codebook_usage,
    fsq_codes_to_ids,
    fsq_ids_to_codes,
    fsq_quantize,
    l2norm,
    restart_codes,
)


def test_vq_eval_is_deterministic_and_nearest_by_cosine():
    torch.manual_seed(0)
    vq = VectorQuantizer(8, 16).eval()
    z = torch.randn(2, 5, 8)
    out = vq(z)
    assert torch.equal(out.ids, vq.ids(z)) and torch.equal(out.ids, vq(z).ids)
    sims = l2norm(z) @ vq.codebook.t()
    assert torch.equal(out.ids, sims.argmax(-1))
    # The codes are the chosen (unit) codebook rows, and scaling z does not change the choice (cosine).
    assert torch.allclose(out.codes, vq.codebook[out.ids], atol=1e-6)
    assert torch.equal(vq.ids(3.0 * z), out.ids)
    assert torch.equal(vq.ids_to_codes(out.ids), vq.codebook[out.ids])


@pytest.mark.parametrize("q", [VectorQuantizer(8, 16), FSQ((5, 4, 3)), Memcodes(8, 16, heads=2)])
def test_straight_through_gradient_reaches_the_input(q):
    torch.manual_seed(0)
    z = torch.randn(2, 4, q.dim, requires_grad=True)
    out = q.train()(z)
    (out.codes * torch.randn_like(out.codes)).sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0


def test_vq_ema_moves_codes_toward_their_vectors():
    torch.manual_seed(0)
    vq = VectorQuantizer(4, 3, decay=0.5, dead_threshold=0.0)
    target = l2norm(torch.tensor([1.0, 2.0, 0.0, 0.0]))
    z = (target + 0.01 * torch.randn(1, 64, 4))
    k = int(vq.ids(z)[0, 0])
    before = float(vq.codebook[k] @ target)
    for _ in range(6):
        vq.train()(z)
    after = float(vq.codebook[k] @ target)
    assert after > before and after > 0.99
    assert torch.allclose(vq.codebook.norm(dim=-1), torch.ones(3), atol=1e-5)  # stays a cosine codebook
    assert vq.cluster_size[k] > 60  # ~64 vectors per batch went to code k


def test_a_dead_code_gets_restarted_on_batch_vectors():
    torch.manual_seed(0)
    vq = VectorQuantizer(4, 8, decay=0.5, dead_threshold=0.5)
    z = l2norm(torch.tensor([1.0, 0.0, 0.0, 0.0])) + 0.05 * torch.randn(1, 32, 4)
    used = int(vq.ids(z).mode().values)
    old = vq.codebook.clone()
    for _ in range(3):
        vq.train()(z)
    moved = (vq.codebook - old).norm(dim=-1) > 1e-3
    # Codes nobody picked were restarted: they now sit on batch vectors (cosine ~1 to the batch's direction).
    assert moved.sum() >= 7
    restarted = [i for i in range(8) if i != used and moved[i]]
    assert all(float(vq.codebook[i, 0]) > 0.9 for i in restarted)


def test_restart_codes_is_deterministic_with_a_generator():
    book = l2norm(torch.randn(6, 3))
    dead = torch.tensor([True, False, True, False, False, False])
    samples = torch.randn(10, 3)
    a = restart_codes(book, dead, samples, generator=torch.Generator().manual_seed(1))
    b = restart_codes(book, dead, samples, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and torch.equal(a[~dead], book[~dead]) and not torch.equal(a[dead], book[dead])


def test_usage_and_perplexity():
    counts = code_histogram(torch.tensor([0, 1, 2, 3, 0, 1, 2, 3]), 8)
    u = codebook_usage(counts)
    assert u["usage"] == 0.5 and abs(u["perplexity"] - 4.0) < 1e-9
    assert codebook_usage(code_histogram(torch.zeros(5, dtype=torch.long), 8))["perplexity"] == pytest.approx(1.0)
    # 4 heads (codebooks), each always picking one code, a different one per head: pooled, 4 of 8 ids look used;
    # per head, one code of 8 is.
    ids = torch.tensor([[0, 1, 2, 3]]).expand(6, 4)
    per_head = code_histogram(ids, 8, per_head=True)
    assert per_head.shape == (4, 8) and per_head.sum() == 24
    assert codebook_usage(per_head) == {"usage": 1 / 8, "perplexity": pytest.approx(1.0)}
    assert codebook_usage(code_histogram(ids, 8))["usage"] == 0.5


def test_fsq_ids_and_codes_round_trip():
    levels = torch.tensor([8, 5, 5, 5])
    ids = torch.arange(1000)
    codes = fsq_ids_to_codes(ids, levels)
    assert codes.min() >= -1 and codes.max() <= 1
    assert torch.equal(fsq_codes_to_ids(codes, levels), ids)  # a bijection on [0, 1000)
    z = torch.randn(3, 7, 4) * 3
    q = fsq_quantize(z, levels)
    assert torch.equal(fsq_ids_to_codes(fsq_codes_to_ids(q, levels), levels), q)
    # Every level is reachable: an even L=8 channel takes 8 distinct values.
    assert len(torch.unique(fsq_quantize(torch.linspace(-6, 6, 1000)[:, None].repeat(1, 4), levels)[:, 0])) == 8
    fsq = FSQ((8, 5, 5, 5))
    assert fsq.codebook_size == 1000 and torch.equal(fsq.ids_to_codes(fsq.ids(z)), q)


def test_memcodes_ids_and_codes_round_trip():
    torch.manual_seed(0)
    mc = Memcodes(32, 64, heads=4).eval()
    z = torch.randn(3, 2, 32)
    out = mc(z)
    assert out.ids.shape == (3, 2, 4) and out.codes.shape == (3, 2, 32)
    assert torch.equal(out.ids, mc.ids(z))
    assert torch.allclose(mc.ids_to_codes(out.ids), out.codes, atol=1e-5)
    # Train mode samples (Gumbel) but still returns one-hot choices whose values are codebook values.
    torch.manual_seed(1)
    t = mc.train()(z)
    assert torch.allclose(mc.ids_to_codes(t.ids), t.codes, atol=1e-5)


@pytest.mark.parametrize("q", [VectorQuantizer(4, 8), FSQ((3, 3)), Memcodes(4, 8)])
def test_ids_outside_the_codebook_are_refused(q):
    shape = (1, 2, 1) if isinstance(q, Memcodes) else (1, 2)
    with pytest.raises(ValueError, match="outside the codebook"):
        q.ids_to_codes(torch.full(shape, q.codebook_size))
    with pytest.raises(ValueError, match="integer"):
        q.ids_to_codes(torch.zeros(shape))
