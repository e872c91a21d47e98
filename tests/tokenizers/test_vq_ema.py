"""The VQ codebook's moving averages against numbers worked out by hand. The decay is 0.9, not 0.5: at 0.5 the
new value and the old one get the same weight, so ``decay`` and ``1 - decay`` cannot be told apart."""

from __future__ import annotations

import pytest
import torch

from polymodal.tokenizers.quantizers import VectorQuantizer, ema_


def test_ema_keeps_decay_of_the_old_value():
    avg = torch.tensor([10.0, 0.0])
    ema_(avg, torch.tensor([0.0, 10.0]), 0.9)
    assert torch.allclose(avg, torch.tensor([9.0, 1.0]))  # 0.9 * old + 0.1 * new


def known_state(vq: VectorQuantizer, codebook, cluster_size, embed_sum, updates: int) -> None:
    vq.codebook.copy_(torch.tensor(codebook))
    vq.cluster_size.copy_(torch.tensor(cluster_size))
    vq.embed_sum.copy_(torch.tensor(embed_sum))
    vq.updates.fill_(updates)


def test_one_update_at_decay_0_9():
    vq = VectorQuantizer(2, 2, decay=0.9, dead_threshold=0.0).train()
    known_state(vq, [[1.0, 0.0], [0.0, 1.0]], [4.0, 0.5], [[4.0, 0.0], [0.0, 0.5]], updates=10)
    # unit vectors; by cosine, (0.8, 0.6) and (1, 0) go to code 0, (0.6, 0.8) to code 1
    z = torch.tensor([[[0.8, 0.6], [1.0, 0.0], [0.6, 0.8]]])
    assert vq(z).ids.tolist() == [[0, 0, 1]]
    # counts (2, 1): cluster_size = 0.9 * (4, 0.5) + 0.1 * (2, 1) = (3.8, 0.55)
    assert torch.allclose(vq.cluster_size, torch.tensor([3.8, 0.55]))
    # sums: code 0 (1.8, 0.6), code 1 (0.6, 0.8)
    # embed_sum: 0.9 * (4, 0) + 0.1 * (1.8, 0.6) = (3.78, 0.06); 0.9 * (0, 0.5) + 0.1 * (0.6, 0.8) = (0.06, 0.53)
    assert torch.allclose(vq.embed_sum, torch.tensor([[3.78, 0.06], [0.06, 0.53]]))
    # codebook: their directions; |(3.78, 0.06)| = sqrt(14.2920) = 3.780476, |(0.06, 0.53)| = sqrt(0.2845) = 0.533385
    expected = torch.tensor([[3.78 / 3.780476, 0.06 / 3.780476], [0.06 / 0.533385, 0.53 / 0.533385]])
    assert torch.allclose(vq.codebook, expected, atol=1e-5)
    assert int(vq.updates) == 11


def test_eval_leaves_the_averages_alone():
    vq = VectorQuantizer(2, 2, decay=0.9, dead_threshold=0.0).eval()
    known_state(vq, [[1.0, 0.0], [0.0, 1.0]], [4.0, 0.5], [[4.0, 0.0], [0.0, 0.5]], updates=10)
    vq(torch.tensor([[[0.8, 0.6], [0.6, 0.8]]]))
    assert vq.cluster_size.tolist() == [4.0, 0.5] and int(vq.updates) == 10


def test_dead_codes_are_judged_on_bias_corrected_counts():
    """First update of a fresh quantizer: raw EMA counts are 0.1 x the batch's (they start at 0); corrected by
    1 / (1 - 0.9^1) they are the batch's counts (2, 1, 0). With a threshold of 1 vector per batch only code 2 is
    dead; code 0 keeps its averaged direction and code 1 its own."""
    vq = VectorQuantizer(2, 3, decay=0.9, dead_threshold=1.0, eps=1e-5).train()
    book = [[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]
    known_state(vq, book, [0.0, 0.0, 0.0], (torch.tensor(book) * 1e-5).tolist(), updates=0)
    z = torch.tensor([[[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]]])
    assert vq.ids(z).tolist() == [[0, 0, 1]]
    vq.generator = torch.Generator().manual_seed(0)
    vq(z)
    assert torch.allclose(vq.corrected_cluster_size()[:2], torch.tensor([2.0, 1.0]))
    # code 0: direction of 0.9 * 1e-5 * (1, 0) + 0.1 * (1.8, 0.6) = (0.180009, 0.06)
    assert torch.allclose(vq.codebook[0], torch.tensor([0.180009, 0.06]) / 0.189745, atol=1e-5)
    assert torch.allclose(vq.codebook[1], torch.tensor([0.0, 1.0]))
    # code 2 restarts on one of the batch's vectors, with a grace count of twice the threshold (corrected)
    assert any(torch.allclose(vq.codebook[2], v) for v in z[0])
    assert float(vq.corrected_cluster_size()[2]) == pytest.approx(2.0)
