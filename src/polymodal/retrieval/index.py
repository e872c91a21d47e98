"""A gallery of global-embedding vectors and exact nearest-neighbour search over it (faiss).

    index = GalleryIndex.from_world("data/world64", modality="minilm_global")    # (N, 384) caption embeddings
    hits = index.search(queries, k=5)            # hits.keys [[key, ...]], hits.scores (Q, 5), hits.indices (Q, 5)
    index.save("runs/gallery"); GalleryIndex.load("runs/gallery")

Metrics: ``"cosine"`` (scores are cosine similarities, higher first; vectors are L2-normalized for the inner
product index) and ``"l2"`` (scores are Euclidean distances, lower first). Search is exact (faiss ``IndexFlat*``):
at gallery sizes of the world and of 4M's evaluations (10^4 to 10^6 vectors) a flat index answers in
milliseconds to a second, and exact results make recall numbers comparable across runs.

A saved index is a folder: ``config.json`` (metric, dimension, count, modality, source folder, key type),
``vectors.safetensors`` (the gallery as given, float32, and integer keys) + ``keys.json`` for string keys +
``README.md``. The faiss index is rebuilt on load (flat indexes hold nothing but the vectors), so loading never
unpickles.
"""

from __future__ import annotations

import json
import os
from collections.abc import Hashable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import faiss
import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

METRICS = ("cosine", "l2")
CONFIG, VECTORS, KEYS = "config.json", "vectors.safetensors", "keys.json"
FORMAT_VERSION = 1


class SearchResult(NamedTuple):
    """keys: Q lists of k gallery keys, best first; indices (Q, k) int64 gallery rows; scores (Q, k) float32
    (cosine similarity, or L2 distance)."""

    keys: list[list[Hashable]]
    indices: torch.Tensor
    scores: torch.Tensor


def _as_matrix(x, what: str) -> np.ndarray:
    """(N, D) or (D,) floats -> a C-contiguous float32 (N, D) array, or a ValueError saying what is wrong."""
    a = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if a.ndim == 1:
        a = a[None]
    if a.ndim != 2:
        raise ValueError(f"{what}: expected (N, D) or (D,) vectors, got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.floating):
        raise ValueError(f"{what}: expected float vectors, got {a.dtype} (token ids? decode them first)")
    a = np.ascontiguousarray(a, dtype=np.float32)
    if not np.isfinite(a).all():
        raise ValueError(f"{what}: {int((~np.isfinite(a)).sum())} NaN or infinite value(s)")
    return a


def _unit(a: np.ndarray, what: str) -> np.ndarray:
    norms = np.linalg.norm(a, axis=1, keepdims=True)
    if (norms < 1e-12).any():
        raise ValueError(f"{what}: {int((norms < 1e-12).sum())} zero vector(s) have no direction for cosine search")
    return np.ascontiguousarray(a / norms, dtype=np.float32)


class GalleryIndex:
    """(N, D) gallery vectors with one key each (default 0..N-1), searched exactly by ``metric``."""

    def __init__(self, vectors, keys: Sequence[Hashable] | None = None, *, metric: str = "cosine",
                 modality: str = "", source: str = "") -> None:
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
        a = _as_matrix(vectors, "gallery")
        if a.shape[0] == 0 or a.shape[1] == 0:
            raise ValueError(f"empty gallery: {a.shape[0]} vectors of dimension {a.shape[1]}; an index needs at least "
                             "one vector")
        keys = list(range(a.shape[0])) if keys is None else list(keys)
        if len(keys) != a.shape[0]:
            raise ValueError(f"gallery: {a.shape[0]} vectors but {len(keys)} keys")
        if len(set(keys)) != len(keys):
            raise ValueError("gallery: keys must be unique (each names one gallery item)")
        if not (all(isinstance(k, (int, np.integer)) and not isinstance(k, bool) for k in keys)
                or all(isinstance(k, str) for k in keys)):
            raise ValueError("gallery: keys must be all integers or all strings (what a folder can store)")
        self.metric, self.modality = metric, modality
        self.source = source  # where the gallery came from (a world folder), to find its pictures again
        self.vectors = torch.from_numpy(a)  # as given (not normalized): what is saved
        self.keys = [int(k) if not isinstance(k, str) else k for k in keys]
        self._faiss = faiss.IndexFlatIP(a.shape[1]) if metric == "cosine" else faiss.IndexFlatL2(a.shape[1])
        self._faiss.add(_unit(a, "gallery") if metric == "cosine" else a)

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def dim(self) -> int:
        return self.vectors.shape[1]

    def __repr__(self) -> str:
        what = f", modality={self.modality!r}" if self.modality else ""
        return f"GalleryIndex({len(self)} vectors of {self.dim}, metric={self.metric!r}{what})"

    # ------------------------------------------------------------------------------------------ search

    def search(self, queries, k: int = 5) -> SearchResult:
        """The ``k`` nearest gallery items of each query (Q, D) or (D,), best first (see `SearchResult`)."""
        q = _as_matrix(queries, "query")
        if q.shape[1] != self.dim:
            raise ValueError(f"query vectors have dimension {q.shape[1]}, the gallery {self.dim}"
                             + (f" ({self.modality})" if self.modality else ""))
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= len(self):
            raise ValueError(f"k must be an integer from 1 to the gallery size {len(self)}, got {k!r}")
        if self.metric == "cosine":
            q = _unit(q, "query")
        scores, idx = self._faiss.search(q, k)
        if self.metric == "l2":  # faiss gives squared distances; rounding can make them slightly negative
            scores = np.sqrt(np.maximum(scores, 0.0))
        keys = [[self.keys[i] for i in row] for row in idx.tolist()]
        return SearchResult(keys, torch.from_numpy(idx.astype(np.int64)), torch.from_numpy(scores.astype(np.float32)))

    # ------------------------------------------------------------------------------------------ builders

    @classmethod
    def from_samples(cls, samples: Iterable[Mapping], *, modality: str, metric: str = "cosine",
                     limit: int | None = None) -> GalleryIndex:
        """A gallery of ``sample[modality]`` vectors ((D,) or (1, D)), keyed by ``sample["__key__"]``."""
        if limit is not None and limit < 1:  # else "no samples" would blame the data
            raise ValueError(f"limit must be at least 1 (samples to index), got {limit}")
        vectors, keys = [], []
        for i, s in enumerate(samples):
            if limit is not None and i >= limit:
                break
            if modality not in s:
                raise KeyError(f"sample {s.get('__key__', i)} has no {modality!r} (it has {', '.join(sorted(s))})")
            v = np.asarray(s[modality], dtype=np.float32)
            if v.ndim == 2 and v.shape[0] == 1:
                v = v[0]
            if v.ndim != 1:
                raise ValueError(f"{modality} of sample {s.get('__key__', i)} has shape {v.shape}, not a vector (D,)")
            vectors.append(v)
            keys.append(s.get("__key__", i))
        if not vectors:
            raise ValueError(f"empty gallery: no samples with {modality!r}")
        return cls(np.stack(vectors), keys, metric=metric, modality=modality)

    @classmethod
    def from_world(cls, path: str | os.PathLike, *, modality: str = "minilm_global", metric: str = "cosine",
                   limit: int | None = None) -> GalleryIndex:
        """A gallery of one vector modality of a world dataset folder (e.g. ``minilm_global``, stored with
        ``polymodal data synth --text-embeddings``), keyed by sample index; ``limit`` keeps the first samples."""
        from ..data.world import iter_samples, read_info

        stored = read_info(path)["modalities"]
        if modality not in stored:
            raise KeyError(f"{path} stores no {modality!r} (it holds {', '.join(stored)}); caption embeddings need "
                           "`polymodal data synth --text-embeddings`")
        index = cls.from_samples(iter_samples(path, modalities=[modality]), modality=modality, metric=metric,
                                 limit=limit)
        index.source = str(path)
        return index

    # ------------------------------------------------------------------------------------------ folders

    def save(self, path: str | os.PathLike) -> Path:
        """Write the folder (see the module docstring); returns its path."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        str_keys = isinstance(self.keys[0], str)
        tensors = {"vectors": self.vectors.contiguous()}
        if str_keys:
            (path / KEYS).write_text(json.dumps(self.keys) + "\n")
        else:
            tensors["keys"] = torch.tensor(self.keys, dtype=torch.int64)
        save_file(tensors, str(path / VECTORS))
        cfg = {"_class_name": type(self).__name__, "format_version": FORMAT_VERSION, "metric": self.metric,
               "dim": self.dim, "count": len(self), "modality": self.modality, "source": self.source,
               "key_type": "str" if str_keys else "int"}
        (path / CONFIG).write_text(json.dumps(cfg, indent=2) + "\n")
        (path / "README.md").write_text(
            f"# Gallery index\n\n{len(self)} vectors of {self.dim} ({self.modality or 'unnamed modality'}), "
            f"{self.metric} search.\n\n```python\nfrom polymodal.retrieval import GalleryIndex\n"
            "index = GalleryIndex.load(path)\nhits = index.search(queries, k=5)\n```\n")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> GalleryIndex:
        """An index folder written by `save` (never unpickles; the faiss index is rebuilt from the vectors)."""
        path = Path(path).expanduser()
        if not (path / CONFIG).is_file() or not (path / VECTORS).is_file():
            raise FileNotFoundError(f"{path} is not a gallery index folder: it needs {CONFIG} and {VECTORS}")
        cfg = _read_json(path / CONFIG)
        if not isinstance(cfg, dict):
            raise ValueError(f"{path / CONFIG} holds a {type(cfg).__name__}, not a {cls.__name__}'s config")
        if cfg.get("_class_name") != cls.__name__:
            raise ValueError(f"{path / CONFIG} holds a {cfg.get('_class_name')!r}, not a {cls.__name__}")
        lacks = [k for k in ("metric", "dim", "count", "key_type") if k not in cfg]
        if lacks:
            raise ValueError(f"{path / CONFIG} lacks {', '.join(lacks)}: write the index again (polymodal retrieve "
                             "build)")
        for k in ("dim", "count"):
            if isinstance(cfg[k], bool) or not isinstance(cfg[k], int):
                raise ValueError(f"{path / CONFIG}: {k} must be a whole number, got {cfg[k]!r}")
        try:
            tensors = load_file(str(path / VECTORS))
        except SafetensorError as e:  # truncated, empty or not safetensors at all
            raise ValueError(f"{path / VECTORS}: not a readable safetensors file ({e})") from None
        need = ("vectors",) if cfg["key_type"] == "str" else ("vectors", "keys")
        lacks = [k for k in need if k not in tensors]
        if lacks:
            raise ValueError(f"{path / VECTORS} lacks {', '.join(lacks)} (it holds {', '.join(tensors) or 'nothing'})")
        keys = _read_json(path / KEYS) if cfg["key_type"] == "str" else tensors["keys"].tolist()
        index = cls(tensors["vectors"], keys, metric=cfg["metric"], modality=cfg.get("modality", ""),
                    source=cfg.get("source", ""))
        if len(index) != cfg["count"] or index.dim != cfg["dim"]:
            raise ValueError(f"{path}: config.json says {cfg['count']} x {cfg['dim']}, the vectors are "
                             f"{len(index)} x {index.dim}")
        return index


def _read_json(file: Path):
    """The JSON value in ``file``; a ValueError naming the file when it is not JSON text."""
    try:
        return json.loads(file.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{file}: not valid JSON ({e})") from None


def recall_at_k(ranked: Sequence[Sequence[Hashable]] | torch.Tensor, relevant: Sequence, k: int) -> float:
    """The fraction of queries with a relevant item among their first ``k`` results.

    Args:
        ranked: Q ranked lists (keys or indices, best first; e.g. `SearchResult.keys`), or a (Q, K) tensor.
        relevant: per query, one relevant key or a set/list of them.
        k: cut-off, at most the length of the ranked lists.
    """
    rows = ranked.tolist() if isinstance(ranked, torch.Tensor) else [list(r) for r in ranked]
    if len(rows) != len(relevant):
        raise ValueError(f"recall@k: {len(rows)} ranked lists but {len(relevant)} relevant entries")
    if not rows:
        raise ValueError("recall@k: no queries")
    if not 1 <= k <= min(len(r) for r in rows):
        raise ValueError(f"recall@k: k={k} must be from 1 to the ranked length {min(len(r) for r in rows)}")
    hits = 0
    for row, rel in zip(rows, relevant):
        rel = set(rel) if isinstance(rel, (set, frozenset, list, tuple)) else {rel}
        hits += bool(rel.intersection(row[:k]))
    return hits / len(rows)
