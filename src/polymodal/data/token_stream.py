"""4M training from pre-tokenized shards: ``DataConfig(source="tokens", path=...)`` or a mixture of them.

`train.objectives.FourMObjective` hands its data to a `TokenStream` when ``data.source == "tokens"``: each step
takes this rank's ``grad_accum`` micro-batches from a `data.loader.TokenLoader` (masking in ``data.workers``
processes). The stream's position (batches this rank consumed) goes into every checkpoint (`Progress.data`) and a
resumed run continues with the very batch an uninterrupted run would have used next.

Unlike index-addressed sources, a stream depends on the number of ranks and workers: resume with the same ones
(a mismatch is refused). Validation reads the first ``data.val_samples`` samples (centre crops, fixed masks) of
``data.val_path``, a held-out token dataset, or else of the first training dataset (then not held out).

Token modalities (``tok_rgb@64`` ...) must be registered before the model config names them:
`register_token_modalities` (what a recipe calls with its dataset paths) reads them from ``tokens.json``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..config import ConfigError, ExperimentConfig
from .batch import Batch, collate
from .loader import TokenLoader, stack_raw
from .masking import sample_batch
from .order import VAL_STEP, sample_seed
from .sources import TokenSource, open_source, read_token_shard


def register_token_modalities(*paths: str) -> None:
    """Register the image-token modalities stored in these token datasets (see `TokenSource.register`)."""
    for p in paths:
        if (Path(p) / "tokens.json").exists():
            TokenSource(p)


class TokenStream:
    """This rank's micro-batches from token datasets, with a position recorded in checkpoints."""

    def __init__(self, cfg: ExperimentConfig, mods: dict):
        d = cfg.data
        spec = dict(d.mixture) or ({d.path: 1.0} if d.path else {})
        if not spec:
            raise ConfigError('data.source="tokens" needs data.path (a token dataset) or data.mixture {path: weight}')
        if not any(w > 0 for w in spec.values()):  # the loader draws sources in proportion to the weights
            weights = ", ".join(f"{p}: {float(w)}" for p, w in spec.items())
            raise ConfigError(f"data.mixture: every weight is 0 ({weights}); give a source a weight > 0")
        self.cfg, self.mods = cfg, mods
        self.sources = [open_source(p, text_tokenizer=d.text_tokenizer, on_bad_shard=d.on_bad_shard) for p in spec]
        self.weights = [float(w) for w in spec.values()]
        self.loader: TokenLoader | None = None
        self.resume: dict | None = None

    def micro_batches(self, step: int, rank: int, world: int) -> list[Batch]:
        t, d = self.cfg.train, self.cfg.data
        if t.batch_size % (world * t.grad_accum):
            raise ConfigError(f"train.batch_size {t.batch_size} must divide into {world} ranks x {t.grad_accum} "
                             "accumulation steps")
        if self.loader is None:
            position = self.resume["batches"] if self.resume else step * t.grad_accum
            self.loader = TokenLoader(self.sources, weights=self.weights, mods=self.mods, masking=self.cfg.masking,
                                      batch_size=t.batch_size // world // t.grad_accum, seed=d.seed, rank=rank,
                                      world=world, workers=d.workers, shuffle=d.shuffle_buffer, position=position)
            if self.resume:
                self.loader.check_state(self.resume)
        return self.loader.take(t.grad_accum)

    def state(self) -> dict:
        if self.loader is None:
            return dict(self.resume or {"batches": 0})
        return self.loader.state_dict()

    def load_state(self, state: dict) -> None:
        # data.workers may change on resume (train.resume.RESUMABLE) for index-addressed data, not for a token
        # stream: its readers are the workers' slots. Refused here, before the run folder is touched (0 workers read
        # as 1).
        recorded, now = state.get("workers"), max(self.cfg.data.workers, 1)
        if recorded is not None and recorded != now:
            raise ConfigError(f"data.workers: the checkpoint's token stream was read by {recorded} worker"
                              f"{'s' if recorded > 1 else ''} per rank, this run asks {now}; resume with "
                              f"data.workers={recorded} (its batch order depends on it)")
        self.resume = dict(state)
        if self.loader is not None:  # a loader already running elsewhere: restart it at the recorded position
            self.loader.close()
            self.loader = None

    def val_batches(self, rank: int, world: int, batch_size: int = 32) -> list[Batch]:
        d = self.cfg.data
        first = next((s for s in self.sources if isinstance(s, TokenSource)), None)
        if d.val_path:
            first = TokenSource(d.val_path)
        if first is None or d.val_samples <= 0:
            return []
        samples = []
        for shard in first.shards:
            for s in read_token_shard(shard):
                samples.append({n: s[n][0].astype("int64") for n in first.names if n in s})
                if len(samples) == d.val_samples:
                    break
            if len(samples) == d.val_samples:
                break
        chunk = d.mask_chunk
        parts = []
        for k in range(0, len(samples), chunk):
            if (k // chunk) % world != rank:
                continue
            raw, lengths = stack_raw(samples[k:k + chunk], self.mods)
            g = torch.Generator().manual_seed(sample_seed(self.cfg.train.seed, VAL_STEP, k // chunk))
            parts.append(sample_batch(raw, self.mods, self.cfg.masking, generator=g, lengths=lengths))
        per = max(1, batch_size // chunk)
        return [collate(parts[k:k + per]) for k in range(0, len(parts), per)]
