"""polymodal.tokenizers: every modality <-> token ids, one protocol (`base.Tokenizer`: encode, decode,
vocab_size, num_tokens), each tokenizer a folder loadable alone (`load_tokenizer`)."""

from .base import Tokenizer, TokenizerInputError, TokenizerLoadError, load_tokenizer
from .mlp import MLPTokenizer, MLPTokenizerConfig
from .vqvae import ViTVQVAE, VQVAEConfig

__all__ = ["MLPTokenizer", "MLPTokenizerConfig", "Tokenizer", "TokenizerInputError", "TokenizerLoadError", "ViTVQVAE",
           "VQVAEConfig", "load_tokenizer"]
