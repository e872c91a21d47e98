"""Pre-tokenization: a dataset of pixels and labels -> token shards that training reads (never pixels).

    polymodal data tokenize DATASET --tokenizer rgb=tok/rgb depth=tok/depth caption=tok/text --crops 4 --out TOKENS

For every sample, ``crops`` crop settings are drawn (`transforms.Crop`; the first is the centre crop, the others
random resized crops with a flip, seeded by ``(seed, sample key, k)``), and every modality is stored per crop:

==================  ===================================================================================
entry               value
==================  ===================================================================================
``crops.npy``       (N, 5) int32: top, left, height, width, flip of each crop (source pixels)
``tok_*.npy``       (N, T) int16: an image modality's token ids per crop (its tokenizer's name, e.g.
                    ``tok_rgb@64``; from the dataset key given with ``--tokenizer``)
``tok_*.npy``       (N, T) int16: a vector's ids (an MLP tokenizer's, e.g. of ``minilm_global``), the same
                    for every crop
``caption.npy``,    (N, L) int16: a sequence's ids per crop, [EOS] then [PAD] = 0 (``caption`` through the
``det.npy``, ...    text tokenizer; ``det``, ``metadata``, ``color_palette`` through their serializers;
                    boxes are cropped with the image)
==================  ===================================================================================

A sample lacking a modality gets no entry for it (the loader treats it as absent). ``tokens.json`` lists the
shards, their sample counts and every stored modality's definition (kind, vocabulary, grid or length) and
tokenizer. One output shard per input shard (or per ``shard_size`` samples of a folder dataset), written under a
temporary name and renamed when complete: a rerun skips complete shards (resumable); ``workers`` processes
tokenize shards in parallel, with a progress bar.

Before anything is written, every ``--tokenizer KEY=DIR`` is checked (`check_fit`, `SampleTokenizer.probe`, both
in `data.sample_tokenizer`, which tokenizes each sample): the key names a modality the dataset holds, the tokenizer
reads what it holds (an RGB tokenizer for ``depth`` or a text tokenizer for ``rgb`` is refused) and tokenizes the
first sample's value; a ValueError says which and why.
"""

from __future__ import annotations

import glob
import json
import os
import tarfile
from pathlib import Path

import numpy as np
import torch

from .. import modalities
from .readers import INFO_FILE, FolderDataset, iter_shard, shard_paths
from .sample_tokenizer import (
    KEY_VALUES,
    SERIALIZED,
    SampleTokenizer,
    check_fit,
    crops_for,
    dataset_keys,
    tokenizer_values,
)
from .shards import add_member, atomic_tar, npy_bytes, worker_pool

# The checks' and the sample tokenizer's names are still imported from here, where they were before
# `data.sample_tokenizer` held them.
__all__ = ["FORMAT", "KEY_VALUES", "SERIALIZED", "TOKENS_FILE", "VERSION", "SampleTokenizer", "check_fit",
           "crops_for", "dataset_keys", "modality_spec", "pretokenize", "tokenizer_values", "write_tokens"]

FORMAT, VERSION = "polymodal-tokens", 1
TOKENS_FILE = "tokens.json"

modality_spec = modalities.to_spec  # kept under its old name: other modules import it from here


_WORKER: dict = {}


def _job(args: tuple) -> tuple[str, int, list[str]]:
    """Tokenize one unit (an input shard, or a range of a folder dataset) into ``out/name``."""
    unit, out, name, tok_args = args
    if _WORKER.get("args") != tok_args:
        tokenizers, crops, seed, size = tok_args
        torch.set_num_threads(1)  # workers are processes: one thread each does not oversubscribe the cores
        _WORKER.update(args=tok_args, st=SampleTokenizer(dict(tokenizers), crops=crops, seed=seed, size=size))
    st = _WORKER["st"]
    if isinstance(unit, str):
        samples = iter_shard(unit)
    else:
        folder = FolderDataset(unit[0])
        samples = (folder[i] for i in range(*unit[1:]))
    n, errors = 0, []
    with atomic_tar(Path(out) / name) as tar:
        for sample in samples:
            try:
                entries = st(sample)
            except ValueError as e:  # a sample the tokenizers refuse: reported, the shard goes on
                errors.append(f"{sample.get('__key__')}: {e}")
                continue
            for field, arr in entries.items():
                add_member(tar, f"{sample['__key__']}.{field}.npy", npy_bytes(arr))
            n += 1
    return name, n, errors


def _units(dataset: str, shard_size: int) -> list:
    path = Path(dataset)
    if not path.exists() and not glob.has_magic(str(dataset)) and "{" not in str(dataset):
        raise FileNotFoundError(f"{path}: no such folder or shard")
    if path.is_dir() and not (path / INFO_FILE).exists() and not any(path.glob("*.tar")):
        folders = FolderDataset(path)
        if not folders.files:
            raise FileNotFoundError(f"{path} holds no shards (*.tar), no {INFO_FILE} and no folder per modality")
        n = len(folders)
        if n == 0:
            raise FileNotFoundError(f"{path} holds no samples (its modality folders are empty)")
        return [(str(path), a, min(a + shard_size, n)) for a in range(0, n, shard_size)]
    return [str(p) for p in shard_paths(dataset)]


def _first_sample(units: list) -> dict | None:
    for unit in units[:1]:
        if isinstance(unit, str):
            return next(iter_shard(unit), None)
        return FolderDataset(unit[0])[unit[1]]
    return None


def pretokenize(dataset: str, tokenizers: dict[str, str], out: str | os.PathLike, *, crops: int = 1, seed: int = 0,
                size: int | None = None, workers: int = 1, shard_size: int = 500, progress: bool = False) -> dict:
    """Tokenize ``dataset`` (shards or folder layout) into token shards in ``out``; returns ``tokens.json``.

    Args:
        tokenizers: dataset key -> tokenizer folder (image tokenizers: ``rgb``, ``depth``, ``normal``, ``semseg``,
            ``canny_edge``...; a text tokenizer for ``caption``, ``det``, ``metadata``, ``color_palette``).
        crops: crop settings per sample, >= 1; the first is the centre crop.
        size: the frame boxes are normalized in (default: the largest image tokenizer's side).
        workers: processes tokenizing shards in parallel; shard_size: samples per shard of a folder dataset.
    """
    if crops < 1 or workers < 1:
        raise ValueError(f"crops and workers must be >= 1, got {crops} and {workers}")
    for name, value in (("size", size), ("shard_size", shard_size)):  # a negative size drops every box
        if value is not None and value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    out = Path(out)
    tok_args = (tuple(sorted((k, str(Path(v).resolve())) for k, v in tokenizers.items())), crops, seed, size)
    units = _units(dataset, shard_size)
    names = [f"tokens-{j:06d}.tar" for j in range(len(units))]
    # Every tokenizer is loaded and checked against the dataset (its keys, its first sample) before out is made.
    st = SampleTokenizer(dict(tok_args[0]), crops=crops, seed=seed, size=size)
    st.check(tokenizers, dataset_keys(dataset))
    first = _first_sample(units)
    if first is not None:
        st.probe(first, tokenizers)
    mods = st.modalities()
    out.mkdir(parents=True, exist_ok=True)
    info = {"format": FORMAT, "version": VERSION, "source": str(dataset), "crops": crops, "seed": seed,
            "tokenizers": dict(tok_args[0]), "modalities": mods, "shards": names}
    info_path = out / TOKENS_FILE
    old = json.loads(info_path.read_text()) if info_path.exists() else {}
    if old and any(old.get(k) != info[k] for k in ("crops", "seed", "tokenizers", "shards")):
        raise ValueError(f"{out} holds tokens made with other settings; use another folder")
    counts, errors = old.get("counts", {}), dict(old.get("errors", {}))
    if isinstance(counts, list):  # a complete run stores them as a list in shard order
        counts = dict(zip(old["shards"], counts))
    for stale in out.glob("tokens-*.tar.tmp-*"):  # left by a killed run
        stale.unlink()
    todo = [(u, str(out), name, tok_args) for u, name in zip(units, names)
            if not ((out / name).exists() and name in counts)]
    info_path.write_text(json.dumps({**info, "counts": counts, "errors": errors, "complete": False}, indent=1))
    pool = worker_pool(workers, len(todo))
    bar = None
    try:
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(units), initial=len(units) - len(todo), unit="shard", desc="tokenize")
        for name, n, errs in (pool.imap_unordered(_job, todo) if pool else map(_job, todo)):
            counts[name] = n
            if errs:
                errors[name] = errs
            # Recorded after each shard: a killed run keeps what it finished.
            info_path.write_text(json.dumps({**info, "counts": counts, "errors": errors, "complete": False},
                                            indent=1))
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
        if pool is not None:
            pool.terminate()
            pool.join()
    info.update(counts=[counts[n] for n in names], count=sum(counts[n] for n in names), errors=errors,
                complete=True)
    tmp = info_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(info, indent=1) + "\n")
    os.replace(tmp, info_path)
    return info


def write_tokens(out: str | os.PathLike, samples, mods: dict[str, modalities.Modality], *, shard_size: int = 500,
                 crops: int = 1) -> dict:
    """Write already tokenized samples (``{"__key__": str, name: (crops, T) int array, ...}``) as a token dataset,
    the format `pretokenize` writes (for tests, benchmarks and imports of tokens made elsewhere)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names, counts, tar, f, n = [], [], None, None, 0
    try:
        for sample in samples:
            if tar is None or n == shard_size:
                if tar is not None:
                    tar.close()
                    f.close()
                    counts.append(n)
                names.append(f"tokens-{len(names):06d}.tar")
                f = open(out / names[-1], "wb")
                tar, n = tarfile.open(fileobj=f, mode="w", format=tarfile.GNU_FORMAT), 0
            for field, arr in sample.items():
                if field != "__key__":
                    add_member(tar, f"{sample['__key__']}.{field}.npy", npy_bytes(np.asarray(arr, dtype=np.int16)))
            n += 1
    finally:
        if tar is not None:
            tar.close()
            f.close()
            counts.append(n)
    info = {"format": FORMAT, "version": VERSION, "source": "write_tokens", "crops": crops, "seed": 0,
            "tokenizers": {}, "shards": names, "counts": counts, "count": sum(counts), "errors": {},
            "modalities": {k: {"source": k, "spec": modality_spec(m), "tokenizer": None} for k, m in mods.items()},
            "complete": True}
    (out / TOKENS_FILE).write_text(json.dumps(info, indent=1) + "\n")
    return info
