"""The released 4M VQ-VAE tokenizers: segmentation, feature maps, global vectors, poses, SAM instance masks.

One class, as the reference's ``VQVAE``: an encoder (a ViT, or a Bottleneck MLP for vectors) -> ``quant_proj``
(1x1 conv to the latent dim) -> a quantizer (lucid VQ or Memcodes) -> ``post_quant_proj`` -> a decoder of the same
family. Semantic segmentation embeds its class ids with ``cls_emb`` first. What it reads and gives back:

=======  ==========================================  ========================  =================================
values   `encode` input (natural units)              ids                       `decode` output
=======  ==========================================  ========================  =================================
semseg   (B, S, S) or (B, 1, S, S) class ids         (B, (S/p)^2)              (B, S, S) int64 class ids
feature  (B, C, g, g) float (a CLIP/DINOv2 map)      (B, g^2)                  (B, C, g, g) float
vector   (B, C) float (a global embedding, a pose)   (B, NC), one per codebook (B, C) float
mask     (B, S, S) or (B, 1, S, S) in [0, 1]         (B, (S/p)^2)              (B, S, S) probabilities
=======  ==========================================  ========================  =================================

(S = ``image_size``, p = ``patch_size``, g = S/p, NC = ``num_codebooks``.) The features and vectors are the raw
outputs of the networks the tokenizers were trained on (no normalization); masks are probabilities.

The reference's own tensors (`tokenize`, `decode_tokens`, as ``polymodal.interop.ml4m`` exposes them) keep its
layouts: ids (B, h, w) or (B, NC, h, w); decoder outputs (B, C, H, W) with segmentation and mask *logits*.
Inference only; `polymodal.tokenizers.vqvae` trains polymodal's own VQ-VAEs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange
from torch import nn

from ..base import TokenizerInputError, check_finite, check_token_ids
from .mlp import BottleneckMLP, MLPShape
from .quantizers import LucidVQ, Memcodes
from .vit import ViTDecoder, ViTEncoder

VALUES = ("semseg", "feature", "vector", "mask")


@dataclass(frozen=True)
class OfficialVQVAEConfig:
    """A released VQ-VAE: what its ``config.json`` says, and the sizes its tensors say (`folder` reads both).

    ``enc_dim`` / ``dec_dim`` are the ViT widths or the MLP thin widths; ``enc_hidden`` / ``dec_hidden`` the MLP
    wide widths (ViTs: 4 x width). ``in_channels`` enter the encoder (semseg: the class-embedding width), the
    decoder gives ``out_channels`` (semseg: ``n_labels`` logits). ``image_size`` is the size `encode` and
    `decode` work at (pixels; feature maps are on the (image_size / patch_size)^2 token grid of such an image).
    ``reference`` holds the folder's config.json
    as it was, written back by `save_official`.
    """

    values: str
    in_channels: int
    out_channels: int
    image_size: int
    patch_size: int
    enc_dim: int
    enc_depth: int
    dec_dim: int
    dec_depth: int
    latent_dim: int
    codebook_size: int
    name: str = ""
    n_labels: int = 0
    family: str = "vit"  # "vit" or "mlp"
    enc_hidden: int = 0
    dec_hidden: int = 0
    post_mlp: bool = True
    out_conv: bool = False
    quantizer: str = "lucid"  # "lucid" or "memcodes"
    num_codebooks: int = 1
    norm_codes: bool = True
    pos_grid: int = 0  # side of the stored position tables (0: the token grid); resized to the grid at run time
    reference: tuple[tuple[str, object], ...] = ()

    def __post_init__(self) -> None:
        if self.values not in VALUES:
            raise ValueError(f"values must be one of {', '.join(VALUES)}, got {self.values!r}")
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")

    @property
    def grid(self) -> int:
        """Tokens per side."""
        return self.image_size // self.patch_size

    @property
    def input_size(self) -> int:
        """Pixels per side of the encoder's input: the image, or the feature map on the token grid."""
        return self.grid if self.values == "feature" else self.image_size


class OfficialVQVAE(nn.Module):
    """A released 4M VQ-VAE tokenizer (see the module table); load one with `folder.load_official_tokenizer`."""

    def __init__(self, cfg: OfficialVQVAEConfig):
        super().__init__()
        self.cfg = cfg
        c = cfg
        self.cls_emb = nn.Embedding(c.n_labels, c.in_channels) if c.values == "semseg" else None
        grid = (c.pos_grid or c.grid,) * 2
        patch = 1 if c.values == "feature" else c.patch_size
        if c.family == "vit":
            self.encoder = ViTEncoder(channels=c.in_channels, dim=c.enc_dim, depth=c.enc_depth, patch_size=patch,
                                      grid=grid, post_mlp=c.post_mlp)
            self.decoder = ViTDecoder(channels=c.out_channels, dim=c.dec_dim, depth=c.dec_depth, patch_size=patch,
                                      grid=grid, post_mlp=c.post_mlp, out_conv=c.out_conv)
        else:
            self.encoder = BottleneckMLP.of_shape(MLPShape(c.in_channels, c.enc_dim, c.enc_dim, c.enc_hidden,
                                                           c.enc_depth))
            self.decoder = BottleneckMLP.of_shape(MLPShape(c.dec_dim, c.out_channels, c.dec_dim, c.dec_hidden,
                                                           c.dec_depth))
        self.quant_proj = nn.Conv2d(c.enc_dim, c.latent_dim, 1)
        if c.quantizer == "lucid":
            self.quantize = LucidVQ(c.latent_dim, c.codebook_size, norm_codes=c.norm_codes)
        else:
            self.quantize = Memcodes(c.latent_dim, c.codebook_size, heads=c.num_codebooks)
        self.post_quant_proj = nn.Conv2d(c.latent_dim, c.dec_dim, 1)

    # ------------------------------------------------------------------------------------ the protocol

    @property
    def vocab_size(self) -> int:
        return self.cfg.codebook_size

    @property
    def num_tokens(self) -> int:
        return self.cfg.num_codebooks * self.cfg.grid ** 2

    @torch.no_grad()
    def encode(self, values: torch.Tensor) -> torch.Tensor:
        """Natural values (see the module table) -> (B, num_tokens) int64 ids."""
        ids = self.tokenize(self.prepare(values))
        return ids.reshape(ids.shape[0], -1)

    @torch.no_grad()
    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, num_tokens) ids (or the reference's grid layout) -> natural values (see the module table)."""
        if isinstance(ids, torch.Tensor) and ids.ndim > 2:
            ids = ids.reshape(ids.shape[0], -1)
        ids = check_token_ids(ids, self.vocab_size, self.num_tokens, f"{self._what} decode")
        g, nc = self.cfg.grid, self.cfg.num_codebooks
        grid = ids.reshape(-1, g, g) if nc == 1 else ids.reshape(-1, nc, g, g)
        out = self.decode_tokens(grid.to(self.quant_proj.weight.device))
        v = self.cfg.values
        if v == "semseg":
            return out.argmax(dim=1)
        if v == "mask":
            return torch.sigmoid(out[:, 0])
        return out[:, :, 0, 0] if v == "vector" else out

    # ------------------------------------------------------------------- the reference's tensors

    @torch.no_grad()
    def tokenize(self, x: torch.Tensor) -> torch.Tensor:
        """The reference's input -> its ids: (B, h, w), or (B, NC, h, w) with several codebooks.

        ``x``: semseg (B, H, W) class ids; otherwise (B, C, H, W), H and W multiples of the patch (ViT) or 1 x 1
        (vectors). Sizes other than the training one are accepted, as by the reference (positions are resized).
        """
        x = self._check_reference_input(x)
        if self.cls_emb is not None:
            x = rearrange(self.cls_emb(x), "b h w c -> b c h w")
        # The checks work in float32; a tokenizer loaded in bf16 / fp16 computes in its weights' dtype.
        return self.quantize.ids(self.quant_proj(self.encoder(x.to(self.quant_proj.weight.dtype))))

    @torch.no_grad()
    def decode_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        """The reference's ids ((B, h, w) or (B, NC, h, w)) -> its decoder output (B, C_out, H, W): features,
        vectors as (B, C, 1, 1), segmentation and mask logits."""
        if not isinstance(ids, torch.Tensor):
            ids = torch.as_tensor(ids)
        want = 3 if self.cfg.num_codebooks == 1 else 4
        layout = "(B, h, w)" if want == 3 else f"(B, {self.cfg.num_codebooks}, h, w)"
        if ids.ndim != want or (want == 4 and ids.shape[1] != self.cfg.num_codebooks):
            raise TokenizerInputError(f"{self._what}: expected ids of shape {layout}, got {tuple(ids.shape)}")
        try:
            codes = self.quantize.lookup(ids.to(self.quant_proj.weight.device))
        except ValueError as e:
            raise TokenizerInputError(str(e)) from None
        return self.decoder(self.post_quant_proj(codes))

    # --------------------------------------------------------------------------------------- checks

    @property
    def _what(self) -> str:
        c = self.cfg
        return f"{c.name} ({c.values}) tokenizer" if c.name else f"released {c.values} tokenizer"

    def prepare(self, values: torch.Tensor) -> torch.Tensor:
        """Natural values -> the reference's input at the training size; TokenizerInputError when they do not fit."""
        c, what = self.cfg, self._what
        if not isinstance(values, torch.Tensor):
            values = torch.as_tensor(values)
        values = values.to(self.quant_proj.weight.device)
        s = c.input_size
        if c.values == "vector":
            if values.ndim == 4 and values.shape[-2:] == (1, 1):
                values = values[:, :, 0, 0]
            if values.ndim != 2 or values.shape[1] != c.in_channels:
                raise TokenizerInputError(f"{what}: expected vectors of shape (B, {c.in_channels}), got "
                                          f"{tuple(values.shape)}")
            return values.float()[:, :, None, None]
        if c.values in ("semseg", "mask") and values.ndim == 4 and values.shape[1] == 1:
            values = values[:, 0]
        single = c.values in ("semseg", "mask")
        want = f"(B, {s}, {s})" if single else f"(B, {c.in_channels}, {s}, {s})"
        fits = values.ndim == 3 if single else values.ndim == 4 and values.shape[1] == c.in_channels
        if not fits or tuple(values.shape[-2:]) != (s, s):
            raise TokenizerInputError(f"{what}: expected {want}, got {tuple(values.shape)} (resize or crop to "
                                      f"{s} x {s})")
        if c.values == "mask":
            x = values.float() / 255.0 if values.dtype == torch.uint8 else values.float()
            check_finite(x, what)
            return x[:, None]
        return values

    def _check_reference_input(self, x: torch.Tensor) -> torch.Tensor:
        c, what = self.cfg, self._what
        if not isinstance(x, torch.Tensor):
            x = torch.as_tensor(x)
        x = x.to(self.quant_proj.weight.device)
        if c.values == "semseg":
            if x.ndim != 3 or x.dtype.is_floating_point or x.dtype == torch.bool:
                raise TokenizerInputError(f"{what}: expected integer class ids (B, H, W), got {x.dtype} "
                                          f"{tuple(x.shape)}")
            if x.numel() and (int(x.min()) < 0 or int(x.max()) >= c.n_labels):
                raise TokenizerInputError(f"{what}: class ids from {int(x.min())} to {int(x.max())}, expected 0 to "
                                          f"{c.n_labels - 1}")
            x = x.long()
        else:
            if x.ndim != 4 or x.shape[1] != c.in_channels:
                raise TokenizerInputError(f"{what}: expected (B, {c.in_channels}, H, W), got {tuple(x.shape)}")
            x = x.float()
            check_finite(x, what)
        p = c.patch_size if c.values in ("semseg", "mask") else 1
        if x.shape[-2] % p or x.shape[-1] % p:
            raise TokenizerInputError(f"{what}: {x.shape[-2]} x {x.shape[-1]} pixels are not a multiple of the "
                                      f"patch size {p}")
        return x
