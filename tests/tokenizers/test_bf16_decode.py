"""Released ViT tokenizers held in bfloat16 (``tok.to(torch.bfloat16)``) decode, close to their float32 decode.
Their float32 post-MLP used to meet the bf16 norm weights: "mixed dtype (CPU)" (benchmarks/memory_inference.py)."""

from __future__ import annotations

import pytest
import torch

from polymodal.tokenizers.ml4m.folder import load_official_tokenizer

from ..conftest import fixtures_dir


@pytest.mark.parametrize("name", ["clip", "dinov2-global", "semseg"])
def test_bf16_weights_decode_like_float32(name):
    tok = load_official_tokenizer(fixtures_dir("ml4m-tokenizers", name))
    grid = tok.cfg.image_size // tok.cfg.patch_size
    n = 4 if name == "dinov2-global" else grid * grid  # the global vector: 4 codes
    ids = torch.randint(0, 8, (2, n), generator=torch.Generator().manual_seed(0))
    ref = tok.decode(ids)
    out = tok.to(torch.bfloat16).decode(ids)
    assert out.shape == ref.shape
    if ref.is_floating_point():
        torch.testing.assert_close(out.float(), ref, rtol=0, atol=0.02 * float(ref.abs().max()))
    else:  # semseg: class labels, argmax of logits that bf16 moves a little
        assert float((out == ref).float().mean()) > 0.95
