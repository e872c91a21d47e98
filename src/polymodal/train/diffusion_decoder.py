"""A DiVAE-style diffusion decoder trained on the tokens of a frozen polymodal depth tokenizer (the world's).

4M's DiVAE tokenizers decode their tokens with a diffusion model: the patched UNet of
`tokenizers.ml4m.unet`, conditioned on the tokens' quantized codes (upsampled, concatenated as extra channels),
predicting the clean image x0 (``prediction_type: sample``) under linear betas with zero-terminal-SNR rescaling,
sampled with `tokenizers.ml4m.diffusion` (DDPM or DDIM). The shipped world model has no such decoder: its depth
tokenizer is a ViT VQ-VAE with a plain decoder. This module trains one on its codes, so that what fewer sampling
steps cost (DDIM against DDPM) can be measured on a decoder that has learned something (benchmarks/divae_quality.py).

Units. The model works in the VQ-VAE's normalized depth, (log(1 + metres) - mean) / std, divided by
``depth_scale`` so that the world's depths (0 = sky ... ~60 m: -2.6 ... 3.3 normalized) lie within [-1, 1], the
range the sampler's thresholding clips x0 to; `DepthDiffusionDecoder.decode` returns metres through the VQ-VAE's
own ``to_values``.

Training: world scenes ``data_seed``, indices 0 .. ``scenes - 1``, rendered at the tokenizer's size, encoded once;
each step a batch drawn by a generator seeded with (seed, step) (so a resumed run draws what the uninterrupted
one would), t uniform over the 1000 training steps, loss mean squared error of x0; AdamW, an EMA of the weights
(the one sampled). ``train_decoder`` writes ``folder/checkpoint.safetensors`` (model, EMA, optimizer, step, config
in its header) atomically every ``checkpoint_every`` steps and at the end, and resumes from it.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F

from ..tokenizers.ml4m import diffusion
from ..tokenizers.ml4m.unet import PatchedUNet, UNetConfig
from ..tokenizers.vqvae import ViTVQVAE
from .files import fsync_path

CHECKPOINT = "checkpoint.safetensors"


@dataclass(frozen=True)
class DecoderConfig:
    """The decoder's sizes and its training run. ``tokenizer``: the frozen depth VQ-VAE folder."""

    tokenizer: str
    model_channels: int = 32
    channel_mult: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 1
    attention_resolutions: tuple[int, ...] = (4,)
    patch_size: int = 2
    depth_scale: float = 3.3
    scenes: int = 3000
    data_seed: int = 0
    seed: int = 0
    batch_size: int = 16
    steps: int = 3000
    lr: float = 1e-3
    warmup: int = 100
    ema_decay: float = 0.995
    checkpoint_every: int = 100

    def unet(self, code_dim: int) -> UNetConfig:
        return UNetConfig(in_channels=1, cond_channels=code_dim, patch_size=self.patch_size,
                          model_channels=self.model_channels, channel_mult=tuple(self.channel_mult),
                          num_res_blocks=self.num_res_blocks, attention_resolutions=tuple(self.attention_resolutions))


class DepthDiffusionDecoder(nn.Module):
    """Tokens of a depth VQ-VAE ``tok`` -> depth in metres, by diffusion. ``unet(x_t, t, codes)`` predicts x0."""

    def __init__(self, cfg: DecoderConfig, tok: ViTVQVAE):
        super().__init__()
        if tok.cfg.values != "depth":
            raise ValueError(f"{cfg.tokenizer}: a {tok.cfg.values} tokenizer; the decoder is trained on depth only")
        self.cfg, self.tok = cfg, tok.eval().requires_grad_(False)
        self.unet = PatchedUNet(cfg.unet(tok.cfg.code_dim))
        self.schedule = diffusion.Schedule.from_config(beta_schedule="linear", prediction_type="sample")

    def codes(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, N) ids -> (B, code_dim, g, g) quantized codes, the UNet's condition."""
        g = self.tok.cfg.grid
        return self.tok.quantizer.ids_to_codes(ids).transpose(1, 2).unflatten(2, (g, g))

    def to_model_units(self, depth: torch.Tensor) -> torch.Tensor:
        """(B, H, W) metres -> (B, 1, H, W), within [-1, 1]."""
        return (self.tok.prepare(depth)[0] / self.cfg.depth_scale).clamp(-1, 1)

    @torch.inference_mode()
    def decode(self, ids: torch.Tensor, *, steps: int = 25, sampler: str = "ddpm",
               generator: torch.Generator | int | None = None) -> torch.Tensor:
        """(B, N) ids -> (B, H, W) metres, ``steps`` steps of ``sampler`` (ddpm / ddim)."""
        codes = self.codes(ids)
        if isinstance(generator, int):
            generator = torch.Generator().manual_seed(generator)
        s = self.tok.cfg.image_size
        x = diffusion.sample(lambda x, t: self.unet(x, t, codes), (ids.shape[0], 1, s, s), self.schedule,
                             steps=steps, sampler=sampler, generator=generator)
        return self.tok.to_values(x * self.cfg.depth_scale)


def world_depth(seed: int, indices: range, res: int) -> torch.Tensor:
    """(N, res, res) depth in metres of world scenes ``seed`` at ``indices``."""
    from ..data.world.sample import render_sample

    return torch.from_numpy(np.stack([render_sample(seed, i, res)["depth"] for i in indices]))


def loss_on(model: DepthDiffusionDecoder, x0: torch.Tensor, codes: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Mean squared error of the x0 prediction at t uniform over the training steps (draws from ``g``)."""
    a = model.schedule.alphas_cumprod
    t = torch.randint(0, a.shape[0], (x0.shape[0],), generator=g)
    noise = torch.randn(x0.shape, generator=g)
    ab = a[t][:, None, None, None]
    x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
    return F.mse_loss(model.unet(x_t, t, codes), x0)


def _save(folder: Path, cfg: DecoderConfig, step: int, model: DepthDiffusionDecoder, ema: PatchedUNet,
          opt: torch.optim.Optimizer, losses: list[float]) -> None:
    """Write the checkpoint to a temporary file, fsync, rename: a reader sees the old one or the new one."""
    tensors = {f"model.{k}": v for k, v in model.unet.state_dict().items()}
    tensors.update({f"ema.{k}": v for k, v in ema.state_dict().items()})
    osd = opt.state_dict()
    for i, st in osd["state"].items():
        tensors.update({f"opt.{i}.{k}": torch.as_tensor(v) for k, v in st.items()})
    meta = {"config": json.dumps(asdict(cfg)), "step": str(step), "losses": json.dumps(losses),
            "param_groups": json.dumps(osd["param_groups"])}
    tmp = folder / f".{CHECKPOINT}.tmp-{os.getpid()}"
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=meta)
    fsync_path(tmp)
    os.replace(tmp, folder / CHECKPOINT)
    fsync_path(folder)


def _identity(raw: dict) -> dict:
    """The fields a resumed run must share with the checkpoint: all but how long it runs and how often it saves
    (the learning rate is constant after warmup, so a run may be extended or ended early)."""
    return {k: v for k, v in raw.items() if k not in ("steps", "checkpoint_every")}


def _read(folder: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]] | None:
    path = folder / CHECKPOINT
    if not path.is_file():
        return None
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    return load_file(str(path)), meta


def load_decoder(folder: str | Path) -> DepthDiffusionDecoder:
    """The trained decoder of ``folder`` (its EMA weights), in eval mode."""
    folder = Path(folder)
    found = _read(folder)
    if found is None:
        raise FileNotFoundError(f"{folder}: no {CHECKPOINT} (train one with train_decoder)")
    tensors, meta = found
    raw = json.loads(meta["config"])
    cfg = DecoderConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})
    model = DepthDiffusionDecoder(cfg, ViTVQVAE.from_pretrained(cfg.tokenizer))
    model.unet.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
    return model.eval()


def train_decoder(cfg: DecoderConfig, folder: str | Path, *, progress: bool = True,
                  max_seconds: float | None = None) -> tuple[DepthDiffusionDecoder, list[float]]:
    """Train (or resume the run in ``folder``) to ``cfg.steps``; returns (the EMA decoder, per-step losses).

    A finished run is only loaded; ``cfg.steps`` may differ from the checkpoint's (a run extended, or ended at
    fewer steps than first planned: then it is loaded as it is). ``max_seconds``: stop early (after a checkpoint)
    once this call has used this much CPU time (its process's, so a busy machine does not cut it short); call
    again to go on. A run in ``folder`` with another config (other than ``steps``) is refused."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    model = DepthDiffusionDecoder(cfg, ViTVQVAE.from_pretrained(cfg.tokenizer))
    ema = PatchedUNet(model.unet.cfg)
    ema.load_state_dict(model.unet.state_dict())
    ema.requires_grad_(False)
    opt = torch.optim.AdamW(model.unet.parameters(), lr=cfg.lr, weight_decay=0.0)
    step, losses = 0, []
    found = _read(folder)
    if found is not None:
        tensors, meta = found
        if _identity(json.loads(meta["config"])) != _identity(json.loads(json.dumps(asdict(cfg)))):
            raise ValueError(f"{folder / CHECKPOINT}: a run of another config; use another folder or delete it")
        model.unet.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
        state: dict[int, dict] = {}
        for k, v in tensors.items():
            if k.startswith("opt."):
                _, i, name = k.split(".", 2)
                state.setdefault(int(i), {})[name] = v
        opt.load_state_dict({"state": state, "param_groups": json.loads(meta["param_groups"])})
        step, losses = int(meta["step"]), json.loads(meta["losses"])
    if step >= cfg.steps:
        model.unet.load_state_dict(ema.state_dict())
        return model.eval(), losses
    depth = world_depth(cfg.data_seed, range(cfg.scenes), model.tok.cfg.image_size)
    with torch.no_grad():
        x0 = model.to_model_units(depth)
        codes = model.codes(model.tok.encode(depth))
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.steps, initial=step, desc="diffusion decoder", unit="step", dynamic_ncols=True)
    start = time.process_time()
    model.unet.train()
    while step < cfg.steps:
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        pick = torch.randint(0, cfg.scenes, (cfg.batch_size,), generator=g)
        for group in opt.param_groups:  # linear warmup, then constant
            group["lr"] = cfg.lr * min(1.0, (step + 1) / max(cfg.warmup, 1))
        loss = loss_on(model, x0[pick], codes[pick], g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.unet.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            decay = min(cfg.ema_decay, (1 + step) / (10 + step))  # a short average early on, as EMA warmups do
            for e, p in zip(ema.parameters(), model.unet.parameters(), strict=True):
                e.lerp_(p, 1 - decay)
        step += 1
        losses.append(round(loss.item(), 6))
        if bar is not None:
            bar.update()
            bar.set_postfix(loss=f"{sum(losses[-50:]) / len(losses[-50:]):.4f}")
        late = max_seconds is not None and time.process_time() - start > max_seconds
        if step % cfg.checkpoint_every == 0 or step == cfg.steps or late:
            _save(folder, cfg, step, model, ema, opt, losses)
        if late:
            break
    if bar is not None:
        bar.close()
    model.unet.load_state_dict(ema.state_dict())
    return model.eval(), losses
