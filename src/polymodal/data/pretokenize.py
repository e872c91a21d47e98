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

Before anything is written, every ``--tokenizer KEY=DIR`` is checked (`check_fit`, `SampleTokenizer.probe`): the
key names a modality the dataset holds, the tokenizer reads what it holds (an RGB tokenizer for ``depth`` or a text
tokenizer for ``rgb`` is refused) and tokenizes the first sample's value; a ValueError says which and why.
"""

from __future__ import annotations

import glob
import json
import os
import tarfile
import zlib
from pathlib import Path

import numpy as np
import torch

from .. import modalities
from .readers import INFO_FILE, FolderDataset, iter_shard, shard_paths
from .shards import add_member, atomic_tar, npy_bytes, worker_pool
from .transforms import Crop, apply_crop, center_crop, image_size, random_resized_crop

FORMAT, VERSION = "polymodal-tokens", 1
TOKENS_FILE = "tokens.json"
SERIALIZED = ("det", "metadata", "color_palette")  # world-format values with a serializer; caption is plain text
# What a dataset key holds, as tokenizers see it: the ``values`` of an image tokenizer (`VQVAEConfig.values`),
# "vector" (an MLP tokenizer's input) or "text" (the text tokenizer's, through a serializer but for caption).
# Keys of the world, of `polymodal data label` and of 4M's feature maps and global embeddings.
KEY_VALUES = {"rgb": "rgb", "depth": "depth", "normal": "normal", "semseg": "semseg", "canny_edge": "edge",
              "sam_edge": "edge", "clip": "feature", "dinov2": "feature", "imagebind": "feature",
              **dict.fromkeys(("minilm_global", "dinov2_global", "imagebind_global", "hf_feature"), "vector"),
              "caption": "text", **dict.fromkeys(SERIALIZED, "text")}


modality_spec = modalities.to_spec  # kept under its old name: other modules import it from here


def crops_for(key: str, h: int, w: int, n: int, seed: int) -> list[Crop]:
    """``n`` crop settings of sample ``key``: the centre crop, then random resized crops with flips."""
    rng = np.random.default_rng([seed, zlib.crc32(key.encode("utf-8"))])
    return [center_crop(h, w)] + [random_resized_crop(h, w, rng) for _ in range(n - 1)]


def _image_tensor(values: list[np.ndarray], kind: str) -> torch.Tensor:
    x = torch.from_numpy(np.stack(values))
    if x.ndim == 4:  # (B, H, W, C) -> (B, C, H, W)
        x = x.permute(0, 3, 1, 2).contiguous()
    if kind == "semseg":
        return x.long()
    return x if x.dtype == torch.uint8 else x.float()


def tokenizer_values(tok) -> str:
    """What a tokenizer encodes: an image tokenizer's ``values`` (rgb, depth, ...; "image" when its config does not
    say), "vector" (an MLP tokenizer), "text" (a text tokenizer), "" (none of these)."""
    cfg = getattr(tok, "cfg", None)
    if hasattr(cfg, "image_size"):
        return str(getattr(cfg, "values", "image"))
    if hasattr(cfg, "in_dim"):
        return "vector"
    return "text" if hasattr(tok, "encode_lists") else ""


def _described(values: str, tok=None) -> str:
    what = {"vector": "vectors", "text": "text", "": "values no tokenizer here reads"}.get(values, f"{values} images")
    if tok is None:
        return what
    cfg = getattr(tok, "cfg", None)
    if values == "vector":
        size = f" of {_width(tok)}" if _width(tok) else ""
    else:
        size = f", {cfg.image_size} px" if hasattr(cfg, "image_size") else ""
    name = f"{cfg.name}, " if getattr(cfg, "name", "") else ""
    return f"{what}{size} ({name}{type(tok).__name__})"


def _width(tok) -> int | None:
    """The width of the vectors a vector tokenizer reads (ours: ``in_dim``; the released 4M ones: ``in_channels``)."""
    cfg = getattr(tok, "cfg", None)
    return getattr(cfg, "in_dim", None) or getattr(cfg, "in_channels", None)


def dataset_keys(dataset: str) -> list[str] | None:
    """The keys a dataset declares (its ``dataset.json``'s modalities, or a folder tree's sub-folders); None for
    shards named by a glob or braces, which declare nothing."""
    path = Path(str(dataset))
    if not path.is_dir():
        return None
    if (path / INFO_FILE).is_file():
        try:
            mods = json.loads((path / INFO_FILE).read_text()).get("modalities")
        except (ValueError, AttributeError):
            return None
        return list(mods) if isinstance(mods, (dict, list)) else None
    if any(path.glob("*.tar")):
        return None
    return sorted(p.name for p in path.iterdir() if p.is_dir())


class SampleTokenizer:
    """Tokenizes one sample's crops with the tokenizers of ``{dataset key: tokenizer folder}`` (`check` says
    whether they fit the dataset's keys, `probe` whether they read its values)."""

    def __init__(self, tokenizers: dict[str, str], *, crops: int, seed: int, size: int | None = None):
        from ..tokenizers import load_tokenizer

        self.tok = {k: load_tokenizer(p) for k, p in tokenizers.items()}
        self.crops, self.seed = crops, seed
        values = {k: tokenizer_values(t) for k, t in self.tok.items()}
        self.vector = {k: t for k, t in self.tok.items() if values[k] == "vector"}
        self.text = {k: t for k, t in self.tok.items() if values[k] == "text"}
        self.image = {k: t for k, t in self.tok.items() if k not in self.vector and k not in self.text}
        big = [k for k, t in self.tok.items() if t.vocab_size > np.iinfo(np.int16).max + 1]
        if big:
            raise ValueError(f"tokens are stored as int16: the vocabularies of {big} are larger than 32768")
        sizes = [t.cfg.image_size for t in self.image.values()]
        self.size = size or (max(sizes) if sizes else 224)

    def modalities(self) -> dict[str, dict]:
        """What ``tokens.json`` records of every stored modality."""
        out = {}
        for key, tok in self.image.items():
            out[tok.cfg.name] = {"source": key, "spec": modality_spec(tok.modality), "tokenizer": type(tok).__name__}
        for key, tok in self.vector.items():
            out[tok.cfg.name] = {"source": key, "spec": modality_spec(tok.modality), "tokenizer": type(tok).__name__}
        for key, tok in self.text.items():
            spec = modality_spec(modalities.get(key).replace(vocab_size=tok.vocab_size))
            out[key] = {"source": key, "spec": spec, "tokenizer": type(tok).__name__}
        return out

    @torch.no_grad()
    def __call__(self, sample: dict, *, only: str | None = None) -> dict[str, np.ndarray]:
        """``{entry: (crops, T) int16 ids}`` of every key the sample holds (``only``: of that key alone)."""
        key = str(sample["__key__"])
        h, w = image_size(sample)
        crops = crops_for(key, h, w, self.crops, self.seed)
        out = {"crops": np.stack([c.as_array() for c in crops])}
        for k, tok in self.image.items():
            if k in sample and only in (None, k):
                views = [apply_crop({k: sample[k]}, c, tok.cfg.image_size)[k] for c in crops]
                out[tok.cfg.name] = tok.encode(_image_tensor(views, tok.cfg.values)).numpy().astype(np.int16)
        for k, tok in self.vector.items():  # a vector describes the whole image: the same ids for every crop
            if k in sample and only in (None, k):
                ids = tok.encode(torch.as_tensor(np.asarray(sample[k], dtype=np.float32)).reshape(1, -1))
                out[tok.cfg.name] = np.repeat(ids.numpy().astype(np.int16), len(crops), axis=0)
        for k, tok in self.text.items():
            if k not in sample or only not in (None, k):
                continue
            if k in ("det",):  # boxes move with the crop
                rows = [self._serialize(k, apply_crop({k: sample[k]}, c, self.size)[k], tok) for c in crops]
            else:
                rows = [self._serialize(k, sample[k], tok)] * len(crops)
            width = max(len(r) for r in rows)
            arr = np.zeros((len(crops), max(width, 1)), dtype=np.int16)  # [PAD] = 0
            for i, r in enumerate(rows):
                arr[i, :len(r)] = r
            out[k] = arr
        return out

    def check(self, folders: dict[str, str], keys: list[str] | None) -> None:
        """`check_fit` of every key (``folders``: as the user named them; ``keys``: the dataset's, if it says)."""
        for k, tok in self.tok.items():
            check_fit(k, tok, folders[k], keys)

    def probe(self, sample: dict, folders: dict[str, str]) -> None:
        """Tokenize ``sample`` key by key (a dataset's first): a tokenizer that cannot read the dataset's values
        (channels, classes, widths the config check cannot see) fails here, before any shard is written."""
        for k in self.tok:
            if k not in sample:
                continue
            try:
                self(sample, only=k)
            except ValueError as e:
                raise ValueError(f"--tokenizer {k}={folders[k]} does not fit the dataset's {k} (sample "
                                 f"{sample.get('__key__')}: {e})") from None

    def _serialize(self, key: str, value, tok) -> list[int]:
        limit = modalities.get(key).max_length
        if key == "caption":
            return tok.encode_lists([value], max_length=limit)[0]
        from ..tokenizers import serializers as S

        adapted = {"det": lambda v: S.boxes_from_world(v, self.size), "metadata": S.metadata_from_world,
                   "color_palette": S.palette_from_world}[key](value)
        return S.SERIALIZERS[key].encode(adapted, tok, max_tokens=limit)


def check_fit(key: str, tok, folder: str, keys: list[str] | None = None) -> None:
    """A ValueError unless ``key`` names a modality (a known dataset key or registered base name, and one of the
    dataset's ``keys`` when it declares them) and ``tok`` reads what it holds: an image tokenizer of the key's
    values (`KEY_VALUES`), an MLP tokenizer of the vector's width, the text tokenizer for caption and the
    serialized keys. The message names the key, the folder and what it holds."""
    arg = f"--tokenizer {key}={folder}"
    known = set(KEY_VALUES) | {_base(n) for n in modalities.all_modalities()}
    if keys is not None and key not in keys:
        where = "names no modality" if key not in known else "is a modality this dataset does not hold"
        raise ValueError(f"{arg}: {key!r} {where} (the dataset holds: {', '.join(keys)})")
    if keys is None and key not in known:
        raise ValueError(f"{arg}: {key!r} names no modality (known: {', '.join(sorted(KEY_VALUES))})")
    values, want = tokenizer_values(tok), KEY_VALUES.get(key)
    if not values:
        raise ValueError(f"{arg}: a {type(tok).__name__}, which is no image, vector or text tokenizer")
    if want is None and modalities.is_registered(key) and modalities.get(key).kind is modalities.Kind.SEQUENCE_EMB:
        want = "vector"
    if want is None:  # a key of the dataset's own: the probe of its first sample checks the tokenizer
        if values == "text":
            raise ValueError(f"{arg}: no way to tokenize {key!r} with a text tokenizer (caption and "
                             f"{', '.join(SERIALIZED)})")
        return
    if values != want and not (values == "image" and want not in ("vector", "text")):
        raise ValueError(f"{arg}: a tokenizer of {_described(values, tok)}, but {key} holds {_described(want)}")
    dim = modalities.get(key).emb_dim if modalities.is_registered(key) else None
    if values == "vector" and dim is not None and _width(tok) not in (None, dim):
        raise ValueError(f"{arg}: a tokenizer of {_described(values, tok)}, but {key} holds vectors of {dim}")


def _base(name: str) -> str:
    return name.removeprefix("tok_").split("@")[0]


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
