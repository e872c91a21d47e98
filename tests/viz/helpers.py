"""Tiny tokenizers for the viz and retrieval tests (untrained image and vector tokenizers; a text vocabulary
trained on two sentences in about a second)."""

from __future__ import annotations

import tempfile
from functools import cache
from pathlib import Path

import torch

from polymodal.tokenizers import MLPTokenizer, MLPTokenizerConfig, ViTVQVAE, VQVAEConfig
from polymodal.tokenizers.text import TextTokenizer, train_text_tokenizer

CLASSES = ("sphere", "torus", "cube", "person")


@cache
def text_tokenizer() -> TextTokenizer:
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.txt"
        corpus.write_text("a red sphere and a blue cube on the floor\nthe person is waving near a torus\n")
        return train_text_tokenizer([corpus], vocab_size=4500, extra_classes=CLASSES)


def vqvae(values: str, *, channels: int = 0, seed: int = 0) -> ViTVQVAE:
    """An untrained 16 px VQ-VAE (4 x 4 tokens of 32 codes): decodes any ids to values of the right shape."""
    torch.manual_seed(seed)
    cfg = VQVAEConfig(values, name=f"tok_{values}@16", channels=channels, image_size=16, patch_size=4, dim=16,
                      encoder_depth=1, decoder_depth=1, num_heads=2, codebook_size=32, code_dim=8)
    return ViTVQVAE(cfg).eval()


def mlp(in_dim: int = 12, *, seed: int = 0) -> MLPTokenizer:
    torch.manual_seed(seed)
    return MLPTokenizer(MLPTokenizerConfig(in_dim, name="tok_vec_global", num_tokens=4, codebook_size=16,
                                           code_dim=4, hidden=16, depth=1)).eval()
