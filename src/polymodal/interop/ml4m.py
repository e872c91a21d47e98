"""The official 4M checkpoints and tokenizers (apple/ml-4m): load, save, convert its batches, tokenize and decode
in its tensor layouts.

The reference marks masks the other way round (True = "not used"); this is the only module that converts.
Its state-dict layout is polymodal's own, so loading is mostly a config translation (see `model.checkpoint`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors.torch import save_file

from ..data.batch import Batch, ModalityTokens
from ..modalities import Kind
from ..model import FourM
from ..model.checkpoint import CONFIG, WEIGHTS, load_folder, state_dict_for_file
from ..tokenizers import load_tokenizer as load_any_tokenizer
from ..tokenizers.ml4m.folder import official_tokenizer_types
from ..tokenizers.ml4m.vqvae import OfficialVQVAE


def load_checkpoint(path: str | Path, *, strict: bool = True, dtype: torch.dtype | None = None,
                    revision: str | None = None) -> FourM:
    """Any released 4M-7 / 4M-21 / 4M-7-T2I / 4M-7-SR folder (``config.json`` + ``model.safetensors``), its Hub
    repo id (``EPFL-VILAB/4M-21_XL``, through the Hub cache: `polymodal.hub.resolve`), or a bare ``.safetensors``
    file whose header holds the config. Vocabulary sizes come from the tensors. ``dtype`` (e.g. torch.bfloat16):
    the weights are read straight into it, with no float32 copy of the model on the way (default float32)."""
    return load_folder(path, strict=strict, dtype=dtype, revision=revision)


def official_config(model: FourM) -> dict:
    c = model.config
    rgb = [n for n in (*c.domains_in, *c.domains_out) if c.modality(n).kind is Kind.PIXELS]
    image_size, patch_size = 224, 16
    if rgb:
        m = c.modality(rgb[0])
        image_size, patch_size = m.image_size[0], m.patch_size
    return {
        "dim": c.dim, "encoder_depth": c.encoder_depth, "decoder_depth": c.decoder_depth,
        "num_heads": c.num_heads, "mlp_ratio": c.mlp_ratio if c.mlp_ratio % 1 else int(c.mlp_ratio),
        "act_layer": {"silu": "SiLU", "gelu": "GELU"}[c.act], "gated_mlp": c.gated_mlp,
        "qkv_bias": c.qkv_bias, "proj_bias": c.proj_bias, "mlp_bias": c.mlp_bias, "norm_bias": c.norm_bias,
        "image_size": image_size, "patch_size": patch_size,
        "share_modality_embeddings": c.share_modality_embeddings,
        "domains_in": list(c.domains_in), "domains_out": list(c.domains_out),
        **({"qk_norm": True} if c.qk_norm else {}),
    }


def save_checkpoint(model: FourM, path: str | Path) -> Path:
    """Write the official layout: 4M's config fields (also as header metadata strings), zero LayerNorm biases
    for bias-free models, shared modality embeddings under both names."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    sd = state_dict_for_file(model)
    if not model.config.norm_bias:
        for name, m in model.named_modules():
            if isinstance(m, torch.nn.LayerNorm) and m.bias is None:
                sd[f"{name}.bias"] = torch.zeros_like(sd[f"{name}.weight"])
    cfg = official_config(model)
    tmp = path / (WEIGHTS + ".tmp")
    save_file(sd, str(tmp), metadata={k: str(v) for k, v in cfg.items()})
    tmp.replace(path / WEIGHTS)
    (path / CONFIG).write_text(json.dumps(cfg, indent=2) + "\n")
    return path


def batch_from_mod_dict(mod_dict: Mapping[str, Mapping[str, torch.Tensor]], model: FourM) -> Batch:
    """The reference's ``{domain: {tensor, input_mask, target_mask, ...}}`` (True = not used) as a `Batch`."""
    items = {}
    for name, d in mod_dict.items():
        mod = model.config.modality(name)
        values = d["tensor"]
        if mod.kind is Kind.IMAGE_TOKENS:
            values = values.reshape(values.shape[0], -1).long()
        elif mod.kind is Kind.SEQUENCE:
            values = values.long()
        items[name] = ModalityTokens(values, ~d["input_mask"].bool(), ~d["target_mask"].bool())
    return Batch(items)


def forward_logits(model: FourM, mod_dict: Mapping[str, Mapping[str, torch.Tensor]]
                   ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per target domain: logits (B, T, V) and valid (B, T), rows being the domain's queries in ascending
    position order, as the fixtures' ``case.safetensors`` stores them."""
    out = model(batch_from_mod_dict(mod_dict, model))
    return {name: (o.dense(), o.valid) for name, o in out.items()}


# ------------------------------------------------------------------------------ the released tokenizers


def load_tokenizer(folder: str | Path, *, dtype: torch.dtype | None = None):
    """A released tokenizer folder (``EPFL-VILAB/4M_tokenizers_*``: the reference's arguments + weights) or its
    Hub repo id -> its polymodal tokenizer (`OfficialVQVAE` or `DiVAE`), its weights read straight in ``dtype``
    (default float32); ValueError for any other tokenizer."""
    tok = load_any_tokenizer(folder, dtype=dtype)
    if not isinstance(tok, official_tokenizer_types()):
        raise ValueError(f"{folder}: a polymodal {type(tok).__name__}, not a released 4M tokenizer (use "
                         "polymodal.tokenizers.load_tokenizer for it)")
    return tok


def tokenize(tok, x: torch.Tensor) -> torch.Tensor:
    """The reference's ``tokenize(x)``: its input tensor (semseg (B, H, W) class ids; images and feature maps
    (B, C, H, W) in its units, DiVAE images in [-1, 1]; vectors (B, C, 1, 1)) -> its token ids, (B, h, w), or
    (B, NC, h, w) for Memcodes with NC codebooks."""
    return tok.tokenize(x)


def decode_tokens(tok, ids: torch.Tensor, timesteps: int | None = None, generator: torch.Generator | None = None,
                  image_size: int | None = None) -> torch.Tensor:
    """The reference's ``decode_tokens``: ids in its layout -> its output tensor (B, C, H, W): segmentation and mask
    logits, features, vectors (B, C, 1, 1), DiVAE images in [-1, 1]. ``timesteps`` (diffusion steps of the
    tokenizer's own scheduler), ``generator`` and ``image_size`` are the DiVAE's; a VQ-VAE ignores them, as the
    reference's does."""
    if isinstance(tok, OfficialVQVAE):
        return tok.decode_tokens(ids)
    return tok.decode_tokens(ids, timesteps=timesteps, generator=generator, image_size=image_size)
