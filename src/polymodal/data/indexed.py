"""Index-addressed data sources: sample ``i`` is ``fn(seed, i) -> {key: array}``, the same on every call.

`SOURCES` is the one table of sources a config's ``data.source`` may name (besides ``"tokens"``, the streaming
loader of pre-tokenized shards, and ``"world"``, the world renderer at a tokenizer's resolution): built-ins by import
path, resolved when a run names them; a user's own source is one explicit `register_source` call.

`ModalityStore` serves one modality's arrays by index to a tokenizer objective, from a world dataset folder
(``data.path``), the world renderer or a source of the table, and keeps what it read in memory.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..config import ConfigError, ExperimentConfig, import_path
from .world import IMAGE_KEYS, ShardError, read_info, read_shard, render_sample

Source = Callable[[int, int], dict[str, np.ndarray]]

# data.source -> fn(seed, index) -> {key: array}, or the "module:attribute" path of one.
SOURCES: dict[str, Source | str] = {
    "synthetic_tokens": "polymodal.data.synthetic:sample",
}


def register_source(name: str, fn: Source) -> None:
    """Make ``data.source=name`` read samples from ``fn(seed, index)``."""
    SOURCES[name] = fn


def get_source(name: str) -> Source:
    if name not in SOURCES:
        raise ConfigError(f"data.source: unknown source {name!r}; known: {', '.join(SOURCES)}, tokens (pre-tokenized "
                          "shards), world (tokenizers: the world renderer)")
    fn = SOURCES[name]
    return import_path(fn) if isinstance(fn, str) else fn


class ModalityStore:
    """Index -> one modality's array (key ``key``; images at ``res`` px), from ``data.path`` (a world dataset
    folder), the world renderer (``data.source="world"``) or a source of `SOURCES`; cached.

    Training uses indices ``[0, num_train)``; held-out indices start at ``val_start``: the dataset folder's last
    ``data.val_samples`` samples, or the indices past ``data.num_samples`` of a renderer or source.
    """

    def __init__(self, cfg: ExperimentConfig, key: str, res: int | None):
        self.cfg, self.key, self.res = cfg, key, res
        self.cache: dict[int, np.ndarray] = {}
        d = cfg.data
        if d.path:
            info = read_info(d.path)
            if info.get("complete") is False:  # written by a run that was stopped: its last shards are missing
                raise ConfigError(f"data.path: {d.path} is not complete (`polymodal data synth` was stopped); rerun "
                                  "it with the same arguments to finish it")
            if res is not None and info["resolution"] != res:
                raise ConfigError(f"{d.path} holds {info['resolution']} px samples; the tokenizer wants {res} px")
            if key not in info["modalities"]:
                raise ConfigError(f"{d.path} has no modality {key!r}")
            if info["count"] <= d.val_samples:
                raise ConfigError(f"{d.path} holds {info['count']} samples, not more than data.val_samples")
            self.info = info
            self.val_start = info["count"] - d.val_samples
            self.num_train = min(d.num_samples, self.val_start)
        else:
            if d.source == "world":
                if key not in IMAGE_KEYS:
                    raise ConfigError(f"the world has no image modality {key!r}; choose one of {IMAGE_KEYS}")
                self.fn = lambda seed, i: {key: render_sample(seed, i, res)[key]}
            else:
                self.fn = get_source(d.source)
            self.val_start = self.num_train = d.num_samples

    def get(self, index: int) -> np.ndarray:
        if index not in self.cache:
            if self.cfg.data.path:  # a whole shard at once: shards are read sequentially
                j = index // self.info["shard_size"]
                shard = Path(self.cfg.data.path) / self.info["shards"][j]
                seen = set()
                for s in read_shard(shard, modalities=[self.key]):
                    seen.add(s["__key__"])
                    if self.key in s:
                        self.cache[s["__key__"]] = s[self.key]
                if index not in self.cache:  # a shard written by other means, or edited since
                    what = f"sample {index} has no {self.key!r} entry" if index in seen else f"no sample {index}"
                    raise ShardError(f"shard {shard}: {what} (dataset.json lists it there); rerun `polymodal data "
                                     "synth` with the same arguments to rewrite the shard")
            else:
                self.cache[index] = np.asarray(self.fn(self.cfg.data.seed, index)[self.key])
        return self.cache[index]
