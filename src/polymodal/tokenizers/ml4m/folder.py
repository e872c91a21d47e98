"""Released 4M tokenizer folders: read one, pick its family, check its tensors against its config, write one.

A released folder (``EPFL-VILAB/4M_tokenizers_*``) holds ``config.json``, the reference's constructor arguments
(``enc_type``, ``dec_type``, ``quant_type``, ``image_size``, ``patch_size``, ``codebook_size``, ``latent_dim``, ...),
and ``model.safetensors``, whose header metadata repeats them as JSON strings. No ``_class_name``: that is how
`is_official_folder` tells it from a polymodal folder. The family comes from the arguments (`load_official_tokenizer`):

- ``dec_type`` ``unet*`` / ``uvit*`` (or diffusion arguments): a DiVAE, ``polymodal.tokenizers.ml4m.divae``;
- ``enc_type`` ``vit*`` or ``BottleneckMLP/*`` with a ViT or MLP decoder: an `OfficialVQVAE`.

Names such as ``vit_b_enc`` say only the family: widths, depths, channels and codebook sizes are read from the
tensors (heads = width / 64), so any size loads. Every problem is a one-line error naming the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ...config import json_flag, json_number
from ...hub import partial_snapshot_hint
from ...nn.loading import assign_state, check_dtype, parameters_on_meta, read_safetensors
from ..base import CONFIG, WEIGHTS, TokenizerLoadError, checked_state
from .mlp import mlp_shape
from .vit import vit_shape
from .vqvae import OfficialVQVAE, OfficialVQVAEConfig

# Keys only a released tokenizer's config has; any one of them marks a folder as official.
REFERENCE_KEYS = ("enc_type", "dec_type", "quant_type")


def is_official_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder whose config.json (or, without one, whose weights' header) holds the reference's
    arguments and no ``_class_name``."""
    path = Path(path)
    try:
        args = _config_json(path) if (path / CONFIG).is_file() else _header_args(path / WEIGHTS)
    except (TokenizerLoadError, OSError):
        return False
    return "_class_name" not in args and any(k in args for k in REFERENCE_KEYS)


def official_tokenizer_types() -> tuple[type, ...]:
    """The classes `load_official_tokenizer` returns (imported when asked: the DiVAE's modules are large)."""
    from .divae import DiVAE

    return OfficialVQVAE, DiVAE


def read_official_folder(path: str | Path, *, map_location: str = "cpu",
                         dtype: torch.dtype | None = None) -> tuple[dict, dict[str, torch.Tensor]]:
    """(the reference's arguments, the state dict) of a released folder; its floating tensors in ``dtype``
    (default float32, what a module built here holds), each cast as it is read (`polymodal.nn.loading`).

    The arguments come from config.json, or from the weights' header when the folder has only the weights.
    Raises FileNotFoundError / TokenizerLoadError naming what is missing or damaged.
    """
    check_dtype(dtype)
    path = Path(path).expanduser()
    args = read_official_args(path)
    try:
        state = read_safetensors(path / WEIGHTS, device=map_location, dtype=dtype or torch.float32)
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error type for a damaged file
        raise TokenizerLoadError(f"{path / WEIGHTS}: truncated or corrupt ({e})") from None
    return args, state


def read_official_args(path: Path) -> dict:
    """The reference's arguments of a released folder whose weights file is there (not read: a DiVAE's loader
    reads it once itself); FileNotFoundError / TokenizerLoadError naming what is missing."""
    if path.is_file():  # config.json or the weights given for their folder: it exists, it is not missing
        raise NotADirectoryError(f"tokenizer {path}: a file, not a tokenizer folder; give the folder that holds it")
    if not path.is_dir():
        raise FileNotFoundError(f"tokenizer {path}: no such folder")
    weights, has_config = path / WEIGHTS, (path / CONFIG).is_file()
    if not has_config and not weights.is_file():
        raise FileNotFoundError(f"{path} is not a tokenizer folder: no {CONFIG} and no {WEIGHTS}")
    args = _config_json(path) if has_config else _header_args(weights)
    missing = [k for k in REFERENCE_KEYS if k not in args]
    if missing:
        where = path / CONFIG if has_config else f"{weights} (header; no {CONFIG})"
        raise TokenizerLoadError(f"{where}: not a released 4M tokenizer config: no {', '.join(missing)} "
                                 "(and no _class_name of a polymodal tokenizer)")
    if not weights.is_file():
        raise FileNotFoundError(f"{path} is not a complete tokenizer folder: {CONFIG} but no {WEIGHTS}"
                                f"{partial_snapshot_hint(path)}")
    return args


def load_official_tokenizer(path: str | Path, *, name: str = "", image_size: int | None = None,
                            map_location: str = "cpu", dtype: torch.dtype | None = None,
                            decoder_dtype: torch.dtype | None = None):
    """The tokenizer of a released folder: an `OfficialVQVAE`, or a DiVAE (`DiVAE.from_official`).

    ``name`` is the domain it serves, for every family (default: the folder's name when it is a domain, ``tok_*``):
    a DiVAE takes its modality from it (``tok_sam_edge@224``: edge), as a Hub snapshot's folder name says nothing;
    ``image_size`` the size a VQ-VAE's `encode` / `decode` work at (default: the config's; the positions are
    resized to it; a DiVAE is given its size at each decode). ``dtype`` (e.g. torch.bfloat16): the weights are read
    straight into it, no float32 copy of the tokenizer on the way; default float32. ``decoder_dtype``: a DiVAE's
    UNet alone in that dtype (`DiVAE.from_official`); ignored by the other families.
    """
    check_dtype(dtype)
    path = Path(path).expanduser()
    args = read_official_args(path)
    if str(args["dec_type"]).startswith(("unet", "uvit")) or "beta_schedule" in args:
        from .divae import DiVAE  # here: that module imports this one

        return DiVAE.from_official(path, name=name or _domain_name(path), map_location=map_location, dtype=dtype,
                                   decoder_dtype=decoder_dtype)
    args, state = read_official_folder(path, map_location=map_location, dtype=dtype)
    try:  # the config's and the modules' own checks (image_size and patch, codebooks and latent dim) name no file
        cfg = official_vqvae_config(args, state, source=path, name=name or _domain_name(path), image_size=image_size)
        with parameters_on_meta():
            model = OfficialVQVAE(cfg)
    except TokenizerLoadError:
        raise
    except ValueError as e:
        raise TokenizerLoadError(f"{path / CONFIG}: {e}") from None
    return assign_state(model, checked_state(model, state, path), dtype=dtype).eval().to(map_location)


def official_vqvae_config(args: dict, state: dict[str, torch.Tensor], *, source: Path, name: str = "",
                          image_size: int | None = None) -> OfficialVQVAEConfig:
    """The reference's arguments + the tensors' sizes -> an `OfficialVQVAEConfig`; TokenizerLoadError if they
    name a family polymodal does not have, or the tensors lack what the family needs."""
    enc, dec, quant = str(args["enc_type"]), str(args["dec_type"]), str(args["quant_type"])
    where = source / CONFIG
    if quant not in ("lucid", "memcodes"):
        raise TokenizerLoadError(f"{where}: quant_type {quant!r} is not a released quantizer (lucid, memcodes)")
    family = "vit" if enc.startswith("vit") else "mlp" if enc.startswith("BottleneckMLP") else ""
    if not family or not dec.startswith(("vit", "BottleneckMLP")) or dec.startswith("vit") != (family == "vit"):
        raise TokenizerLoadError(f"{where}: enc_type {enc!r} with dec_type {dec!r} is not a released VQ-VAE "
                                 "(vit_*_enc with vit_*_dec, or BottleneckMLP/* with BottleneckMLP/*)")
    n_labels = reference_arg(args, "n_labels", int, 0, where)
    n_channels = reference_arg(args, "n_channels", int, 3, where)
    patch_proj = reference_arg(args, "patch_proj", bool, True, where)
    values = ("semseg" if n_labels else "vector" if family == "mlp" else "feature" if not patch_proj
              else "mask" if n_channels == 1 else "")
    if not values:
        raise TokenizerLoadError(f"{where}: a ViT VQ-VAE on {n_channels}-channel images: polymodal loads the "
                                 "released segmentation, feature-map, vector and SAM-mask VQ-VAEs only")
    patch = reference_arg(args, "patch_size", int, 16, where)
    try:
        if family == "vit":
            e = vit_shape(state, "encoder.", patch_size=patch, patch_proj=patch_proj)
            d = vit_shape(state, "decoder.", patch_size=patch, patch_proj=patch_proj)
            sizes = dict(enc_dim=e.dim, enc_depth=e.depth, dec_dim=d.dim, dec_depth=d.depth, post_mlp=e.post_mlp,
                         out_conv=reference_arg(args, "out_conv", bool, False, where))
        else:
            e, d = mlp_shape(state, "encoder."), mlp_shape(state, "decoder.")
            sizes = dict(enc_dim=e.dim_out, enc_depth=e.depth, enc_hidden=e.wide, dec_dim=d.dim_in, dec_depth=d.depth,
                         dec_hidden=d.wide)
    except KeyError as err:
        raise TokenizerLoadError(f"{source / WEIGHTS}: {err.args[0]} (a {enc} / {dec} tokenizer has it)") from None
    # Vectors are one position; feature maps sit on the token grid of an image of image_size pixels.
    size = 1 if family == "mlp" else int(image_size or reference_arg(args, "image_size", int, 224, where) or 224)
    return OfficialVQVAEConfig(
        values=values, name=name, in_channels=n_channels, out_channels=n_labels or n_channels, n_labels=n_labels,
        image_size=size, patch_size=patch if family == "vit" else 1, family=family,
        latent_dim=reference_arg(args, "latent_dim", int, 32, where),
        codebook_size=reference_arg(args, "codebook_size", int, 16384, where), quantizer=quant,
        num_codebooks=reference_arg(args, "num_codebooks", int, 1, where),
        norm_codes=reference_arg(args, "norm_codes", bool, True, where),
        pos_grid=(e.grid[0] if family == "vit" else 0), reference=tuple(args.items()), **sizes)


def reference_arg(args: dict, key: str, kind: type, default: Any, where: Path | str) -> Any:
    """``args[key]`` as an int or a bool (``default`` when absent or null, the reference's None); a one-line
    TokenizerLoadError naming ``where`` and the field otherwise (bool("false") would be True)."""
    value = args.get(key)
    if value is None:
        return default
    if kind is bool:
        return json_flag(value, key, where, error=TokenizerLoadError)
    return json_number(value, int, key, where, error=TokenizerLoadError)


def save_official(model: OfficialVQVAE, path: str | Path) -> Path:
    """Write ``model`` in the released layout (config.json = the reference's arguments, also in the weights'
    header), so that the reference and `load_official_tokenizer` read it back."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    args = dict(model.cfg.reference) or reference_args(model.cfg)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    tmp = path / (WEIGHTS + ".tmp")
    save_file(state, str(tmp), metadata={k: json.dumps(v) for k, v in args.items()})
    tmp.replace(path / WEIGHTS)
    (path / CONFIG).write_text(json.dumps(args, indent=2) + "\n")
    return path


def reference_args(cfg: OfficialVQVAEConfig) -> dict:
    """The reference's constructor arguments for a config built here (for a model made from scratch)."""
    vit = cfg.family == "vit"
    enc = "vit_b_enc" if vit else f"BottleneckMLP/B_{cfg.enc_depth}-Wi_{cfg.enc_dim}"
    dec = "vit_b_dec" if vit else f"BottleneckMLP/B_{cfg.dec_depth}-Wi_{cfg.dec_dim}"
    args = {"enc_type": enc, "dec_type": dec, "quant_type": cfg.quantizer,
            "image_size": cfg.image_size, "patch_size": cfg.patch_size, "n_channels": cfg.in_channels,
            "codebook_size": cfg.codebook_size, "num_codebooks": cfg.num_codebooks, "latent_dim": cfg.latent_dim,
            "norm_codes": cfg.norm_codes}
    if vit:
        args.update(post_mlp=cfg.post_mlp, out_conv=cfg.out_conv, patch_proj=cfg.values != "feature")
    if cfg.n_labels:
        args["n_labels"] = cfg.n_labels
    return args


def _config_json(path: Path) -> dict:
    try:
        data = json.loads((path / CONFIG).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise TokenizerLoadError(f"{path / CONFIG}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise TokenizerLoadError(f"{path / CONFIG}: expected a JSON object of arguments, got {type(data).__name__}")
    return data


def _header_args(weights: Path) -> dict:
    """The reference's arguments from the safetensors header (JSON strings), {} when the header has none."""
    try:
        with safe_open(str(weights), "pt") as f:
            meta = f.metadata() or {}
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error type for a damaged file
        raise TokenizerLoadError(f"{weights}: truncated or corrupt ({e})") from None
    out = {}
    for k, v in meta.items():
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def _domain_name(path: Path) -> str:
    return path.name if path.name.startswith("tok_") else ""
