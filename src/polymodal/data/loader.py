"""The streaming token loader: a weighted mixture of sources -> masked `Batch`es, in worker processes, resumable.

    loader = TokenLoader([TokenSource("tok/world"), TextSource("captions.txt", "tok/text")], weights=[0.8, 0.2],
                         mods=mods, masking=MaskingConfig(), batch_size=64, seed=0, rank=0, world=1, workers=2)
    for batch in loader: ...                      # epoch-less: it never ends
    state = loader.state_dict()                   # {"batches": ..., ...}: saved in the training checkpoint
    TokenLoader(..., position=state["batches"])   # continues with the same next batch

Reader slots: worker ``w`` of rank ``r`` reads slot ``r * workers + w`` of ``world * workers`` (`sources`), so
ranks and workers never read the same sample and together read each one once per pass. A batch is ``batch_size``
samples of one slot; each sample's source is drawn by the mixture ``weights`` (per batch, from a generator seeded
by ``(seed, slot, batch)``), so sources with different modality sets mix within a batch: a modality a sample lacks
is absent for the masking sampler (a grid gets ``lengths`` 0, a sequence is all [PAD]), and every batch holds all
of ``mods``. Masking (`masking.sample_batch`) runs in the worker, over ``mask_group`` samples at once (one sampler
call costs about the same for 64 samples as for 128: grouping doubles the throughput), with a generator seeded by
``(seed, slot, group)``; the loader cuts each group into batches (sequences trimmed to the columns they use).

Order and resume: a worker yields its groups in order and PyTorch's DataLoader takes one from each worker in turn,
so the rank's group ``u`` is worker ``u % workers``'s group ``u // workers`` and batch ``i`` is row ``i % group`` of
group ``i // group``. A loader started at ``position`` P rotates the workers (worker ``w`` plays slot
``(w + P // group) % workers``) and each skips the groups it had made (reading their samples again without masking
them: cheap, and passes already completed are skipped by arithmetic); the group under way is masked again and its
first rows dropped, so the next batch is the one an uninterrupted loader would have given. ``workers=0`` reads in
the calling process and gives the same batches as ``workers=1``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from itertools import count, islice

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from ..config import ConfigError, MaskingConfig
from ..modalities import Kind, Modality
from .batch import Batch, ModalityTokens
from .masking import sample_batch
from .world.store import ShardError


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence(list(parts)).generate_state(1, dtype=np.uint64)[0] >> 1)


def _worker_message(message: str) -> str:
    """A worker's error as its own one line: torch re-raises it as "Caught ShardError in DataLoader worker process
    0.\nOriginal Traceback ...\n<module>.ShardError: shard ..." (the message naming the shard is the last line)."""
    if not message.startswith("Caught "):
        return message
    last = message.strip().splitlines()[-1]
    return last.split("ShardError: ", 1)[-1]


def batch_sources(seed: int, slot: int, j: int, batch_size: int, weights: np.ndarray) -> np.ndarray:
    """(batch_size,) source index of each sample of batch ``j`` of ``slot``."""
    if len(weights) == 1:
        return np.zeros(batch_size, dtype=np.int64)
    return np.random.default_rng([seed, slot, j, 3]).choice(len(weights), size=batch_size, p=weights)


def stack_raw(samples: Sequence[dict], mods: Mapping[str, Modality]) -> tuple[dict, dict]:
    """Samples -> (raw, lengths) for `sample_batch`: (B, N) grids and (B, max_length) sequences, int64; a sample
    lacking a grid gets ``lengths`` 0 (and zeros), one lacking a sequence an all-[PAD] row."""
    b = len(samples)
    raw, lengths = {}, {}
    for name, mod in mods.items():
        if mod.kind not in (Kind.IMAGE_TOKENS, Kind.SEQUENCE):
            raise ValueError(f"{name}: the token loader reads image tokens and sequences, not {mod.kind.value}")
        n = mod.num_tokens
        arr = np.zeros((b, n), dtype=np.int64)
        have = np.zeros(b, dtype=bool)
        for i, s in enumerate(samples):
            v = s.get(name)
            if v is None:
                continue
            if mod.kind is Kind.IMAGE_TOKENS and v.shape[0] != n:
                raise ValueError(f"{name}: a sample holds {v.shape[0]} tokens, the modality has {n}")
            m = min(v.shape[0], n)
            arr[i, :m] = v[:m]
            have[i] = True
        raw[name] = torch.from_numpy(arr)
        if mod.kind is Kind.IMAGE_TOKENS and not have.all():
            lengths[name] = torch.from_numpy(have.astype(np.int64) * n)
    return raw, lengths


class _Stream(IterableDataset):
    """Batches of one reader slot (see the module docstring); built in each worker from picklable settings."""

    def __init__(self, sources, weights, mods, masking, batch_size, seed, rank, world, workers, shuffle, position,
                 group):
        super().__init__()
        self.group = group
        self.sources, self.weights, self.mods, self.masking = sources, weights, mods, masking
        self.batch_size, self.seed, self.rank, self.world = batch_size, seed, rank, world
        self.workers, self.shuffle, self.position = max(workers, 1), shuffle, position

    def __iter__(self) -> Iterator[Batch]:
        """Masked groups of ``group * batch_size`` samples: one item per group (a quarter of the inter-process
        traffic of one per batch); `TokenLoader` cuts them into batches."""
        info = get_worker_info()
        w = 0 if info is None else info.id
        k, g = self.workers, self.group
        start = self.position // g  # the rank's group under way: the DataLoader's first item
        logical = (w + start) % k
        slot, slots = self.rank * k + logical, self.world * k
        done = len(range(logical, start, k))  # groups this slot made before it
        torch.set_num_threads(1)  # a worker is one of several processes: one thread each
        skip = np.zeros(len(self.sources), dtype=np.int64)
        for j in range(done * g):
            skip += np.bincount(batch_sources(self.seed, slot, j, self.batch_size, self.weights),
                                minlength=len(self.sources))
        streams = [s.stream(self.seed, slot, slots, shuffle=self.shuffle, skip=int(n))
                   for s, n in zip(self.sources, skip)]
        for q in count(done):
            samples = []
            for j in range(q * g, (q + 1) * g):
                samples += [next(streams[i]) for i in batch_sources(self.seed, slot, j, self.batch_size,
                                                                     self.weights)]
            raw, lengths = stack_raw(samples, self.mods)
            gen = torch.Generator().manual_seed(_seed(self.seed, slot, q, g))
            yield sample_batch(raw, self.mods, self.masking, generator=gen, lengths=lengths)


def rows(batch: Batch, a: int, b: int, *, trim: tuple[str, ...] = ()) -> Batch:
    """Samples ``a:b`` of a batch; the sequences named in ``trim`` lose the trailing columns that none of these
    samples uses (padding), as if they had been masked alone with ``sequence_width="tight"``."""
    out = {}
    for name, t in batch.items():
        v, i, tg = t.values[a:b], t.is_input[a:b], t.is_target[a:b]
        if name in trim:
            used = (i | tg).any(dim=0).nonzero()
            width = int(used[-1]) + 1 if used.numel() else 1
            v, i, tg = v[:, :width], i[:, :width], tg[:, :width]
        out[name] = ModalityTokens(v.contiguous(), i.contiguous(), tg.contiguous())
    return Batch(out)


class TokenLoader:
    """Epoch-less masked batches of this rank from a mixture of token sources (see the module docstring).

    Args:
        sources: `TokenSource` / `TextSource` objects; weights: one per source (normalized; default equal).
        mods: the modalities each batch holds (the model's domains), name -> `Modality`.
        batch_size: samples per batch of this rank; seed: the data stream; rank, world: this process's place.
        workers: worker processes (0: in this process, the same batches as 1); shuffle: buffer size per source.
        position: batches of this rank already consumed (from `state_dict`), to continue a stopped run.
    """

    def __init__(self, sources: Sequence, *, mods: Mapping[str, Modality], masking: MaskingConfig,
                 batch_size: int, weights: Sequence[float] | None = None, seed: int = 0, rank: int = 0,
                 world: int = 1, workers: int = 0, shuffle: int = 1000, position: int = 0, prefetch: int = 4,
                 mask_group: int = 256):
        w = np.ones(len(sources)) if weights is None else np.asarray(weights, dtype=np.float64)
        if len(w) != len(sources) or (w < 0).any() or w.sum() <= 0:
            raise ValueError(f"need one non-negative weight per source ({len(sources)}), got {list(w)}")
        if batch_size < 1 or workers < 0 or not 0 <= rank < world:
            raise ValueError(f"bad loader settings: batch_size={batch_size}, workers={workers}, rank {rank}/{world}")
        self.sources, self.weights, self.mods, self.masking = list(sources), w / w.sum(), dict(mods), masking
        for src in self.sources:  # a source that feeds none of the modalities is a wrong path or a wrong model
            if not set(src.names) & set(self.mods):
                raise ValueError(f"source {getattr(src, 'path', None) or getattr(src, 'paths', src)} holds "
                                 f"{', '.join(src.names)}, none of the loader's modalities ({', '.join(self.mods)})")
        self.batch_size, self.seed, self.rank, self.world = batch_size, seed, rank, world
        self.workers, self.shuffle, self.position, self.prefetch = workers, shuffle, position, prefetch
        self.group = max(1, -(-mask_group // batch_size))  # batches masked by one sampler call
        self.trim = tuple(n for n, m in self.mods.items() if m.kind is Kind.SEQUENCE
                          and masking.sequence_width == "tight")
        self._it: Iterator[Batch] | None = None
        self._group: Batch | None = None

    def _dataset(self) -> _Stream:
        return _Stream(self.sources, self.weights, self.mods, self.masking, self.batch_size, self.seed, self.rank,
                       self.world, self.workers, self.shuffle, self.position, self.group)

    def __iter__(self) -> Iterator[Batch]:
        return self

    def __next__(self) -> Batch:
        if self._it is None:
            ds = self._dataset()
            if self.workers == 0:
                self._it = iter(ds)
            else:
                self._it = iter(DataLoader(ds, batch_size=None, num_workers=self.workers,
                                           prefetch_factor=self.prefetch, persistent_workers=False))
            self._group = None
        r = self.position % self.group
        if self._group is None or r == 0:
            try:
                self._group = next(self._it)  # a resumed loader's first group may start mid-way: rows r.. are next
            except ShardError as e:
                raise ShardError(_worker_message(str(e))) from None
        batch = rows(self._group, r * self.batch_size, (r + 1) * self.batch_size, trim=self.trim)
        self.position += 1
        return batch

    def take(self, n: int) -> list[Batch]:
        return list(islice(self, n))

    def state_dict(self) -> dict:
        """Where this rank's stream stands; what a checkpoint records."""
        return {"batches": self.position, "batch_size": self.batch_size, "seed": self.seed, "world": self.world,
                "workers": max(self.workers, 1), "group": self.group, "weights": [float(x) for x in self.weights]}

    def check_state(self, state: Mapping) -> None:
        """ValueError when ``state`` was recorded by a loader whose stream differs from this one."""
        now = self.state_dict()
        diff = [k for k in ("batch_size", "seed", "world", "workers", "group") if k in state and state[k] != now[k]]
        if diff:
            raise ConfigError("the recorded data position belongs to another stream (" + ", ".join(
                f"{k}: {state[k]} recorded, {now[k]} now" for k in diff) + "); resume with the same data settings")

    def close(self) -> None:
        self._it = self._group = None  # drops the DataLoader iterator: its workers exit
