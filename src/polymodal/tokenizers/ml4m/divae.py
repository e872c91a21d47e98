"""DiVAE: the released 4M tokenizers of RGB, depth, surface normals and edges (apple/ml-4m).

Encoder: a ViT (``vit.ViTEncoder``, patch 16) -> 1x1 ``quant_proj`` to the code dim -> lucid VQ (cosine nearest
code): (B, C, H, W) -> (B, H/16, W/16) ids. Decoder: a diffusion model, the patched UNet of `unet` conditioned
on the tokens' codes, sampled from noise by `diffusion` (DDPM as the reference, or DDIM in fewer steps).

Natural units (``encode`` input, ``decode`` output), and what the tokenizer does to reach the model's own units
(those of the reference's ``tokenize`` / ``decode_tokens``), as the released tokenizers were trained
(``fourm/data/modality_transforms.py``, ``MODALITY_TRANSFORMS_DIVAE``):

=======  ======================================  =====================================================
values   natural units                           model units
=======  ======================================  =====================================================
rgb      (B, 3, H, W) float 0..1 or uint8        2x - 1, in [-1, 1]; decoded back with (x + 1) / 2
depth    (B, H, W) or (B, 1, H, W), any unit     standardized per image: (d - m) / sqrt(v + 1e-6), m and
         (metres); decode: standardized depth    v the mean and variance of its middle 80% of values.
         (zero mean, unit spread, larger =       Decodes are relative depth in these units: the scale and
         farther), not metres                    shift of metres are not in the tokens
normal   (B, 3, H, W) unit vectors, -1..1        unchanged (the reference's (n + 1)/2 image, normalized by
                                                 0.5 / 0.5); decodes clipped to [-1, 1], not renormalized
edge     (B, H, W) or (B, 1, H, W) 0..1 / uint8  2x - 1; decoded back with (x + 1) / 2
raw      (B, C, H, W) model units                unchanged (a folder whose modality is not known)
=======  ======================================  =====================================================

``decode`` draws noise: pass ``generator`` (a torch.Generator or an int seed) for a repeatable result. The
reference's draw order is kept, so ``decode_tokens(ids, timesteps=N, generator=torch.Generator().manual_seed(0))``
gives the reference's image (up to float rounding).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ...nn.loading import assign_state, parameters_on_meta
from ..base import (
    CONFIG,
    WEIGHTS,
    TokenizerInputError,
    TokenizerLoadError,
    check_finite,
    check_token_ids,
    checked_state,
    names_differ,
)
from . import diffusion
from .folder import read_official_folder, reference_arg
from .quantizers import LucidVQ
from .unet import PatchedUNet, UNetConfig, config_from_official, official_names, official_state_dict, reference_name
from .vit import ViTEncoder, vit_shape

VALUES = ("rgb", "depth", "normal", "edge", "raw")
CHANNELS = {"rgb": 3, "depth": 1, "normal": 3, "edge": 1}


@dataclass(frozen=True)
class DiVAEConfig:
    """A DiVAE's sizes and diffusion settings (the reference's config fields where they exist)."""

    values: str
    image_size: int
    channels: int
    enc_dim: int
    enc_depth: int
    patch_size: int
    enc_grid: tuple[int, int]
    post_mlp: bool
    latent_dim: int
    codebook_size: int
    unet: UNetConfig
    norm_codes: bool = True
    num_train_timesteps: int = 1000
    beta_schedule: str = "linear"
    prediction_type: str = "sample"
    zero_terminal_snr: bool = True
    thresholding: bool = True
    clip_sample: bool = False
    scheduler: str = "ddpm"
    name: str = ""  # the domain it serves (tok_depth@224), when known


def standardize_depth(depth: torch.Tensor, trim: float = 0.1) -> torch.Tensor:
    """(B, 1, H, W) -> each image minus the mean of its middle 80% of values, over their std (+1e-6 in the
    variance; unbiased, as torch's ``var``); the reference's ``truncated_depth_standardization``."""
    out = []
    for d in depth.float():
        v = d.reshape(-1).sort().values
        n = v.shape[0]
        kept = v[int(trim * n): int((1 - trim) * n)]
        out.append((d - kept.mean()) / torch.sqrt(kept.var() + 1e-6))
    return torch.stack(out)


class DiVAE(nn.Module):
    """A released DiVAE tokenizer. ``encode(values) -> (B, N) ids``, ``decode(ids) -> values``; the reference's
    conventions as ``tokenize(x) -> (B, h, w)`` and ``decode_tokens(ids, timesteps, generator, image_size)``."""

    def __init__(self, cfg: DiVAEConfig):
        super().__init__()
        if cfg.values not in VALUES:
            raise ValueError(f"DiVAE values {cfg.values!r} is not one of {VALUES}")
        self.cfg = cfg
        self.encoder = ViTEncoder(channels=cfg.channels, dim=cfg.enc_dim, depth=cfg.enc_depth,
                                  patch_size=cfg.patch_size, grid=cfg.enc_grid, post_mlp=cfg.post_mlp)
        self.quant_proj = nn.Conv2d(cfg.enc_dim, cfg.latent_dim, 1)
        self.quantize = LucidVQ(cfg.latent_dim, cfg.codebook_size, norm_codes=cfg.norm_codes)
        # Channels-last: its 3x3 convolutions alone run up to 1.6x faster so on CPU (one thread); a whole decode was
        # as fast as in NCHW within this shared machine's noise (benchmarks/divae_decode.py).
        self.decoder = PatchedUNet(cfg.unet).to(memory_format=torch.channels_last)
        self.schedule = diffusion.Schedule.from_config(
            num_train_timesteps=cfg.num_train_timesteps, beta_schedule=cfg.beta_schedule,
            zero_terminal_snr=cfg.zero_terminal_snr, prediction_type=cfg.prediction_type,
            thresholding=cfg.thresholding, clip_sample=cfg.clip_sample)

    # ------------------------------------------------------------------------------------ protocol

    @property
    def vocab_size(self) -> int:
        return self.cfg.codebook_size

    @property
    def grid(self) -> int:
        return self.cfg.image_size // self.cfg.patch_size

    @property
    def num_tokens(self) -> int:
        return self.grid * self.grid

    @torch.inference_mode()
    def encode(self, values: torch.Tensor) -> torch.Tensor:
        """Natural values (see the module docstring) -> (B, N) ids, N = (H/16) * (W/16)."""
        return self.tokenize(self.to_model_units(values)).flatten(1)

    @torch.inference_mode()
    def decode(self, ids: torch.Tensor, *, steps: int = 25, sampler: str = "ddpm", eta: float = 0.0,
               generator: torch.Generator | int | None = None, image_size: int | None = None,
               progress: bool = False) -> torch.Tensor:
        """(B, N) ids of a square grid (or the (B, h, w) grid) -> natural values at ``image_size`` (default: 16 px
        per token).

        ``steps`` diffusion steps with ``sampler`` "ddpm" (the reference's) or "ddim" (deterministic at eta 0;
        better than DDPM at few steps). ``progress``: a tqdm bar on stderr."""
        ids = torch.as_tensor(ids)
        if ids.ndim == 3:
            ids = ids.flatten(1)
        grid = math.isqrt(ids.shape[-1]) if ids.ndim == 2 else 0
        if ids.ndim != 2 or grid * grid != ids.shape[-1] or grid == 0:
            raise TokenizerInputError(f"{self._what}: expected (B, N) ids of a square token grid, got shape "
                                      f"{tuple(ids.shape)}")
        ids = check_token_ids(ids, self.vocab_size, grid * grid, self._what)
        x = self.decode_tokens(ids.reshape(-1, grid, grid), timesteps=steps, generator=generator,
                               image_size=image_size or grid * self.cfg.patch_size, sampler=sampler, eta=eta,
                               progress=progress)
        return self.from_model_units(x)

    # --------------------------------------------------------------------- the reference's conventions

    @torch.inference_mode()
    def tokenize(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) in model units, H and W multiples of 16 -> (B, H/16, W/16) ids (the reference's
        ``tokenize``; sizes other than the training one are read, the positions resized)."""
        x = torch.as_tensor(x)
        c, p = self.cfg.channels, self.cfg.patch_size
        if x.ndim != 4 or x.shape[1] != c:
            raise TokenizerInputError(f"{self._what}: expected (B, {c}, H, W), got {tuple(x.shape)}")
        if x.shape[-1] % p or x.shape[-2] % p:
            raise TokenizerInputError(f"{self._what}: image of {x.shape[-2]} x {x.shape[-1]} pixels is not a "
                                      f"multiple of the patch size {p}")
        x = x.to(self.quant_proj.weight.device).float()
        check_finite(x, self._what)
        return self.quantize.ids(self.quant_proj(self.encoder(x.to(self.quant_proj.weight.dtype))))  # bf16 weights

    @torch.inference_mode()
    def decode_tokens(self, ids: torch.Tensor, timesteps: int | None = None,
                      generator: torch.Generator | int | None = None, image_size: int | None = None, *,
                      sampler: str | None = None, eta: float = 0.0, progress: bool = False) -> torch.Tensor:
        """(B, h, w) ids -> (B, C, S, S) in model units, as the reference's ``decode_tokens``: ``timesteps`` steps
        (default: all 1000 training steps) of its training scheduler (``sampler`` overrides), S = ``image_size``
        (default: the config's). ``generator``: a CPU torch.Generator or an int seed."""
        ids = torch.as_tensor(ids)
        if ids.ndim != 3:
            raise TokenizerInputError(f"{self._what}: expected (B, h, w) ids, got shape {tuple(ids.shape)}")
        try:
            codes = self.quantize.lookup(ids.to(self.quant_proj.weight.device))
        except ValueError as e:
            raise TokenizerInputError(str(e)) from None
        size = image_size or self.cfg.image_size
        step = self.cfg.unet.patch_size * 2 ** (len(self.cfg.unet.channel_mult) - 1)
        if size % step:
            raise TokenizerInputError(f"{self._what}: image_size {size} is not a multiple of {step} (the UNet's "
                                      "patch times its downsampling)")
        if isinstance(generator, int):
            generator = torch.Generator().manual_seed(generator)
        device = codes.device

        def denoise(x: torch.Tensor, t: int) -> torch.Tensor:
            return self.decoder(x.contiguous(memory_format=torch.channels_last), t, codes)

        return diffusion.sample(denoise, (ids.shape[0], self.cfg.channels, size, size), self.schedule,
                                steps=timesteps or self.cfg.num_train_timesteps, sampler=sampler or self.cfg.scheduler,
                                eta=eta, generator=generator, device=device, progress=progress).contiguous()

    # -------------------------------------------------------------------------------------- units

    @property
    def _what(self) -> str:
        return f"{self.cfg.name or 'DiVAE'} ({self.cfg.values}) tokenizer"

    def to_model_units(self, values: torch.Tensor) -> torch.Tensor:
        """Natural values -> (B, C, H, W) float in the model's units (`tokenize` checks the size)."""
        kind, c, what = self.cfg.values, self.cfg.channels, self._what
        x = torch.as_tensor(values)
        if x.ndim == 3 and c == 1:
            x = x[:, None]
        if x.ndim != 4 or x.shape[1] != c:
            raise TokenizerInputError(f"{what}: expected values of shape (B, {c}, H, W)"
                                      f"{' or (B, H, W)' if c == 1 else ''}, got {tuple(x.shape)}")
        x = x.to(self.quant_proj.weight.device)
        if x.dtype == torch.uint8:
            if kind not in ("rgb", "edge"):
                raise TokenizerInputError(f"{what}: uint8 values are only read for rgb and edges")
            x = x.float() / 255
        x = x.float()
        check_finite(x, what)
        if kind in ("rgb", "edge"):
            return 2 * x - 1
        if kind == "depth":
            return standardize_depth(x)
        return x

    def from_model_units(self, x: torch.Tensor) -> torch.Tensor:
        kind = self.cfg.values
        if kind in ("rgb", "edge"):
            x = ((x + 1) / 2).clamp(0, 1)
        elif kind == "normal":
            x = x.clamp(-1, 1)
        return x[:, 0] if kind in ("depth", "edge") else x

    # ------------------------------------------------------------------------------------ loading

    @classmethod
    def from_official(cls, folder: str | Path, *, values: str | None = None, name: str = "",
                      map_location: str = "cpu", dtype: torch.dtype | None = None,
                      decoder_dtype: torch.dtype | None = None) -> DiVAE:
        """A released DiVAE folder (``config.json`` = the reference's constructor arguments + ``model.safetensors``).

        ``name`` is the domain it serves (``tok_canny_edge@224``; default: the folder's name when it is one);
        ``values`` names the modality (rgb, depth, normal, edge); by default it is read from ``name``, else from
        the folder's name (``4M_tokenizers_depth_8k_224-448``, ``tok_depth@224``; a Hub snapshot's repo), else
        "raw" (model units in and out). Every size is read from the weights. ``dtype`` (default float32): the
        weights are read straight into it (no float32 copy on the way, `polymodal.nn.loading`); ``decoder_dtype``
        (default ``dtype``) torch.bfloat16 runs the UNet alone in bfloat16 (about twice as fast on CPUs with
        AVX-512 BF16; benchmarks/divae_decode.py)."""
        folder = Path(folder).expanduser()
        raw, state = read_official_folder(folder, map_location=map_location, dtype=dtype)
        name = name or (folder.name if folder.name.startswith("tok_") else "")
        values = values or (_values_in(name) if name else None) or _values_from_path(folder)
        cfg = config_from_official_divae(raw, state, values=values, source=folder, name=name)
        with parameters_on_meta():
            model = cls(cfg)
        renamed = {k: v for k, v in state.items() if not k.startswith("decoder.")}
        unet = {k[len("decoder."):]: v for k, v in state.items() if k.startswith("decoder.")}
        _check_unet_shapes(model, unet, folder)
        renamed.update({"decoder." + k: v for k, v in official_state_dict(unet).items()})
        model = assign_state(model, checked_state(model, renamed, folder), dtype=dtype)
        if decoder_dtype is not None:
            model.decoder.to(decoder_dtype)
        return model.to(map_location).eval()


def _check_unet_shapes(model: DiVAE, unet: dict[str, torch.Tensor], folder: Path) -> None:
    """The UNet tensors of the file (keys without ``decoder.``) against the model's, named and shaped as the file
    has them: `checked_state` sees them renamed, and the attention's Conv1d weights (out, in, 1) as (out, in)."""
    expected, names = model.decoder.state_dict(), official_names(unet)
    missing = sorted("decoder." + reference_name(k, expected) for k in expected if k not in names)
    unexpected = sorted("decoder." + theirs for ours, theirs in names.items() if ours not in expected)
    if missing or unexpected:  # the message of `checked_state`, in the file's names
        raise names_differ(folder, missing, unexpected)
    for ours, theirs in names.items():
        if ours in expected:
            want = tuple(expected[ours].shape)
            want += (1,) if ".attn." in ours and len(want) == 2 else ()
            if tuple(unet[theirs].shape) != want:
                raise TokenizerLoadError(f"{folder / WEIGHTS}: tensor decoder.{theirs} has shape "
                                         f"{tuple(unet[theirs].shape)} in the file, the config ({folder / CONFIG}) "
                                         f"expects {want}")


def _values_from_path(folder: Path) -> str:
    """The modality a folder's name says, or for a Hub snapshot (named by its commit) its repo's folder
    (``models--EPFL-VILAB--4M_tokenizers_depth_8k_224-448``, two levels up); "raw" when neither does."""
    folder = folder.resolve()
    names = [folder.name] + ([folder.parent.parent.name] if folder.parent.name == "snapshots" else [])
    return next((v for v in map(_values_in, names) if v), "raw")


def _values_in(name: str) -> str | None:
    """The DiVAE modality a domain or folder name says (``tok_sam_edge@224`` -> edge), None when it says none."""
    return next((kind for kind in ("depth", "normal", "edge", "rgb") if kind in name.lower()), None)


def config_from_official_divae(raw: dict, state: dict[str, torch.Tensor], *, values: str = "raw",
                               source: Path | str = "", name: str = "") -> DiVAEConfig:
    """Build a `DiVAEConfig` from the reference's config fields and the weights' shapes (which win on sizes)."""
    where = f"{source / 'config.json' if isinstance(source, Path) else source}"
    if not str(raw.get("dec_type", "")).startswith("unet"):
        raise TokenizerLoadError(f"{where}: dec_type {raw.get('dec_type')!r} is not a patched-UNet DiVAE")
    if raw.get("quant_type", "lucid") != "lucid":
        raise TokenizerLoadError(f"{where}: quant_type {raw.get('quant_type')!r}; a DiVAE here reads 'lucid' only")
    for field, allowed in (("beta_schedule", diffusion.BETA_SCHEDULES), ("prediction_type", diffusion.PREDICTIONS),
                           ("scheduler", diffusion.SAMPLERS)):
        if field in raw and raw[field] not in allowed:
            raise TokenizerLoadError(f"{where}: {field} {raw[field]!r} is not supported (one of {', '.join(allowed)})")
    patch_size = reference_arg(raw, "patch_size", int, 16, where)
    try:
        enc = vit_shape(state, "encoder.", patch_size=patch_size)
        latent_dim, codebook = state["quantize._codebook.embed"].shape[1], state["quantize._codebook.embed"].shape[0]
        unet = config_from_official({k[len("decoder."):]: v for k, v in state.items() if k.startswith("decoder.")},
                                    enc.channels)
    except (KeyError, ValueError) as e:
        raise TokenizerLoadError(f"{where}: weights are not a DiVAE's ({e.args[0]})") from None
    for field, found in (("n_channels", enc.channels), ("codebook_size", codebook), ("latent_dim", latent_dim)):
        if reference_arg(raw, field, int, found, where) != found:
            raise TokenizerLoadError(f"{where}: {field} is {raw[field]} but the weights have {found}")
    if unet.cond_channels != latent_dim:  # the input conv reads the image's patches and the codes, stacked
        stem = tuple(state["decoder.input_blocks.0.0.weight"].shape)
        p = unet.patch_size
        weights = source / WEIGHTS if isinstance(source, Path) else source
        raise TokenizerLoadError(f"{weights}: tensor decoder.input_blocks.0.0.weight has shape {stem} in the file; "
                                 f"{enc.channels}-channel images in {p}x{p} patches and {latent_dim}-d codes need "
                                 f"{enc.channels * p * p + latent_dim} input channels (its dim 1)")
    steps = reference_arg(raw, "num_train_timesteps", int, 1000, where)
    if steps < 1:  # the noise schedule has one entry per step
        raise TokenizerLoadError(f"{where}: num_train_timesteps={steps!r} is not a positive integer")
    if values in CHANNELS and CHANNELS[values] != enc.channels:
        raise TokenizerLoadError(f"{where}: a {values} tokenizer has {CHANNELS[values]} channels, these weights "
                                 f"{enc.channels}")
    return DiVAEConfig(
        values=values, image_size=reference_arg(raw, "image_size", int, enc.grid[0] * enc.patch_size, where),
        channels=enc.channels,
        enc_dim=enc.dim, enc_depth=enc.depth, patch_size=enc.patch_size, enc_grid=enc.grid, post_mlp=enc.post_mlp,
        latent_dim=latent_dim, codebook_size=codebook, unet=unet,
        norm_codes=reference_arg(raw, "norm_codes", bool, True, where),
        num_train_timesteps=steps,
        beta_schedule=raw.get("beta_schedule", "squaredcos_cap_v2"),
        prediction_type=raw.get("prediction_type", "v_prediction"),
        zero_terminal_snr=reference_arg(raw, "zero_terminal_snr", bool, True, where),
        thresholding=reference_arg(raw, "thresholding", bool, True, where),
        clip_sample=reference_arg(raw, "clip_sample", bool, False, where), scheduler=raw.get("scheduler", "ddpm"),
        name=name)
