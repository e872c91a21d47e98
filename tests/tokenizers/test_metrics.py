"""Reconstruction metrics (edge F1 with its 1-pixel tolerance, vector cosine and MSE, sums that add over batches),
the MLP tokenizer's fitted standardization, and the caption-embedding recipe through the training engine."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from polymodal.cli import main
from polymodal.data.indexed import register_source
from polymodal.tokenizers import MLPTokenizer, load_tokenizer
from polymodal.tokenizers.metrics import metric_sums, num_sums, summarize_metrics
from polymodal.tokenizers.mlp import fit_standardization

ROOT = Path(__file__).resolve().parents[2]


def edges(seed: int) -> torch.Tensor:
    return (torch.rand(3, 24, 24, generator=torch.Generator().manual_seed(seed)) > 0.85).float()


def test_edge_f1_exact_shifted_and_empty():
    t = edges(0)
    assert summarize_metrics("edge", metric_sums("edge", t, t))["edge_f1"] == 1.0
    shifted = torch.roll(t, 1, dims=2)  # one pixel off: still the edge (but for the wrapped column)
    m = summarize_metrics("edge", metric_sums("edge", shifted, t))
    assert m["edge_f1"] > 0.9 and m["psnr"] < 10
    two_off = summarize_metrics("edge", metric_sums("edge", torch.roll(t, 2, dims=2), t))["edge_f1"]
    assert two_off < m["edge_f1"]
    faint = summarize_metrics("edge", metric_sums("edge", 0.4 * t, t))  # under the 0.5 threshold
    assert faint["edge_recall"] == 0.0 and faint["edge_f1"] == 0.0


@pytest.mark.parametrize("values,make", [
    ("edge", lambda g: (torch.rand(4, 8, 8, generator=g) > 0.7).float()),
    ("rgb", lambda g: torch.rand(4, 3, 8, 8, generator=g)),
    ("depth", lambda g: torch.rand(4, 8, 8, generator=g) + 0.1),
    ("normal", lambda g: torch.nn.functional.normalize(torch.randn(4, 3, 8, 8, generator=g), dim=1)),
    ("vector", lambda g: torch.randn(4, 16, generator=g)),
    ("feature", lambda g: torch.randn(4, 5, 8, 8, generator=g)),
])
def test_sums_add_over_batches(values, make):
    g = torch.Generator().manual_seed(1)
    p, t = make(g), make(g)
    whole = metric_sums(values, p, t)
    halves = metric_sums(values, p[:2], t[:2]) + metric_sums(values, p[2:], t[2:])
    assert whole.shape == (num_sums(values),) and torch.allclose(whole, halves)


def test_vector_cosine_and_mse():
    t = torch.nn.functional.normalize(torch.randn(8, 16, generator=torch.Generator().manual_seed(2)), dim=-1)
    m = summarize_metrics("vector", metric_sums("vector", t, t))
    assert m["cosine"] == pytest.approx(1.0) and m["mse"] == 0.0
    m = summarize_metrics("vector", metric_sums("vector", -t, t))
    assert m["cosine"] == pytest.approx(-1.0) and m["mse"] == pytest.approx(4 / 16)  # |2t|^2 / 16 per element


def test_fit_standardization_floors_constant_channels():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(500, 6, generator=g) * torch.tensor([1.0, 2.0, 3.0, 1.0, 1.0, 1.0]) + 5
    x[:, 5] = 0.0  # a dead channel, as two of MiniLM's 384
    mean, std = fit_standardization(x)
    assert len(mean) == len(std) == 6 and abs(mean[0] - 5) < 0.2 and abs(std[2] - 3) < 0.3
    assert std[5] == pytest.approx(0.1 * float(torch.tensor(std).median()), rel=0.2)  # floored, not 0
    unit_mean, _ = fit_standardization(x, l2_normalize=True)
    assert max(abs(v) for v in unit_mean) < 1


def _clustered_vectors(seed: int, index: int) -> dict[str, np.ndarray]:
    """Unit vectors near one direction, as sentence embeddings are (cosine ~0.85 to their mean)."""
    g = np.random.default_rng(index)
    center = np.random.default_rng(seed).standard_normal(48)
    v = center / np.linalg.norm(center) * 2.0 + g.standard_normal(48) * 0.15
    return {"minilm_global": (v / np.linalg.norm(v)).astype(np.float16)}


def test_minilm_recipe_standardizes_and_logs_cosine_and_mse(tmp_path):
    register_source("clustered_vectors_test", _clustered_vectors)
    run = tmp_path / "minilm"
    args = ["tokenizer", "train", str(ROOT / "configs" / "tokenizer_minilm_global_world64.py"),
            f"train.out_dir={run}", "data.path=", "data.source=clustered_vectors_test", "data.num_samples=64",
            "data.val_samples=16", "model.in_dim=48", "model.hidden=32", "model.code_dim=4",
            "model.codebook_size=16", "train.steps=8", "train.batch_size=16", "train.eval_every=8",
            "train.save_every=8", "train.log_every=4", "train.progress=false", "train.tensorboard=false"]
    assert main(args) == 0
    evals = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    last = [r for r in evals if "val/cosine" in r][-1]
    assert -1 <= last["val/cosine"] <= 1 and last["val/mse"] >= 0 and 0 < last["val/usage"] <= 1
    tok = load_tokenizer(run / "release")
    assert isinstance(tok, MLPTokenizer) and len(tok.cfg.mean) == len(tok.cfg.std) == 48
    x = torch.from_numpy(np.stack([_clustered_vectors(0, i)["minilm_global"] for i in range(100, 104)])).float()
    ids = tok.encode(x)
    assert ids.shape == (4, 16) and torch.equal(ids, tok.encode(x))
    assert torch.allclose(tok.decode(ids).norm(dim=-1), torch.ones(4), atol=1e-5)  # unit vectors back
