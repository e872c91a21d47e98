"""Objectives: what the one training loop trains. The 4M masked-modeling objective lives here; tokenizer
objectives register themselves the same way (`register_objective`). An objective provides:

- ``build_model() -> nn.Module`` (single-device code; the loop parallelizes it);
- ``micro_batches(step, rank, world) -> list`` this rank's micro-batches of a step, deterministic in
  (seed, step, position) and independent of the number of ranks; ``val_batches(rank, world) -> list``;
- ``step_stats(micro) -> (S,) float64`` normalizers of the step (e.g. target tokens per modality), summed over
  ranks by the loop before any forward pass; ``num_tokens(micro) -> int`` for throughput and token schedules;
- ``loss(model, batch, stats, world, device) -> (loss, sums)``: this micro-batch's share of the step loss (already
  divided by the global normalizers and multiplied by ``world``, so DDP's gradient average equals the
  single-process gradient) and a float64 vector of sums for logging;
- ``summarize(sums, stats) -> {"loss": ..., name: ...}`` from the rank-summed vectors;
- ``export(state_dict, path)``: the release folder (``config.json`` + ``model.safetensors``).

Exactness across process counts: sample j of global step s is the same sample with the same masks whatever the
number of ranks (it is masked with its chunk of ``data.mask_chunk`` neighbours by a generator seeded by
(seed, s, chunk)), and the loss is normalized by the *global*
number of target tokens of the step, so N ranks x B/N samples compute the same gradient as 1 rank x B samples.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np
import torch
from torch import nn

from ..config import ExperimentConfig
from ..data.batch import Batch, collate
from ..data.masking import sample_batch
from ..modalities import Kind
from ..model import FourM
from ..model.loss import modality_losses

VAL_STEP = 2**31 - 1  # the masking "step" of validation samples: no training step uses it
OBJECTIVES: dict[str, Callable[[ExperimentConfig], object]] = {}
# Index-addressed data sources: name -> (fn(seed, index) -> {modality: np.ndarray}).
SOURCES: dict[str, Callable[[int, int], dict[str, np.ndarray]]] = {}


def register_objective(name: str):
    def deco(cls):
        OBJECTIVES[name] = cls
        return cls
    return deco


def register_source(name: str, fn: Callable[[int, int], dict[str, np.ndarray]]) -> None:
    SOURCES[name] = fn


def _synthetic_source():
    from ..data import synthetic

    return synthetic.sample


def get_source(name: str) -> Callable[[int, int], dict[str, np.ndarray]]:
    if name == "synthetic_tokens" and name not in SOURCES:
        register_source(name, _synthetic_source())
    if name not in SOURCES:
        raise KeyError(f"unknown data source {name!r}; registered: {', '.join(SOURCES) or 'none'}")
    return SOURCES[name]


def make_objective(cfg: ExperimentConfig):
    if cfg.objective not in OBJECTIVES:
        from . import tokenizer  # noqa: F401 - registers the tokenizer objectives
    if cfg.objective not in OBJECTIVES:
        raise KeyError(f"unknown objective {cfg.objective!r}; registered: {', '.join(OBJECTIVES)}")
    return OBJECTIVES[cfg.objective](cfg)


def sample_seed(seed: int, step: int, j: int) -> int:
    """A generator seed for chunk j of a step; distinct, stable, independent of ranks."""
    return int(np.random.SeedSequence([seed, step, j]).generate_state(1, dtype=np.uint64)[0] >> 1)


@lru_cache(maxsize=4)
def _epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch, 7]).permutation(n)


@register_objective("fourm")
class FourMObjective:
    """4M's multimodal masked modeling on an index-addressed source with the Dirichlet masking sampler."""

    def __init__(self, cfg: ExperimentConfig):
        self.cfg = cfg
        self.mods = {n: cfg.model.modality(n) for n in dict.fromkeys(cfg.model.domains_in + cfg.model.domains_out)}
        self.stream = None
        if cfg.data.source == "tokens":  # pre-tokenized shards through the streaming loader (train.token_data)
            from .token_data import TokenStream

            self.stream = TokenStream(cfg, self.mods)
        else:
            self.source = get_source(cfg.data.source)
        t = cfg.train
        if t.batch_size % t.grad_accum:
            raise ValueError(f"train.batch_size {t.batch_size} is not divisible by train.grad_accum {t.grad_accum}")

    def build_model(self) -> nn.Module:
        return FourM(self.cfg.model)

    # ------------------------------------------------------------------------------------------- data

    def _masked(self, indices: list[int], mask_seed: int) -> Batch:
        """Raw samples ``indices`` masked together by one sampler call seeded with ``mask_seed``."""
        raws = [self.source(self.cfg.data.seed, i) for i in indices]
        raw = {k: torch.from_numpy(np.stack([np.asarray(r[k]) for r in raws])) for k in raws[0] if k in self.mods}
        g = torch.Generator().manual_seed(mask_seed)
        return sample_batch(raw, {k: self.mods[k] for k in raw}, self.cfg.masking, generator=g)

    def sample_index(self, step: int, j: int) -> int:
        n = self.cfg.data.num_samples
        flat = step * self.cfg.train.batch_size + j
        return int(_epoch_order(self.cfg.data.seed, flat // n, n)[flat % n])

    def positions(self, rank: int, world: int) -> list[list[int]]:
        """This rank's share of a step's global batch positions, split into micro-batches."""
        t, chunk = self.cfg.train, self.cfg.data.mask_chunk
        if t.batch_size % (world * t.grad_accum):
            raise ValueError(f"train.batch_size {t.batch_size} must divide into {world} ranks x "
                             f"{t.grad_accum} accumulation steps")
        per_rank = t.batch_size // world
        m = per_rank // t.grad_accum
        if m % chunk:
            raise ValueError(f"a micro-batch of {m} samples ({t.batch_size} / {world} ranks / {t.grad_accum} "
                             f"accumulation steps) is not a multiple of data.mask_chunk={chunk}; set "
                             f"data.mask_chunk to a divisor of {m}")
        mine = list(range(rank * per_rank, (rank + 1) * per_rank))
        return [mine[i:i + m] for i in range(0, per_rank, m)]

    def data_state(self) -> dict | None:
        """The streaming loader's position (checkpointed by the loop); None for index-addressed sources."""
        return self.stream.state() if self.stream is not None else None

    def load_data_state(self, state: dict) -> None:
        if self.stream is not None:
            self.stream.load_state(state)

    def micro_batches(self, step: int, rank: int, world: int) -> list[Batch]:
        if self.stream is not None:
            return self.stream.micro_batches(step, rank, world)
        seed, chunk = self.cfg.train.seed, self.cfg.data.mask_chunk
        out = []
        for group in self.positions(rank, world):
            # Chunks start at global positions that are multiples of mask_chunk, whatever the rank split.
            parts = [self._masked([self.sample_index(step, j) for j in group[k:k + chunk]],
                                  sample_seed(seed, step, group[k] // chunk)) for k in range(0, len(group), chunk)]
            out.append(collate(parts))
        return out

    def val_batches(self, rank: int, world: int, batch_size: int = 32) -> list[Batch]:
        """Held-out samples (indices past num_samples) with fixed masks, split across ranks by chunks."""
        if self.stream is not None:
            return self.stream.val_batches(rank, world, batch_size)
        d = self.cfg.data
        idx = list(range(d.num_samples, d.num_samples + d.val_samples))
        chunks = [idx[k:k + d.mask_chunk] for k in range(0, len(idx), d.mask_chunk)][rank::world]
        parts = [self._masked(c, sample_seed(self.cfg.train.seed, VAL_STEP, c[0])) for c in chunks]
        per = max(1, batch_size // d.mask_chunk)
        return [collate(parts[k:k + per]) for k in range(0, len(parts), per)]

    # ------------------------------------------------------------------------------------------- loss

    def target_counts(self, batch: Batch) -> torch.Tensor:
        """(M,) float: predicted tokens per output modality (in ``domains_out`` order) in ``batch``."""
        counts = []
        for name in self.cfg.model.domains_out:
            if name not in batch:
                counts.append(0)
                continue
            t = batch[name].is_target
            if self.mods[name].kind is Kind.SEQUENCE:
                counts.append(int((t[:, :-1] & t[:, 1:]).sum()))
            else:
                counts.append(int(t.sum()))
        return torch.tensor(counts, dtype=torch.float64)

    def step_stats(self, micro: list[Batch]) -> torch.Tensor:
        return sum(self.target_counts(b) for b in micro)

    def num_tokens(self, micro: list[Batch]) -> int:
        return sum(int(v.is_input.sum() + v.is_target.sum()) for b in micro for v in b.values())

    def summarize(self, sums: torch.Tensor, counts: torch.Tensor) -> dict[str, float]:
        per = {n: float(sums[i] / counts[i]) for i, n in enumerate(self.cfg.model.domains_out) if counts[i] > 0}
        return {"loss": sum(per.values()) / max(len(per), 1), **per}

    def loss(self, model, batch: Batch, global_counts: torch.Tensor, world: int,
             device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """This micro-batch's share of the step's loss, and its per-modality CE sums (M,) for logging.

        loss = world * sum_m (CE sum of m here) / (m's tokens in the whole step) / (modalities present), which
        makes DDP's gradient average equal the single-process gradient of the modality-averaged 4M loss.
        """
        outputs = model(batch.to(device), check=False)
        names = self.cfg.model.domains_out
        parts = modality_losses(outputs)
        present = (global_counts > 0).sum().clamp(min=1)
        device = torch.device(device)
        sums = torch.zeros(len(names), dtype=torch.float64, device=device)
        loss = torch.zeros((), device=device)
        for i, name in enumerate(names):
            if name in parts:
                s, _ = parts[name]
                loss = loss + s / max(float(global_counts[i]), 1.0)
                sums[i] = s.detach().double()
        return loss * world / float(present), sums

    def export(self, model_state: dict[str, torch.Tensor], path) -> None:
        model = FourM(self.cfg.model)
        model.load_state_dict(model_state)
        model.save_pretrained(path)
