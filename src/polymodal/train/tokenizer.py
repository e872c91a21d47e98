"""Tokenizer training through the one training loop: objectives ``"tokenizer"`` (a `VQVAEConfig`) and
``"tokenizer_mlp"`` (an `MLPTokenizerConfig`).

Data: the tokenizer's modality name gives the sample key (``tok_canny_edge@64`` reads ``canny_edge``; an MLP
tokenizer reads its ``name``). Sources, in order:

- ``data.path``: a world dataset folder (``polymodal data synth``); the last ``data.val_samples`` samples are
  held out, training uses the first ``min(data.num_samples, count - val_samples)``. Shards are read on first use
  and kept in memory (the one modality only).
- ``data.source = "world"``: samples rendered on the fly by ``render_sample(data.seed, index, image_size)``
  (deterministic by index) and kept in memory; indices past ``data.num_samples`` are held out.
- any other index-addressed source of `data.indexed.SOURCES` returning the key.

An MLP tokenizer with ``standardize=True`` and no per-channel ``mean``/``std`` gets them fitted on the first
10,000 training vectors before training (`tokenizers.mlp.fit_standardization`); the release folder keeps them.

Every evaluation also writes ``reconstructions/step_XXXXXX.png`` (originals above their reconstructions) and logs
the reconstruction metric (`tokenizers.metrics`), codebook usage and perplexity of the held-out set.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..config import ExperimentConfig
from ..data.indexed import ModalityStore
from ..data.order import micro_positions, sample_index
from ..tokenizers.metrics import metric_sums, num_sums, summarize_metrics
from ..tokenizers.mlp import MLPTokenizer, MLPTokenizerConfig, fit_standardization
from ..tokenizers.quantizers import code_histogram, codebook_usage
from ..tokenizers.vqvae import ViTVQVAE
from . import dist
from .objectives import Objective

PICTURES = 8  # held-out samples in each reconstruction PNG
STANDARDIZE_SAMPLES = 10_000  # training vectors an MLP tokenizer's mean/std are fitted on


def sample_key(name: str) -> str:
    """``tok_depth@64`` -> ``depth``: the sample key a tokenizer of this modality reads."""
    return name.removeprefix("tok_").split("@")[0]


def to_tensor(values: str, arrays: list[np.ndarray]) -> torch.Tensor:
    """World arrays (H, W, C) / (H, W) -> the tokenizer's (B, C, H, W) / (B, H, W) input."""
    t = torch.from_numpy(np.stack(arrays))
    if values in ("rgb", "normal", "feature") and t.ndim == 4:
        t = t.permute(0, 3, 1, 2)
    if values == "semseg":
        t = t.long()
    return t.contiguous()


class TokenizerObjective(Objective):
    """Reconstruction + quantizer loss, averaged over the items of a step (exact across process counts)."""

    def __init__(self, cfg: ExperimentConfig):
        super().__init__(cfg)
        m = cfg.model
        self.is_mlp = isinstance(m, MLPTokenizerConfig)
        self.values = "vector" if self.is_mlp else m.values
        self.key = sample_key(m.name)  # tok_minilm_global reads minilm_global, tok_depth@64 reads depth
        self.store = ModalityStore(cfg, self.key, None if self.is_mlp else m.image_size)
        if self.is_mlp and m.standardize and len(m.mean) == 1:
            self.cfg = self._standardized(cfg)

    def _standardized(self, cfg: ExperimentConfig) -> ExperimentConfig:
        """The experiment with the MLP tokenizer's mean/std fitted on (up to 10,000 of) the training vectors: the
        same on every rank and rerun (the first indices, no randomness); the release folder's config keeps them."""
        n = min(self.store.num_train, STANDARDIZE_SAMPLES)
        x = torch.from_numpy(np.stack([self.store.get(i) for i in range(n)])).float()
        mean, std = fit_standardization(x, l2_normalize=cfg.model.l2_normalize)
        return replace(cfg, model=replace(cfg.model, mean=mean, std=std))

    def build_model(self) -> nn.Module:
        return MLPTokenizer(self.cfg.model) if self.is_mlp else ViTVQVAE(self.cfg.model)

    # ------------------------------------------------------------------------------------------- data

    def _batch(self, indices: list[int]) -> torch.Tensor:
        arrays = [self.store.get(i) for i in indices]
        if self.is_mlp:
            return torch.from_numpy(np.stack(arrays)).float()
        return to_tensor(self.values, arrays)

    def micro_batches(self, step: int, rank: int, world: int) -> list[torch.Tensor]:
        t, seed, n = self.cfg.train, self.cfg.data.seed, self.store.num_train
        return [self._batch([sample_index(seed, n, t.batch_size, step, j) for j in group])
                for group in micro_positions(t.batch_size, t.grad_accum, rank, world)]

    def val_indices(self) -> list[int]:
        start = self.store.val_start
        return list(range(start, start + self.cfg.data.val_samples))

    def val_batches(self, rank: int, world: int, batch_size: int = 32) -> list[torch.Tensor]:
        idx = self.val_indices()[rank::world]
        return [self._batch(idx[k:k + batch_size]) for k in range(0, len(idx), batch_size)]

    # ------------------------------------------------------------------------------------------- loss

    def step_stats(self, micro: list[torch.Tensor]) -> torch.Tensor:
        return torch.tensor([float(sum(b.shape[0] for b in micro))], dtype=torch.float64)

    def num_tokens(self, micro: list[torch.Tensor]) -> int:
        return sum(b.shape[0] for b in micro) * self.cfg.model.num_tokens if self.is_mlp else \
            sum(b.shape[0] for b in micro) * self.cfg.model.grid ** 2

    def loss(self, model, batch: torch.Tensor, stats: torch.Tensor, world: int,
             device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """world * (reconstruction + quantizer loss summed over this micro-batch) / items in the step."""
        out = model(batch.to(device))
        recon, quant = out.recon_loss.sum(), out.quant_loss.sum()
        loss = (recon + quant) * world / max(float(stats[0]), 1.0)
        return loss, torch.stack([recon.detach(), quant.detach()]).double()

    def summarize(self, sums: torch.Tensor, stats: torch.Tensor) -> dict[str, float]:
        n = max(float(stats[0]), 1.0)
        return {"loss": float(sums.sum() / n), "recon": float(sums[0] / n), "quant": float(sums[1] / n)}

    # ------------------------------------------------------------------------------------- evaluation

    @torch.no_grad()
    def on_eval(self, model, step: int, run_dir: Path | None) -> dict[str, float]:
        """Held-out metric, codebook usage and perplexity (summed over ranks); the PNG where run_dir is given."""
        tok = getattr(model, "module", model)
        was_training = tok.training
        tok.eval()
        device = next(tok.parameters()).device
        nclass = 0 if self.is_mlp else self.cfg.model.channels
        metric, hist, shown = None, None, []
        # An MLP tokenizer's Memcodes heads (one per token) have a codebook each: usage is per head, averaged.
        per_head = self.is_mlp and self.cfg.model.quantizer == "memcodes"
        for batch in self.val_batches(*_rank_world()):
            x = batch.to(device)
            out = tok(x)
            recon = tok.to_values(out.pred)
            target = x if self.values != "semseg" else x.long()
            if self.values in ("rgb", "edge") and target.dtype == torch.uint8:
                target = target.float() / 255.0
            s = metric_sums(self.values, recon, target.to(recon.dtype) if self.values != "semseg" else target,
                            num_classes=nclass).cpu()
            h = code_histogram(out.ids.cpu(), tok.vocab_size, per_head=per_head)
            metric = s if metric is None else metric + s
            hist = h if hist is None else hist + h
            if len(shown) < PICTURES:
                shown += list(zip(batch.cpu(), recon.cpu(), strict=True))[:PICTURES - len(shown)]
        if metric is None:
            metric = torch.zeros(num_sums(self.values, num_classes=nclass), dtype=torch.float64)
            hist = code_histogram(torch.zeros(0, tok.num_tokens, dtype=torch.long), tok.vocab_size,
                                  per_head=per_head)
        metric, hist = dist.all_reduce_sum(metric), dist.all_reduce_sum(hist)
        if was_training:
            tok.train()
        if run_dir is not None and shown and self.values not in ("feature", "vector"):
            folder = Path(run_dir) / "reconstructions"
            folder.mkdir(parents=True, exist_ok=True)
            reconstruction_picture(self.key, self.values, shown).save(folder / f"step_{step:06d}.png")
        return {**summarize_metrics(self.values, metric), **codebook_usage(hist)}


def _rank_world() -> tuple[int, int]:
    import torch.distributed as torch_dist

    if torch_dist.is_available() and torch_dist.is_initialized():
        return torch_dist.get_rank(), torch_dist.get_world_size()
    return 0, 1


def _world_format(values: str, x: torch.Tensor) -> np.ndarray:
    """One item of tokenizer input or output -> the world's array layout (for `viz.world.colorize`)."""
    if values in ("rgb", "normal"):
        a = x.permute(1, 2, 0).float().numpy()
        return (np.clip(a, 0, 1) * 255).astype(np.uint8) if values == "rgb" and x.dtype != torch.uint8 else \
            a.astype(np.uint8 if values == "rgb" else np.float32)
    if values == "edge":
        return (x.float().numpy() * (255 if x.dtype != torch.uint8 else 1)).clip(0, 255).astype(np.uint8)
    if values == "semseg":
        return x.numpy().astype(np.uint8)
    return x.float().numpy()


def reconstruction_picture(key: str, values: str, pairs: list[tuple[torch.Tensor, torch.Tensor]]):
    """A PIL image: originals in the top row, their reconstructions below."""
    from PIL import Image

    from ..viz.world import colorize

    name = "canny_edge" if values == "edge" else values
    rows = [np.concatenate([colorize(name, _world_format(values, t)) for t, _ in pairs], axis=1),
            np.concatenate([colorize(name, _world_format(values, r)) for _, r in pairs], axis=1)]
    img = np.concatenate(rows, axis=0)
    scale = max(1, 256 // img.shape[0])
    return Image.fromarray(img).resize((img.shape[1] * scale, img.shape[0] * scale), Image.NEAREST)
