"""Objectives: what the one training loop trains. `Objective` is the contract; `FourMObjective` is 4M's masked
modeling; the tokenizer objectives are in `train.tokenizer`. `config.OBJECTIVES` is the one table of them
(name -> model config class and objective class), resolved by `make_objective`.

Exactness across process counts: sample j of global step s is the same sample with the same masks whatever the
number of ranks (`data.order`: it is masked with its chunk of ``data.mask_chunk`` neighbours by a generator seeded
by (seed, s, chunk)), and the loss is normalized by the *global* number of target tokens of the step, so N ranks x
B/N samples compute the same gradient as 1 rank x B samples.
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import config as config_lib
from ..config import ExperimentConfig
from ..data.batch import Batch, collate
from ..data.indexed import get_source
from ..data.masking import build_mixture, sample_batch
from ..data.order import VAL_STEP, check_accumulation, micro_positions, sample_index, sample_seed
from ..modalities import Kind
from ..model import FourM
from ..model.loss import modality_losses


class Objective(abc.ABC):
    """What the training loop asks of an objective. The abstract methods are required; the hooks below them do
    nothing unless an objective overrides them. ``cfg`` may be rewritten by the constructor (fitted statistics);
    the loop saves the original.

    A micro-batch is whatever `micro_batches` returns and `loss` takes (a `Batch`, a tensor). The loop calls, per
    step: `micro_batches` -> `step_stats` and `num_tokens` (summed over ranks) -> per micro-batch `loss` and its
    backward -> `summarize` of the rank-summed sums.
    """

    def __init__(self, cfg: ExperimentConfig):
        self.cfg = cfg
        check_accumulation(cfg.train.batch_size, cfg.train.grad_accum)

    @abc.abstractmethod
    def build_model(self) -> nn.Module:
        """A fresh model (single-device code: the loop parallelizes it)."""

    @abc.abstractmethod
    def micro_batches(self, step: int, rank: int, world: int) -> list:
        """This rank's ``train.grad_accum`` micro-batches of ``step``: deterministic in (seed, step, position) and,
        for index-addressed data, independent of the number of ranks."""

    @abc.abstractmethod
    def val_batches(self, rank: int, world: int, batch_size: int = 32) -> list:
        """This rank's share of the held-out micro-batches (the same every call)."""

    @abc.abstractmethod
    def step_stats(self, micro: list) -> torch.Tensor:
        """(S,) float64 normalizers of these micro-batches (e.g. target tokens per modality); the loop sums them
        over ranks before any forward pass."""

    @abc.abstractmethod
    def num_tokens(self, micro: list) -> int:
        """Tokens in these micro-batches, for throughput and token-based schedules."""

    @abc.abstractmethod
    def loss(self, model: nn.Module, batch: Any, stats: torch.Tensor, world: int,
             device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, sums): this micro-batch's share of the step loss (divided by the step's global normalizers
        ``stats`` and multiplied by ``world``, so DDP's gradient average equals the single-process gradient), and a
        float64 vector of sums for logging, on ``device``."""

    @abc.abstractmethod
    def summarize(self, sums: torch.Tensor, stats: torch.Tensor) -> dict[str, float]:
        """``{"loss": ..., name: ...}`` from the rank-summed ``sums`` and ``stats`` of a step or of validation."""

    # ---------------------------------------------------------------------------------- hooks (no-ops)

    def data_state(self) -> dict | None:
        """The data position to checkpoint (a streaming loader's); None: data is index-addressed."""
        return None

    def load_data_state(self, state: dict) -> None:
        """Continue the data where a checkpoint's `data_state` stopped."""
        return None

    def on_eval(self, model: nn.Module, step: int, run_dir: Path | None) -> dict[str, float]:
        """Metrics beyond the validation loss, logged as ``val/<name>``; files under ``run_dir`` (rank 0 only:
        None on the others). Called on every rank at each evaluation."""
        return {}

    def export(self, model_state: dict[str, torch.Tensor], path: Path) -> None:
        """Write the release folder (``config.json`` + ``model.safetensors``) from the full state dict."""
        model = self.build_model()
        model.load_state_dict(model_state)
        model.save_pretrained(path)


def objective_class(name: str) -> type[Objective]:
    """The objective class `config.OBJECTIVES` names for ``name``."""
    cls = config_lib.import_path(config_lib.objective_spec(name).objective)
    if not (isinstance(cls, type) and issubclass(cls, Objective)):
        raise TypeError(f"objective {name!r}: {cls!r} is not a polymodal.train.objectives.Objective")
    return cls


def make_objective(cfg: ExperimentConfig) -> Objective:
    return objective_class(cfg.objective)(cfg)


def _check_targets(masking: config_lib.MaskingConfig, mods: dict) -> None:
    """Refuse, before the run starts, a masking under which no token is ever a target: the loss would have no
    gradient (backward fails at the first step). Names the field; an unknown modality in the masking's alphas
    is refused here too (`build_mixture`)."""
    if masking.num_target_tokens < 1:
        raise config_lib.ConfigError(f"masking.num_target_tokens: got {masking.num_target_tokens}, but 4M training "
                                     "needs tokens to predict (an integer >= 1)")
    mixture = build_mixture(masking, list(mods.values()))
    if not (mixture.target_alphas > 0).any():
        raise config_lib.ConfigError(f"masking.target_alphas: every target alpha of {', '.join(mods)} is 0: no "
                                     "token would ever be a target")


class FourMObjective(Objective):
    """4M's multimodal masked modeling on an index-addressed source with the Dirichlet masking sampler, or on
    pre-tokenized shards (``data.source="tokens"``, `data.token_stream`)."""

    def __init__(self, cfg: ExperimentConfig):
        super().__init__(cfg)
        self.mods = {n: cfg.model.modality(n) for n in dict.fromkeys(cfg.model.domains_in + cfg.model.domains_out)}
        _check_targets(cfg.masking, self.mods)
        self.stream = None
        if cfg.data.source == "tokens":
            from ..data.token_stream import TokenStream

            self.stream = TokenStream(cfg, self.mods)
        else:
            self.source = get_source(cfg.data.source)

    def build_model(self) -> nn.Module:
        return FourM(self.cfg.model)

    # ------------------------------------------------------------------------------------------- data

    def _masked(self, indices: list[int], mask_seed: int) -> Batch:
        """Raw samples ``indices`` masked together by one sampler call seeded with ``mask_seed``."""
        raws = [self.source(self.cfg.data.seed, i) for i in indices]
        raw = {k: torch.from_numpy(np.stack([np.asarray(r[k]) for r in raws])) for k in raws[0] if k in self.mods}
        g = torch.Generator().manual_seed(mask_seed)
        return sample_batch(raw, {k: self.mods[k] for k in raw}, self.cfg.masking, generator=g)

    def positions(self, rank: int, world: int) -> list[list[int]]:
        """This rank's share of a step's global batch positions, split into micro-batches of whole mask chunks."""
        t, chunk = self.cfg.train, self.cfg.data.mask_chunk
        out = micro_positions(t.batch_size, t.grad_accum, rank, world)
        m = len(out[0])
        if m % chunk:
            raise config_lib.ConfigError(f"a micro-batch of {m} samples ({t.batch_size} / {world} ranks / "
                                         f"{t.grad_accum} accumulation steps) is not a multiple of data.mask_chunk="
                                         f"{chunk}; set data.mask_chunk to a divisor of {m}")
        return out

    def data_state(self) -> dict | None:
        return self.stream.state() if self.stream is not None else None

    def load_data_state(self, state: dict) -> None:
        if self.stream is not None:
            self.stream.load_state(state)

    def micro_batches(self, step: int, rank: int, world: int) -> list[Batch]:
        if self.stream is not None:
            return self.stream.micro_batches(step, rank, world)
        t, d = self.cfg.train, self.cfg.data
        chunk = d.mask_chunk
        out = []
        for group in self.positions(rank, world):
            # Chunks start at global positions that are multiples of mask_chunk, whatever the rank split.
            parts = [self._masked([sample_index(d.seed, d.num_samples, t.batch_size, step, j)
                                   for j in group[k:k + chunk]], sample_seed(t.seed, step, group[k] // chunk))
                     for k in range(0, len(group), chunk)]
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
        makes DDP's gradient average equal the single-process gradient of the modality-averaged 4M loss. With
        ``train.fused_loss`` the model returns its last hidden states and the loss projects them fused with the
        cross-entropy (`model.loss.linear_cross_entropy`): the same values without (n, V) logits.
        """
        fused = self.cfg.train.fused_loss
        outputs = model(batch.to(device), check=False, logits=not fused)
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
