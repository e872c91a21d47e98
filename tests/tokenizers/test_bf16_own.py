"""polymodal's own tokenizers held in bfloat16 (``tok.to(torch.bfloat16)``, what ``--dtype bfloat16`` loads) encode
and decode without autocast: their float32 inputs (normalized in `prepare`) and FSQ's float32 codes used to meet
bf16 weights ("mat1 and mat2 must have the same dtype"). Ids mostly agree with the float32 tokenizer's."""

from __future__ import annotations

import pytest
import torch

from polymodal.tokenizers.mlp import MLPTokenizer, MLPTokenizerConfig
from polymodal.tokenizers.vqvae import ViTVQVAE, VQVAEConfig

QUANTIZERS = [("vq", {}), ("fsq", {"fsq_levels": (8, 5, 5, 5)}), ("memcodes", {})]


def _pair(cls, cfg):
    torch.manual_seed(0)
    fp32 = cls(cfg).eval()
    bf16 = cls(cfg).eval()
    bf16.load_state_dict(fp32.state_dict())
    return fp32, bf16.to(torch.bfloat16)


@pytest.mark.parametrize("quantizer,kw", QUANTIZERS)
@pytest.mark.parametrize("values", ["rgb", "depth", "semseg"])
def test_vqvae_bf16_round_trip(values, quantizer, kw):
    cfg = VQVAEConfig(values, quantizer=quantizer, channels=5 if values == "semseg" else 0, image_size=32,
                      dim=32, **kw)
    fp32, bf16 = _pair(ViTVQVAE, cfg)
    g = torch.Generator().manual_seed(1)
    x = (torch.randint(0, 5, (2, 32, 32), generator=g) if values == "semseg"
         else torch.rand(2, 3 if values == "rgb" else 1, 32, 32, generator=g))
    ids, ids_bf16 = fp32.encode(x), bf16.encode(x)
    assert ids_bf16.shape == ids.shape and ids_bf16.dtype == torch.int64
    assert float((ids_bf16 == ids).float().mean()) > 0.9
    ref, out = fp32.decode(ids), bf16.decode(ids)
    assert out.shape == ref.shape
    if values == "semseg":
        assert float((out == ref).float().mean()) > 0.9
    else:
        assert out.dtype == torch.float32  # natural units come back in float32
        torch.testing.assert_close(out, ref, rtol=0, atol=0.05 * float(ref.abs().max()))


@pytest.mark.parametrize("quantizer,kw", QUANTIZERS)
def test_mlp_tokenizer_bf16_round_trip(quantizer, kw):
    cfg = MLPTokenizerConfig(in_dim=32, quantizer=quantizer, **kw)
    fp32, bf16 = _pair(MLPTokenizer, cfg)
    x = torch.randn(8, 32, generator=torch.Generator().manual_seed(1))
    ids, ids_bf16 = fp32.encode(x), bf16.encode(x)
    assert ids_bf16.shape == ids.shape
    assert float((ids_bf16 == ids).float().mean()) > 0.8
    ref, out = fp32.decode(ids), bf16.decode(ids)
    torch.testing.assert_close(out, ref, rtol=0, atol=0.05 * float(ref.abs().max()))
