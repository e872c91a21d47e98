"""The MLP tokenizer of vectors: global embeddings -> 16 Memcodes tokens, poses -> 8 tokens."""

from __future__ import annotations

import pytest
import torch

from polymodal.tokenizers import MLPTokenizer, MLPTokenizerConfig, TokenizerInputError, load_tokenizer

# Documented bound: a 16-token Memcodes tokenizer (64 codes per head) trained 200 steps on unit vectors of a
# 6-dimensional subspace of R^32 decodes held-out vectors at mean cosine similarity >= 0.9 (measured ~0.97).
COSINE_BOUND = 0.9


def vectors(n: int, seed: int) -> torch.Tensor:
    basis = torch.randn(6, 32, generator=torch.Generator().manual_seed(0))
    return torch.nn.functional.normalize(torch.randn(n, 6, generator=torch.Generator().manual_seed(seed)) @ basis,
                                         dim=-1)


def test_global_embedding_tokenizer_learns_within_bound():
    torch.manual_seed(0)
    tok = MLPTokenizer(MLPTokenizerConfig(32, num_tokens=16, codebook_size=64, code_dim=8, hidden=64,
                                          l2_normalize=True))
    opt = torch.optim.AdamW(tok.parameters(), lr=3e-3, weight_decay=0.0)
    for step in range(200):
        out = tok(vectors(64, seed=step + 1))
        opt.zero_grad()
        (out.recon_loss + out.quant_loss).mean().backward()
        opt.step()
    tok.eval()
    held = vectors(256, seed=10_000)
    ids = tok.encode(held)
    assert ids.shape == (256, 16) and torch.equal(ids, tok.encode(held))
    cos = torch.nn.functional.cosine_similarity(tok.decode(ids), held, dim=-1).mean()
    assert cos >= COSINE_BOUND, float(cos)


@pytest.mark.parametrize("quantizer,kw", [("memcodes", {}), ("vq", {}), ("fsq", {"fsq_levels": (5, 5, 4)})])
def test_pose_tokenizer_shapes_gradients_and_folders(quantizer, kw, tmp_path):
    torch.manual_seed(0)
    tok = MLPTokenizer(MLPTokenizerConfig(20, num_tokens=8, quantizer=quantizer, codebook_size=32, code_dim=4,
                                          hidden=32, loss="mse", **kw))
    x = torch.randn(5, 20)
    out = tok.train()(x)
    (out.recon_loss + out.quant_loss).mean().backward()
    assert tok.encoder[0].weight.grad.abs().sum() > 0  # straight-through to the first layer
    tok.eval()
    ids = tok.encode(x)
    assert ids.shape == (5, 8) and int(ids.max()) < tok.vocab_size
    assert tok.decode(ids).shape == (5, 20)
    loaded = load_tokenizer(tok.save_pretrained(tmp_path / "pose"))
    assert isinstance(loaded, MLPTokenizer) and torch.equal(loaded.encode(x), ids)
    assert tok.modality.grid == (1, 8) and tok.modality.pos == "learned"


def test_bad_vectors_and_ids():
    tok = MLPTokenizer(MLPTokenizerConfig(12, num_tokens=4, codebook_size=16, code_dim=4, hidden=16)).eval()
    with pytest.raises(TokenizerInputError, match=r"expected \(B, 12\) vectors, got shape \(2, 13\)"):
        tok.encode(torch.randn(2, 13))
    with pytest.raises(TokenizerInputError, match="NaN"):
        tok.encode(torch.tensor([[float("nan")] * 12]))
    with pytest.raises(TokenizerInputError, match="outside the codebook"):
        tok.decode(torch.tensor([[0, 1, 2, 16]]))
