"""The ViT VQ-VAE of image-like modalities: an image (B, C, H, W) <-> a grid of (H/p)*(W/p) token ids.

Encoder: patchify (p x p) -> linear -> + sin-cos positions -> ViT blocks -> norm -> linear to the code dim ->
quantizer. Decoder: linear from the code dim -> + positions -> ViT blocks -> norm -> linear to p*p*C_out ->
un-patchify. As 4M's image tokenizers, with `polymodal.nn` blocks.

What the tokenizer reads (``values``), in natural units, and what `decode` gives back:

==========  ==========================================  =======================================  ===========
values      encode input                                decode output                            loss
==========  ==========================================  =======================================  ===========
rgb         (B, 3, H, W) float 0..1 or uint8 0..255     (B, 3, H, W) float 0..1                  mse
depth       (B, H, W) or (B, 1, H, W) metres, 0 = sky   (B, H, W) metres                         smooth_l1
normal      (B, 3, H, W) unit vectors -1..1, 0 = none   (B, 3, H, W) unit vectors (0 where none) mse
semseg      (B, H, W) or (B, 1, H, W) class ids         (B, H, W) int64 class ids                ce
edge        (B, H, W) or (B, 1, H, W) 0..1 or uint8     (B, H, W) float 0..1                     mse
feature     (B, C, H, W) float (a CLIP/DINOv2 map)      (B, C, H, W) float                       cosine
==========  ==========================================  =======================================  ===========

The input normalization (``transform``, then per-channel ``mean``/``std``) is part of the config and applied
by the tokenizer; semseg is one-hot encoded instead and predicted as logits over its classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
from einops import rearrange
from torch import nn
from torch.nn import functional as F

from .. import config as config_lib
from ..modalities import Kind, Modality, register
from ..nn import EncoderBlock, sincos_2d
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

VALUES = ("rgb", "depth", "normal", "semseg", "edge", "feature")
# values -> (channels, loss, transform, mean, std) defaults. Depth: log(1 + metres) is ~1.8 +- 0.7 in the world.
_DEFAULTS = {
    "rgb": (3, "mse", "none", 0.5, 0.25),
    "depth": (1, "smooth_l1", "log1p", 1.8, 0.7),
    "normal": (3, "mse", "none", 0.0, 0.5),
    "semseg": (0, "ce", "none", 0.0, 1.0),
    "edge": (1, "mse", "none", 0.0, 0.5),
    "feature": (0, "cosine", "none", 0.0, 1.0),
}


@dataclass(frozen=True)
class VQVAEConfig:
    """A ViT VQ-VAE. Empty / zero fields take the defaults of ``values`` (resolved at construction).

    ``name`` is the token modality it produces (default ``tok_{values}@{image_size}``); ``channels`` the input
    channels (semseg: the number of classes; feature: C). ``fsq_levels`` sets the code dim and vocabulary of the
    ``"fsq"`` quantizer (prod of levels).
    """

    values: str
    name: str = ""
    channels: int = config_lib.rule(0, ge=0)
    image_size: int = config_lib.rule(64, ge=1)
    patch_size: int = config_lib.rule(8, ge=1)
    dim: int = config_lib.rule(64, ge=1)
    encoder_depth: int = config_lib.rule(2, ge=0)
    decoder_depth: int = config_lib.rule(2, ge=0)
    num_heads: int = config_lib.rule(4, ge=1)
    mlp_ratio: float = config_lib.rule(4.0, gt=0)
    quantizer: str = config_lib.rule("vq", choices=("vq", "fsq", "memcodes"))
    codebook_size: int = config_lib.rule(256, ge=1)  # fsq: resolved from fsq_levels
    code_dim: int = config_lib.rule(32, ge=1)  # fsq: resolved from fsq_levels
    fsq_levels: tuple[int, ...] = config_lib.rule((), ge=2)
    ema_decay: float = config_lib.rule(0.99, ge=0, le=1)
    commitment: float = config_lib.rule(0.25, ge=0)
    dead_threshold: float = config_lib.rule(1.0, ge=0)  # vectors per batch (EMA) below which a VQ code is restarted
    temperature: float = config_lib.rule(1.0, gt=0)  # Memcodes Gumbel temperature
    loss: str = ""
    transform: str = ""  # "none" or "log1p" (applied before mean/std)
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        config_lib.check_fields(self, "model")  # types and ranges first: what follows computes with them
        if self.values not in VALUES:
            raise config_lib.ConfigError(f"values must be one of {', '.join(VALUES)}, got {self.values!r}")
        ch, loss, transform, mean, std = _DEFAULTS[self.values]
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 - frozen dataclass resolution
        set_("channels", int(self.channels or ch))
        if self.channels <= 0:
            raise config_lib.ConfigError(f"{self.values} tokenizer needs channels (semseg: number of classes)")
        set_("name", self.name or f"tok_{self.values}@{self.image_size}")
        set_("loss", self.loss or loss)
        set_("transform", self.transform or transform)
        n_norm = 0 if self.values == "semseg" else self.channels
        set_("mean", tuple(float(m) for m in (self.mean or (mean,) * n_norm)))
        set_("std", tuple(float(s) for s in (self.std or (std,) * n_norm)))
        set_("fsq_levels", tuple(int(v) for v in self.fsq_levels))
        if self.quantizer == "fsq":
            set_("code_dim", len(self.fsq_levels))
            set_("codebook_size", int(torch.tensor(self.fsq_levels).prod()) if self.fsq_levels else 0)
        if self.loss not in LOSSES:
            raise config_lib.ConfigError(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if (self.loss == "ce") != (self.values == "semseg"):
            raise config_lib.ConfigError("the ce loss goes with semseg values, and semseg only with ce")
        if self.transform not in ("none", "log1p"):
            raise config_lib.ConfigError(f"transform must be 'none' or 'log1p', got {self.transform!r}")
        if len(self.mean) != n_norm or len(self.std) != n_norm or any(s <= 0 for s in self.std):
            raise config_lib.ConfigError(f"mean and std need {n_norm} value(s) (one per channel), std > 0")
        if self.image_size % self.patch_size:
            raise config_lib.ConfigError(f"image_size {self.image_size} is not a multiple of patch_size "
                                         f"{self.patch_size}")
        if self.dim % self.num_heads or self.dim % 4:
            raise config_lib.ConfigError(f"dim {self.dim} must divide by num_heads {self.num_heads} and by 4")

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @property
    def out_channels(self) -> int:
        return self.channels


class VQVAEOutput(NamedTuple):
    """pred (B, C_out, H, W) in normalized units (semseg: logits); ids (B, N); losses per item (B,)."""

    pred: torch.Tensor
    ids: torch.Tensor
    recon_loss: torch.Tensor
    quant_loss: torch.Tensor


def _blocks(cfg: VQVAEConfig, depth: int) -> nn.ModuleList:
    hidden = int(cfg.mlp_ratio * cfg.dim)
    return nn.ModuleList(EncoderBlock(cfg.dim, cfg.num_heads, hidden) for _ in range(depth))


class ViTVQVAE(nn.Module):
    """Image-like values <-> (B, N) ids with N = (image_size / patch_size)^2, row-major over the token grid."""

    def __init__(self, cfg: VQVAEConfig):
        super().__init__()
        self.cfg = cfg
        p, c = cfg.patch_size, cfg.channels
        self.patch_embed = Linear(p * p * c, cfg.dim)
        self.encoder = _blocks(cfg, cfg.encoder_depth)
        self.encoder_norm = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.to_code = Linear(cfg.dim, cfg.code_dim)
        self.quantizer = quantizer_from_config(cfg, dim=cfg.code_dim)
        self.from_code = Linear(cfg.code_dim, cfg.dim)
        self.decoder = _blocks(cfg, cfg.decoder_depth)
        self.decoder_norm = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.to_patch = Linear(cfg.dim, p * p * cfg.out_channels)
        self.register_buffer("pos", sincos_2d(cfg.grid, cfg.grid, cfg.dim), persistent=False)
        self.register_buffer("mean", torch.tensor(cfg.mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg.std).view(1, -1, 1, 1), persistent=False)

    # ------------------------------------------------------------------------------------ the protocol

    @property
    def vocab_size(self) -> int:
        return self.cfg.codebook_size

    @property
    def num_tokens(self) -> int:
        return self.cfg.grid ** 2

    @property
    def modality(self) -> Modality:
        """The token modality this tokenizer produces (not registered; see `register_modality`)."""
        g = self.cfg.grid
        return Modality(self.cfg.name, Kind.IMAGE_TOKENS, vocab_size=self.vocab_size, grid=(g, g),
                        description=f"{self.cfg.values} VQ-VAE tokens ({self.cfg.quantizer}, {self.cfg.image_size} px)")

    def register_modality(self, *, overwrite: bool = False) -> Modality:
        return register(self.modality, overwrite=overwrite)

    @torch.no_grad()
    def encode(self, values: torch.Tensor) -> torch.Tensor:
        """Natural-unit values (see the module table) -> (B, N) int64 ids. Deterministic in eval mode."""
        x, _ = self.prepare(values)
        return self.quantizer.ids(self.latents(x)).reshape(x.shape[0], -1)

    @torch.no_grad()
    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, N) or (B, grid, grid) ids -> natural-unit values (see the module table)."""
        if isinstance(ids, torch.Tensor) and ids.ndim == 3:
            ids = ids.reshape(ids.shape[0], -1)
        ids = check_token_ids(ids, self.vocab_size, self.num_tokens, f"{self.cfg.name} decode")
        ids = ids.to(self.pos.device)
        codes = self.quantizer.ids_to_codes(ids[..., None] if self.cfg.quantizer == "memcodes" else ids)
        return self.to_values(self.reconstruct(codes))

    def forward(self, values: torch.Tensor) -> VQVAEOutput:
        """Training pass: reconstruction (normalized units), ids, and per-item losses."""
        x, target = self.prepare(values)
        q = self.quantizer(self.latents(x))
        pred = self.reconstruct(q.codes)
        ids = q.ids.reshape(x.shape[0], -1)
        return VQVAEOutput(pred, ids, reconstruction_loss(pred, target, self.cfg.loss), q.loss)

    # --------------------------------------------------------------------------------------- the parts

    def prepare(self, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Natural units -> (model input (B, C, H, W) normalized, reconstruction target).

        The target is the normalized input, or (B, H, W) class ids for semseg. Raises TokenizerInputError for a
        wrong shape, channel count, size or dtype, for NaN, and for class ids out of range.
        """
        cfg = self.cfg
        if not isinstance(values, torch.Tensor):
            values = torch.as_tensor(values)
        values = values.to(self.pos.device)
        what = f"{cfg.name} ({cfg.values}) tokenizer"
        single = cfg.values in ("depth", "edge", "semseg")
        if single and values.ndim == 3:
            values = values[:, None]
        s = cfg.image_size
        expected = f"(B, {cfg.channels}, {s}, {s})" + (f" or (B, {s}, {s})" if single else "")
        if values.ndim != 4:
            raise TokenizerInputError(f"{what}: expected {expected}, got shape {tuple(values.shape)}")
        want_c = 1 if cfg.values == "semseg" else cfg.channels
        if values.shape[1] != want_c:
            layout = " (channel-first: world arrays are (H, W, C), permute them)" if values.shape[-1] == want_c else ""
            raise TokenizerInputError(f"{what}: expected {want_c} channel(s) on axis 1, got {values.shape[1]} in "
                                      f"shape {tuple(values.shape)}{layout}")
        if tuple(values.shape[-2:]) != (s, s):
            raise TokenizerInputError(f"{what}: expected {s} x {s} pixels, got {values.shape[-2]} x "
                                      f"{values.shape[-1]} (resize or crop to {s})")
        if cfg.values == "semseg":
            if values.dtype.is_floating_point:
                raise TokenizerInputError(f"{what}: expected integer class ids, got {values.dtype}")
            ids = values[:, 0].long()
            if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= cfg.channels):
                raise TokenizerInputError(f"{what}: class ids from {int(ids.min())} to {int(ids.max())}, expected "
                                          f"0 to {cfg.channels - 1}")
            x = rearrange(F.one_hot(ids, cfg.channels).float(), "b h w c -> b c h w")
            return x, ids
        if values.dtype == torch.uint8:
            if cfg.values not in ("rgb", "edge"):
                raise TokenizerInputError(f"{what}: expected float values, got uint8")
            x = values.float() / 255.0
        elif values.dtype == torch.bool:
            x = values.float()
        else:
            x = values.float()
            check_finite(x, what)
        if cfg.transform == "log1p":
            x = torch.log1p(x.clamp(min=0))
        x = (x - self.mean) / self.std
        return x, x

    def latents(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) normalized -> (B, N, code_dim) pre-quantization latents."""
        p = self.cfg.patch_size
        x = x.to(self.patch_embed.weight.dtype)  # prepare() works in float32; a bf16 tokenizer computes in bf16
        h = self.patch_embed(rearrange(x, "b c (gh p1) (gw p2) -> b (gh gw) (p1 p2 c)", p1=p, p2=p)) + self.pos
        for block in self.encoder:
            h = block(h)
        return self.to_code(self.encoder_norm(h))

    def reconstruct(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, N, code_dim) codes -> (B, C_out, H, W) in normalized units (semseg: class logits)."""
        h = self.from_code(codes.to(self.from_code.weight.dtype)) + self.pos  # FSQ's codes are float32
        for block in self.decoder:
            h = block(h)
        g, p = self.cfg.grid, self.cfg.patch_size
        return rearrange(self.to_patch(self.decoder_norm(h)), "b (gh gw) (p1 p2 c) -> b c (gh p1) (gw p2)",
                         gh=g, gw=g, p1=p, p2=p)

    def to_values(self, pred: torch.Tensor) -> torch.Tensor:
        """(B, C_out, H, W) model output -> natural units (see the module table)."""
        v = self.cfg.values
        if v == "semseg":
            return pred.argmax(dim=1)
        x = pred.float() * self.std + self.mean
        if self.cfg.transform == "log1p":
            x = torch.expm1(x).clamp(min=0)
        if v == "rgb":
            return x.clamp(0, 1)
        if v == "normal":
            # Pixels without a surface (sky) have a zero normal; a predicted length under 0.5 means "none".
            return torch.where(x.norm(dim=1, keepdim=True) > 0.5, F.normalize(x, dim=1), torch.zeros_like(x))
        if v in ("depth", "edge"):
            return x[:, 0].clamp(0, 1) if v == "edge" else x[:, 0]
        return x

    # ------------------------------------------------------------------------------------------ folders

    def save_pretrained(self, path: str | Path) -> Path:
        c = self.cfg
        readme = (f"# {c.name}\n\npolymodal ViT VQ-VAE tokenizer for `{c.values}` values: {c.image_size} px, "
                  f"{c.patch_size} px patches ({c.grid}x{c.grid} tokens), {c.quantizer} with {self.vocab_size} "
                  "codes.\n\n```python\nfrom polymodal.tokenizers import load_tokenizer\n"
                  "tok = load_tokenizer(path)\nids = tok.encode(values)\nvalues = tok.decode(ids)\n```\n")
        return save_folder(self, c, path, readme=readme)

    @classmethod
    def from_pretrained(cls, path: str | Path, *, map_location: str = "cpu",
                        dtype: torch.dtype | None = None) -> ViTVQVAE:
        return load_folder(cls, VQVAEConfig, path, map_location=map_location, dtype=dtype)
