"""Readers of datasets on disk: WebDataset tar shards and the plain folder layout, one sample dict at a time.

Two layouts, the same samples (``{"__key__": str, modality: value, ...}``):

- **shards**: tar files whose entries are named ``{key}.{modality}.{ext}`` (WebDataset's ``key.field.ext``: the
  world's `store`, `polymodal data label` and `polymodal data tokenize` all write them). Give a folder (its
  ``dataset.json`` lists the shards, else every ``*.tar`` in it), a glob (``data/*.tar``) or a brace pattern
  (``shard-{0000..0099}.tar``, ``{a,b}.tar``).
- **folders**: one folder per modality, files named by sample id (``root/rgb/0001.png``, ``root/depth/0001.png``,
  ``root/caption/0001.txt``), as the reference's datasets are laid out. A sample missing some modalities is
  allowed: it simply lacks those keys.

Values are decoded by extension: ``.png``/``.jpg`` images (8 or 16 bit, RGB order), ``.json``, ``.txt``, ``.npy``
(``allow_pickle=False``: nothing is ever unpickled). A field the world's `codec` knows (``depth``, ``normal``, ...)
is decoded by it, in natural units (metres, unit vectors).

A truncated or corrupt shard raises `ShardError` naming the shard (the reader does not guess which samples of a
broken archive are whole); the loader's ``on_bad_shard="skip"`` skips it and reports it instead.
"""

from __future__ import annotations

import glob
import io
import json
import os
import re
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np

from .shards import cut_short
from .world import codec
from .world.store import INFO_FILE, ShardError

IMAGE_EXTS = ("png", "jpg", "jpeg")
_BRACE_RANGE = re.compile(r"\{(\d+)\.\.(\d+)\}")
_BRACE_LIST = re.compile(r"\{([^{}]*,[^{}]*)\}")


def expand_braces(pattern: str) -> list[str]:
    """``a-{00..02}.tar`` -> ``a-00.tar a-01.tar a-02.tar`` (zero padding kept); ``{x,y}`` alternatives too; the
    leftmost group varies slowest, as in a shell."""
    found = [m for m in (_BRACE_RANGE.search(pattern), _BRACE_LIST.search(pattern)) if m]
    if not found:
        return [pattern]
    m = min(found, key=lambda x: x.start())
    head, tail = pattern[:m.start()], pattern[m.end():]
    if m.re is _BRACE_RANGE:
        lo, hi = m.group(1), m.group(2)
        width = len(lo) if lo.startswith("0") or len(lo) == len(hi) else 0
        alts = [str(i).zfill(width) for i in range(int(lo), int(hi) + 1)]
    else:
        alts = m.group(1).split(",")
    return [p for alt in alts for p in expand_braces(head + alt + tail)]


def shard_paths(spec: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """The shard files of a folder, glob, brace pattern or list of them; FileNotFoundError when none match."""
    if not isinstance(spec, (str, os.PathLike)):
        return [p for s in spec for p in shard_paths(s)]
    spec = str(spec)
    path = Path(spec)
    if path.is_dir():
        info = path / INFO_FILE
        if info.exists():
            names = json.loads(info.read_text()).get("shards")
            if names is not None:
                return [path / n for n in names]
        found = sorted(path.glob("*.tar"))
        if not found:
            raise FileNotFoundError(f"{path} holds no *.tar shards")
        return found
    out: list[Path] = []
    for pat in expand_braces(spec):
        if glob.has_magic(pat):
            hits = sorted(glob.glob(pat))
            if not hits:
                raise FileNotFoundError(f"no shard matches {pat!r}")
            out += [Path(h) for h in hits]
        else:
            out.append(Path(pat))  # a missing shard fails when it is read, with its name
    return out


def decode_field(field: str, ext: str, data: bytes):
    """One entry's value: the world codec's for its fields, else by extension (see the module docstring)."""
    ext = ext.lower()
    if codec.EXTENSIONS.get(field) == ext:
        return codec.decode(field, data)
    if ext in IMAGE_EXTS:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise ValueError(f"corrupt {ext} image for {field!r}")
        return np.ascontiguousarray(img[..., ::-1]) if img.ndim == 3 and img.shape[2] == 3 else img
    if ext == "json":
        return json.loads(data.decode("utf-8"))
    if ext == "txt":
        return data.decode("utf-8")
    if ext == "npy":
        return np.load(io.BytesIO(data), allow_pickle=False)
    return data  # unknown extensions stay bytes


def iter_shard(path: str | os.PathLike, *, fields: Iterable[str] | None = None, decode: bool = True
               ) -> Iterator[dict]:
    """Samples of one shard in stored order; ``fields`` limits the decoded modalities (default all).

    Raises `ShardError` naming the shard when it is missing, truncated or corrupt.
    """
    path = Path(path)
    wanted = None if fields is None else set(fields)
    if not path.exists():
        raise ShardError(f"shard {path} is missing")
    try:
        with tarfile.open(path, "r:") as tar:
            members = tar.getmembers()
            reason = cut_short(path, members)
            if reason:
                raise ShardError(f"shard {path} is truncated or corrupt ({reason})")
            sample: dict = {}
            for m in members:
                if not m.isfile():
                    continue
                key, _, rest = m.name.partition(".")
                field, _, ext = rest.partition(".")
                if sample and sample["__key__"] != key:
                    yield sample
                    sample = {}
                sample["__key__"] = key
                if wanted is None or field in wanted:
                    data = tar.extractfile(m).read()
                    sample[field] = decode_field(field, ext, data) if decode else data
            if sample:
                yield sample
    except ShardError:
        raise
    except (tarfile.TarError, EOFError, OSError, ValueError) as e:
        raise ShardError(f"shard {path} is truncated or corrupt ({e})") from e


def iter_shards(spec, *, fields: Iterable[str] | None = None) -> Iterator[dict]:
    """Every sample of every shard of ``spec`` (see `shard_paths`), in order."""
    for p in shard_paths(spec):
        yield from iter_shard(p, fields=fields)


class FolderDataset:
    """The folder layout: ``root/{modality}/{sample id}.{ext}``; ``len``, ``keys``, ``[i]`` and iteration.

    ``modalities`` restricts the folders read (default: every sub-folder). Sample ids are the union over the
    modalities, sorted; a sample lacks the modalities that have no file for it.
    """

    def __init__(self, root: str | os.PathLike, *, modalities: Iterable[str] | None = None):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.root} is not a folder")
        names = sorted(p.name for p in self.root.iterdir() if p.is_dir()) if modalities is None else list(modalities)
        self.files: dict[str, dict[str, Path]] = {}
        for name in names:
            folder = self.root / name
            if not folder.is_dir():
                raise FileNotFoundError(f"{self.root} has no folder for modality {name!r}")
            self.files[name] = {f.name.split(".", 1)[0]: f for f in folder.iterdir() if f.is_file()}
        self.keys = sorted(set().union(*[set(v) for v in self.files.values()])) if self.files else []

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i: int) -> dict:
        key = self.keys[i]
        out: dict = {"__key__": key}
        for name, files in self.files.items():
            f = files.get(key)
            if f is not None:
                try:
                    out[name] = decode_field(name, f.name.split(".", 1)[1], f.read_bytes())
                except ValueError as e:
                    raise ValueError(f"{f}: {e}") from e
        return out

    def __iter__(self) -> Iterator[dict]:
        return (self[i] for i in range(len(self)))


def read_dataset(spec) -> Iterator[dict]:
    """Samples of a shard set (folder with shards, glob, braces) or of a folder-per-modality tree."""
    path = Path(str(spec)) if isinstance(spec, (str, os.PathLike)) else None
    if path is not None and path.is_dir() and not (path / INFO_FILE).exists() and not any(path.glob("*.tar")):
        return iter(FolderDataset(path))
    return iter_shards(spec)
