"""The diffusion samplers of 4M's DiVAE decoders: noise schedule, DDPM and DDIM steps, the sampling loop.

What the reference computes (its own copies of diffusers' schedulers, ``fourm/vq/scheduling``), re-derived:

- Betas: ``linear`` (1e-4 .. 0.02 over 1000 steps, float32) or ``squaredcos_cap_v2`` (the cosine schedule),
  then **zero-terminal-SNR rescaling** (Lin et al. 2023): sqrt(alpha_bar) is shifted so that its last value is 0
  and scaled so that its first value is unchanged; so alpha_bar[T-1] = 0 and the last step sees pure noise.
- The model predicts x0 (``sample``), eps (``epsilon``) or v (``v_prediction``); x0 is then clipped by
  **dynamic thresholding** (Saharia et al. 2022): s = the 99.5th percentile of |x0| per sample, clamped to
  [1, sample_max_value], x0 -> clamp(x0, -s, s) / s. With the reference's sample_max_value = 1 this is exactly
  clipping to [-1, 1], which is what runs here then (no quantile).
- Timesteps. DDIM: **trailing** spacing, t = 999, 999 - r, ... with r = 1000 // steps (a 1000 that steps does not
  divide gives one step more than asked, as in the reference). DDPM: the reference's DDPM scheduler ignores the
  spacing its pipeline asks for and uses **leading** spacing, t = (steps - 1) r, ..., r, 0; this module does the
  same so that decodes match it (``DDPM_SPACING``). Either way the previous timestep of t is t - r (-1: the end).
- Draws (the reference's order): the initial noise ``randn((B, C, S, S), generator)``, then per DDPM step with
  t > 0 one ``randn`` of the sample's shape (DDIM draws only with eta > 0).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

SAMPLERS = ("ddpm", "ddim")
BETA_SCHEDULES = ("linear", "squaredcos_cap_v2")
PREDICTIONS = ("sample", "epsilon", "v_prediction")
SPACINGS = ("leading", "trailing", "linspace")
DDPM_SPACING = "leading"  # what the reference's DDPM scheduler does, whatever its pipeline asks
DDIM_SPACING = "trailing"


def linear_betas(num_train_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    return torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=torch.float32)


def cosine_betas(num_train_timesteps: int = 1000, max_beta: float = 0.999) -> torch.Tensor:
    """The "squaredcos_cap_v2" schedule: alpha_bar(s) = cos^2((s + 0.008) / 1.008 * pi/2), s in [0, 1]."""
    def alpha_bar(s: float) -> float:
        return math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2

    n = num_train_timesteps
    return torch.tensor([min(1 - alpha_bar((i + 1) / n) / alpha_bar(i / n), max_beta) for i in range(n)],
                        dtype=torch.float32)


def rescale_zero_terminal_snr(betas: torch.Tensor) -> torch.Tensor:
    """Betas whose alpha_bar ends at exactly 0 (SNR 0 at the last step), with alpha_bar[0] unchanged."""
    root = torch.cumprod(1 - betas, 0).sqrt()
    first, last = root[0].clone(), root[-1].clone()
    root = (root - last) * (first / (first - last))
    alpha_bar = root**2
    alphas = torch.cat([alpha_bar[:1], alpha_bar[1:] / alpha_bar[:-1]])
    return 1 - alphas


@dataclass(frozen=True)
class Schedule:
    """A noise schedule and how the model's output reads. ``alphas_cumprod`` (T,) float32."""

    alphas_cumprod: torch.Tensor
    prediction_type: str = "sample"
    thresholding: bool = True
    clip_sample: bool = False
    dynamic_thresholding_ratio: float = 0.995
    sample_max_value: float = 1.0

    @classmethod
    def from_config(cls, *, num_train_timesteps: int = 1000, beta_schedule: str = "linear",
                    zero_terminal_snr: bool = True, prediction_type: str = "sample", thresholding: bool = True,
                    clip_sample: bool = False) -> Schedule:
        """The schedule a reference DiVAE config describes (its fields have the same names)."""
        if beta_schedule not in BETA_SCHEDULES:
            raise ValueError(f"beta_schedule {beta_schedule!r} is not supported; choose one of {BETA_SCHEDULES}")
        if prediction_type not in PREDICTIONS:
            raise ValueError(f"prediction_type {prediction_type!r} is not one of {PREDICTIONS}")
        betas = (linear_betas if beta_schedule == "linear" else cosine_betas)(num_train_timesteps)
        if zero_terminal_snr:
            betas = rescale_zero_terminal_snr(betas)
        return cls(torch.cumprod(1 - betas, 0), prediction_type, thresholding, clip_sample)

    @property
    def num_train_timesteps(self) -> int:
        return self.alphas_cumprod.shape[0]

    def alpha_bar(self, t: int) -> float:
        """alpha_bar at timestep t; 1 before the start (t < 0)."""
        return float(self.alphas_cumprod[t]) if t >= 0 else 1.0

    def predict_x0(self, model_output: torch.Tensor, t: int, sample: torch.Tensor) -> torch.Tensor:
        """The clean-image estimate from the model's output at timestep t, thresholded or clipped."""
        a = self.alpha_bar(t)
        if self.prediction_type == "sample":
            x0 = model_output
        elif self.prediction_type == "epsilon":
            x0 = (sample - (1 - a) ** 0.5 * model_output) / a**0.5
        else:
            x0 = a**0.5 * sample - (1 - a) ** 0.5 * model_output
        if self.thresholding:
            return dynamic_threshold(x0, self.dynamic_thresholding_ratio, self.sample_max_value)
        return x0.clamp(-1, 1) if self.clip_sample else x0


def dynamic_threshold(x0: torch.Tensor, ratio: float = 0.995, max_value: float = 1.0) -> torch.Tensor:
    """Per sample: s = quantile(|x0|, ratio) clamped to [1, max_value]; x0 -> clamp(x0, -s, s) / s."""
    if max_value <= 1.0:  # s is then 1 whatever the quantile: plain clipping
        return x0.clamp(-1.0, 1.0)
    flat = x0.float().flatten(1)
    s = torch.quantile(flat.abs(), ratio, dim=1).clamp(1.0, max_value)[:, None]
    return (torch.maximum(torch.minimum(flat, s), -s) / s).reshape(x0.shape).to(x0.dtype)


def timesteps(steps: int, num_train_timesteps: int = 1000, spacing: str = "trailing") -> list[int]:
    """The timesteps of a ``steps``-step decode, in the order they run (descending)."""
    if not 1 <= steps <= num_train_timesteps:
        raise ValueError(f"steps must be between 1 and {num_train_timesteps}, got {steps}")
    ratio = num_train_timesteps // steps
    if spacing == "leading":
        ts = np.round(np.arange(steps) * ratio)[::-1]
    elif spacing == "trailing":
        ts = np.round(np.arange(num_train_timesteps, 0, -ratio)) - 1
    elif spacing == "linspace":
        ts = np.round(np.linspace(num_train_timesteps, 1, steps)) - 1
    else:
        raise ValueError(f"spacing {spacing!r} is not one of {SPACINGS}")
    return [int(t) for t in ts]


def ddpm_step(schedule: Schedule, x0: torch.Tensor, t: int, prev_t: int, sample: torch.Tensor,
              generator: torch.Generator | None) -> torch.Tensor:
    """x_t -> x_prev: the posterior mean of q(x_prev | x_t, x0) plus its ("fixed small") std times fresh noise."""
    a_t, a_prev = schedule.alpha_bar(t), schedule.alpha_bar(prev_t)
    alpha = a_t / a_prev  # the step's own alpha
    mean = (a_prev**0.5 * (1 - alpha) / (1 - a_t)) * x0 + (alpha**0.5 * (1 - a_prev) / (1 - a_t)) * sample
    if t <= 0:
        return mean
    variance = max((1 - a_prev) / (1 - a_t) * (1 - alpha), 1e-20)
    noise = torch.randn(sample.shape, generator=generator, dtype=sample.dtype).to(sample.device)
    return mean + variance**0.5 * noise


def ddim_step(schedule: Schedule, x0: torch.Tensor, t: int, prev_t: int, sample: torch.Tensor,
              generator: torch.Generator | None, eta: float = 0.0) -> torch.Tensor:
    """x_t -> x_prev along the DDIM path (Song et al. 2021, eq. 12); eta = 0 is deterministic."""
    a_t, a_prev = schedule.alpha_bar(t), schedule.alpha_bar(prev_t)
    eps = (sample - a_t**0.5 * x0) / (1 - a_t) ** 0.5  # the noise the (thresholded) x0 implies
    std = eta * ((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)) ** 0.5
    prev = a_prev**0.5 * x0 + max(1 - a_prev - std**2, 0.0) ** 0.5 * eps
    if eta > 0:
        prev = prev + std * torch.randn(sample.shape, generator=generator, dtype=sample.dtype).to(sample.device)
    return prev


def sample(denoise: Callable[[torch.Tensor, int], torch.Tensor], shape: tuple[int, ...], schedule: Schedule, *,
           steps: int, sampler: str = "ddpm", eta: float = 0.0, generator: torch.Generator | None = None,
           device: torch.device | str = "cpu", progress: bool = False) -> torch.Tensor:
    """Run the reverse process from pure noise: ``denoise(x_t, t) -> model output`` -> (shape) x0 sample.

    ``generator`` (CPU) draws the initial noise then each step's noise, in the reference's order."""
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler {sampler!r} is not one of {SAMPLERS}")
    spacing = DDPM_SPACING if sampler == "ddpm" else DDIM_SPACING
    ts = timesteps(steps, schedule.num_train_timesteps, spacing)
    ratio = schedule.num_train_timesteps // steps
    x = torch.randn(shape, generator=generator, dtype=torch.float32).to(device)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(ts), desc=f"{sampler} decode", unit="step")
    for t in ts:
        x0 = schedule.predict_x0(denoise(x, t).float(), t, x)
        if sampler == "ddpm":
            x = ddpm_step(schedule, x0, t, t - ratio, x, generator)
        else:
            x = ddim_step(schedule, x0, t, t - ratio, x, generator, eta)
        if bar is not None:
            bar.update()
    if bar is not None:
        bar.close()
    return x
