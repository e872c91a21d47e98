"""The MLP tokenizer of vectors: one (D,) vector <-> ``num_tokens`` ids.

As 4M's global-embedding tokenizers (a DINOv2 or ImageBind global embedding -> 16 tokens with 16 Memcodes
heads) and pose tokenizers (pose parameters -> 8 tokens). Encoder: normalize -> linear -> residual pre-norm MLP
blocks -> norm -> linear to ``num_tokens * code_dim``; the quantizer sees it as one position with ``num_tokens``
Memcodes heads (or as ``num_tokens`` positions for VQ and FSQ). Decoder: the mirror image, back to (D,).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
from einops import rearrange
from torch import nn

from .. import config as config_lib
from ..modalities import Kind, Modality, register
from ..nn import Mlp
from ..nn.linear import Linear
from .base import (
    TokenizerInputError,
    check_finite,
    check_token_ids,
    load_folder,
    save_folder,
)
from .losses import LOSSES, reconstruction_loss
from .quantizers import quantizer_from_config


@dataclass(frozen=True)
class MLPTokenizerConfig:
    """A vector tokenizer. ``mean``/``std`` (one value per input channel, or one for all) normalize the input;
    ``l2_normalize`` makes it a unit vector first (global embeddings are compared by cosine).

    ``standardize``: the training objective fits per-channel ``mean``/``std`` on the training vectors
    (`fit_standardization`) before training, where they are not given, and the release folder keeps them.
    Sentence and image embeddings need it: they crowd around one direction (the world's MiniLM caption vectors
    have cosine 0.85 to their mean), and unstandardized, every Memcodes head collapses onto one code.
    """

    in_dim: int = config_lib.rule(ge=1)
    name: str = ""
    num_tokens: int = config_lib.rule(16, ge=1)
    # "memcodes" (one head per token), "vq" or "fsq"
    quantizer: str = config_lib.rule("memcodes", choices=("memcodes", "vq", "fsq"))
    codebook_size: int = config_lib.rule(256, ge=1)
    code_dim: int = config_lib.rule(32, ge=1)  # per token
    fsq_levels: tuple[int, ...] = config_lib.rule((), ge=2)
    hidden: int = config_lib.rule(256, ge=1)
    depth: int = config_lib.rule(2, ge=0)
    ema_decay: float = config_lib.rule(0.99, ge=0, le=1)
    commitment: float = config_lib.rule(0.25, ge=0)
    dead_threshold: float = config_lib.rule(1.0, ge=0)
    temperature: float = config_lib.rule(1.0, gt=0)
    loss: str = "cosine"
    l2_normalize: bool = False
    standardize: bool = False
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)

    def __post_init__(self) -> None:
        config_lib.check_fields(self, "model")  # types and ranges first: what follows computes with them
        object.__setattr__(self, "name", self.name or f"tok_vector{self.in_dim}_{self.num_tokens}")
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))
        object.__setattr__(self, "fsq_levels", tuple(int(v) for v in self.fsq_levels))
        if self.quantizer == "fsq":
            object.__setattr__(self, "code_dim", len(self.fsq_levels))
            object.__setattr__(self, "codebook_size", int(torch.tensor(self.fsq_levels).prod()))
        if self.loss not in LOSSES or self.loss == "ce":
            raise config_lib.ConfigError(f"loss must be mse, l1, smooth_l1 or cosine, got {self.loss!r}")
        for field_ in (self.mean, self.std):
            if len(field_) not in (1, self.in_dim):
                raise config_lib.ConfigError(f"mean and std need 1 or in_dim={self.in_dim} values")
        if min(self.std) <= 0:
            raise config_lib.ConfigError("std must be > 0")


def fit_standardization(vectors: torch.Tensor, *, l2_normalize: bool = False) -> tuple[tuple[float, ...],
                                                                                        tuple[float, ...]]:
    """(N, D) training vectors -> per-channel (mean, std), of unit vectors if ``l2_normalize``.

    A channel's std is floored at a tenth of the median channel's: some embeddings have channels that are
    (nearly) constant, and dividing by their ~0 std would blow up the smallest difference on held-out vectors.
    """
    x = vectors.double()
    if l2_normalize:
        x = nn.functional.normalize(x, dim=-1)
    std = x.std(0) if x.shape[0] > 1 else torch.ones(x.shape[1], dtype=x.dtype)
    std = std.clamp(min=max(0.1 * float(std.median()), 1e-8))
    return tuple(x.mean(0).tolist()), tuple(std.tolist())


class MLPTokenizerOutput(NamedTuple):
    """pred (B, D) normalized units; ids (B, num_tokens); per-item losses (B,)."""

    pred: torch.Tensor
    ids: torch.Tensor
    recon_loss: torch.Tensor
    quant_loss: torch.Tensor


class ResidualMlp(nn.Module):
    """x + mlp(norm x), (B, ..., dim) -> same."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, 4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mlp(self.norm(x))


def _stack(dim_in: int, hidden: int, dim_out: int, depth: int) -> nn.Sequential:
    return nn.Sequential(Linear(dim_in, hidden), *(ResidualMlp(hidden) for _ in range(depth)),
                         nn.LayerNorm(hidden, eps=1e-6), Linear(hidden, dim_out))


class MLPTokenizer(nn.Module):
    """(B, in_dim) float vectors <-> (B, num_tokens) ids."""

    def __init__(self, cfg: MLPTokenizerConfig):
        super().__init__()
        self.cfg = cfg
        t, d = cfg.num_tokens, cfg.code_dim
        self.encoder = _stack(cfg.in_dim, cfg.hidden, t * d, cfg.depth)
        # Memcodes sees the vector as one position with a head per token; VQ and FSQ as num_tokens positions.
        self.quantizer = quantizer_from_config(cfg, dim=t * d if cfg.quantizer == "memcodes" else d, heads=t)
        self.decoder = _stack(t * d, cfg.hidden, cfg.in_dim, cfg.depth)
        self.register_buffer("mean", torch.tensor(cfg.mean)[None], persistent=False)
        self.register_buffer("std", torch.tensor(cfg.std)[None], persistent=False)

    @property
    def vocab_size(self) -> int:
        return self.cfg.codebook_size

    @property
    def num_tokens(self) -> int:
        return self.cfg.num_tokens

    @property
    def modality(self) -> Modality:
        """Global tokens as 4M lays them out: a (1, num_tokens) grid with learned positions (4x4 for 16)."""
        t = self.cfg.num_tokens
        side = int(t ** 0.5)
        grid = (side, side) if side * side == t else (1, t)
        return Modality(self.cfg.name, Kind.IMAGE_TOKENS, vocab_size=self.vocab_size, grid=grid, pos="learned",
                        description=f"vector of {self.cfg.in_dim} -> {t} tokens ({self.cfg.quantizer})")

    def register_modality(self, *, overwrite: bool = False) -> Modality:
        return register(self.modality, overwrite=overwrite)

    # ------------------------------------------------------------------------------------------------

    def prepare(self, values: torch.Tensor) -> torch.Tensor:
        """(B, in_dim) natural units -> normalized; TokenizerInputError on a wrong shape or NaN."""
        if not isinstance(values, torch.Tensor):
            values = torch.as_tensor(values)
        what = f"{self.cfg.name} (vector) tokenizer"
        if values.ndim != 2 or values.shape[1] != self.cfg.in_dim:
            raise TokenizerInputError(f"{what}: expected (B, {self.cfg.in_dim}) vectors, got shape "
                                      f"{tuple(values.shape)}")
        if not values.dtype.is_floating_point:
            raise TokenizerInputError(f"{what}: expected float vectors, got {values.dtype}")
        x = values.to(self.mean.device).float()
        check_finite(x, what)
        if self.cfg.l2_normalize:
            x = nn.functional.normalize(x, dim=-1)
        return (x - self.mean) / self.std

    def _latents(self, x: torch.Tensor) -> torch.Tensor:
        z = self.encoder(x.to(self.decoder[0].weight.dtype))  # prepare() works in float32; bf16 weights in bf16
        if self.cfg.quantizer == "memcodes":
            return z[:, None]  # one position, num_tokens heads
        return rearrange(z, "b (t d) -> b t d", t=self.cfg.num_tokens)

    def _decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        return self.decoder(codes.reshape(codes.shape[0], -1).to(self.decoder[0].weight.dtype))  # FSQ: float32

    def forward(self, values: torch.Tensor) -> MLPTokenizerOutput:
        x = self.prepare(values)
        q = self.quantizer(self._latents(x))
        pred = self._decode_codes(q.codes)
        ids = q.ids.reshape(x.shape[0], -1)
        return MLPTokenizerOutput(pred, ids, reconstruction_loss(pred, x, self.cfg.loss), q.loss)

    @torch.no_grad()
    def encode(self, values: torch.Tensor) -> torch.Tensor:
        """(B, in_dim) -> (B, num_tokens) int64 ids. Deterministic in eval mode."""
        x = self.prepare(values)
        return self.quantizer.ids(self._latents(x)).reshape(x.shape[0], -1)

    @torch.no_grad()
    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, num_tokens) ids -> (B, in_dim) vectors in natural units."""
        ids = check_token_ids(ids, self.vocab_size, self.num_tokens, f"{self.cfg.name} decode").to(self.mean.device)
        ids = ids[:, None] if self.cfg.quantizer == "memcodes" else ids
        return self.to_values(self._decode_codes(self.quantizer.ids_to_codes(ids)))

    def to_values(self, pred: torch.Tensor) -> torch.Tensor:
        """(B, in_dim) model output -> natural units; unit vectors when the tokenizer l2-normalizes its input
        (it only learns directions then: a cosine loss leaves the output's length free)."""
        x = pred.float() * self.std + self.mean
        return nn.functional.normalize(x, dim=-1) if self.cfg.l2_normalize else x

    def save_pretrained(self, path: str | Path) -> Path:
        c = self.cfg
        readme = (f"# {c.name}\n\npolymodal MLP tokenizer: a vector of {c.in_dim} -> {c.num_tokens} tokens "
                  f"({c.quantizer}, {self.vocab_size} codes).\n")
        return save_folder(self, c, path, readme=readme)

    @classmethod
    def from_pretrained(cls, path: str | Path, *, map_location: str = "cpu",
                        dtype: torch.dtype | None = None) -> MLPTokenizer:
        return load_folder(cls, MLPTokenizerConfig, path, map_location=map_location, dtype=dtype)
