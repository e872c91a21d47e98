"""Sources of raw token samples for the streaming loader: pre-tokenized shards and plain text lines.

A source splits itself into ``slots`` disjoint parts (slot = rank x workers + worker) and yields, pass after pass,
the samples of one part: every sample of the source exactly once per pass over all slots. Each sample is a dict
``{modality: (T,) int64 ids}`` (grids: the grid's ids; sequences: ids then [PAD] = 0). Within a pass the order is
shuffled by a buffer (flushed at the pass's end, so passes are independent) and an image sample's crop is drawn
from its stored crops; everything is seeded by ``(seed, slot, pass)``, so ``stream(skip=k)`` continues exactly
where a stream that yielded k samples stopped.

Split: with at least as many shards as slots, each slot reads whole shards (a shuffled shard order per pass dealt
round-robin); with fewer, every slot reads every shard and keeps every ``slots``-th sample. A truncated shard raises
`ShardError` naming it (``on_bad_shard="raise"``) or is skipped, with a warning, and recorded in ``bad_shards``
(``"skip"``; once per shard and reader).
"""

from __future__ import annotations

import io
import json
import os
import re
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .. import modalities
from ..config import ConfigError
from .pretokenize import FORMAT, TOKENS_FILE
from .world.store import ShardError

_NPY_HEADER = re.compile(rb"'descr':\s*'([<>|=]?[a-z]\d+)',\s*'fortran_order':\s*False,\s*'shape':\s*\(([\d,\s]*)\)")


_HEADERS: dict[bytes, tuple[np.dtype, tuple[int, ...], int, int] | None] = {}


def _npy(data: bytes) -> np.ndarray:
    """An ``.npy`` array without ``np.load``'s header evaluation (a third of the reading time); never unpickles.
    Headers repeat (one per modality and length), so each distinct one is parsed once."""
    if data[:6] != b"\x93NUMPY":
        raise ValueError("not an .npy entry")
    start = 10 if data[6] == 1 else 12
    end = start + int.from_bytes(data[8:start], "little")
    header = data[:end]
    parsed = _HEADERS.get(header, False)
    if parsed is False:
        m = _NPY_HEADER.search(header)
        parsed = None
        if m is not None:
            shape = tuple(int(x) for x in m.group(2).split(b",") if x.strip())
            n = 1
            for d in shape:
                n *= d
            parsed = (np.dtype(m.group(1).decode()), shape, n, end)
        if len(_HEADERS) < 4096:
            _HEADERS[header] = parsed
    if parsed is None:  # another layout (Fortran order, a record dtype): numpy's reader, still without pickles
        return np.load(io.BytesIO(data), allow_pickle=False)
    dtype, shape, n, offset = parsed
    return np.frombuffer(data, dtype=dtype, count=n, offset=offset).reshape(shape)


def read_token_shard(path: Path) -> list[dict]:
    """Samples of one token shard (``{key}.{name}.npy`` entries in sample order), parsed straight from the tar
    blocks: 4x faster than `tarfile` + `np.load`. The whole shard is checked before any sample is given out:
    raises `ShardError` naming a missing or truncated shard."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ShardError(f"shard {path} is missing or unreadable ({e})") from e
    off, sample, long_name, out = 0, {}, None, []
    while True:
        head = data[off:off + 512]
        if len(head) < 512:
            raise ShardError(f"shard {path} is truncated or corrupt (cut short at byte {len(data)}, no end blocks)")
        if head[0] == 0 and head.count(0) == 512:  # the end-of-archive blocks
            break
        try:
            size = int(head[124:136].strip(b"\0 ") or b"0", 8)
        except ValueError:
            raise ShardError(f"shard {path} is truncated or corrupt (bad header at byte {off})") from None
        body = data[off + 512:off + 512 + size]
        if len(body) < size:
            raise ShardError(f"shard {path} is truncated or corrupt (cut short at byte {len(data)})")
        off += 512 + -(-size // 512) * 512
        kind = head[156:157]
        if kind == b"L":  # GNU long name: the next entry's name
            long_name = body.rstrip(b"\0").decode()
            continue
        name = long_name or head[:100].rstrip(b"\0").decode()
        long_name = None
        if kind not in (b"0", b"\0"):
            continue
        key, _, rest = name.partition(".")
        field = rest.rpartition(".")[0]
        if sample and sample["__key__"] != key:
            out.append(sample)
            sample = {}
        sample["__key__"] = key
        try:
            sample[field] = _npy(body)
        except ValueError as e:
            raise ShardError(f"shard {path}: entry {name} is corrupt ({e})") from e
    if sample:
        out.append(sample)
    return out


def shuffled(items: Iterator, size: int, rng: np.random.Generator) -> Iterator:
    """A shuffle buffer of ``size`` items (1: no shuffle); what is left at the end comes out in random order."""
    if size <= 1:
        yield from items
        return
    buf: list = []
    for item in items:
        if len(buf) < size:
            buf.append(item)
            continue
        j = int(rng.integers(size))
        yield buf[j]
        buf[j] = item
    for j in rng.permutation(len(buf)):
        yield buf[j]


class TokenSource:
    """Pre-tokenized shards (`pretokenize`): ``path`` is the folder holding ``tokens.json``."""

    def __init__(self, path: str | os.PathLike, *, on_bad_shard: str = "raise"):
        self.path = Path(path)
        info_path = self.path / TOKENS_FILE
        if not info_path.exists():
            raise FileNotFoundError(f"{self.path} is not a token dataset: no {TOKENS_FILE} (write one with "
                                    "`polymodal data tokenize`)")
        info = json.loads(info_path.read_text())
        if info.get("format") != FORMAT:
            raise ValueError(f"{info_path}: not a polymodal token dataset (format {info.get('format')!r})")
        if not info.get("complete"):
            raise ValueError(f"{self.path}: tokenization did not finish; rerun `polymodal data tokenize`")
        if on_bad_shard not in ("raise", "skip"):
            raise ValueError(f"on_bad_shard must be 'raise' or 'skip', got {on_bad_shard!r}")
        self.info, self.on_bad_shard = info, on_bad_shard
        self.shards = [self.path / n for n in info["shards"]]
        self.counts = list(info["counts"])
        self.bad_shards: list[str] = []
        self.names = tuple(info["modalities"])
        self.crops = int(info.get("crops", 1))
        self.register()

    def __len__(self) -> int:
        return sum(self.counts)

    def register(self) -> None:
        """Register the stored image-token modalities (a sequence keeps its registered definition)."""
        for m in self.info["modalities"].values():
            spec = dict(m["spec"])
            if spec["kind"] == "image_tokens":
                spec["grid"] = tuple(spec["grid"])
                modalities.register(modalities.Modality(**spec))

    def _plan(self, p: int, slot: int, slots: int, seed: int) -> tuple[list[int], int, int]:
        """(shard indices in reading order, sample stride, sample offset) of ``slot`` in pass ``p``."""
        n = len(self.shards)
        order = np.random.default_rng([seed, p, 11]).permutation(n).tolist()
        if n >= slots:
            return order[slot::slots], 1, 0
        return order, slots, slot

    def pass_count(self, p: int, slot: int, slots: int, seed: int = 0) -> int:
        shards, stride, offset = self._plan(p, slot, slots, seed)
        total = sum(self.counts[i] for i in shards)
        return total if stride == 1 else len(range(offset, total, stride))

    def _read(self, p: int, slot: int, slots: int, seed: int) -> Iterator[dict]:
        shards, stride, offset = self._plan(p, slot, slots, seed)
        k = 0
        for i in shards:
            try:
                for sample in read_token_shard(self.shards[i]):
                    if k % stride == offset:
                        yield sample
                    k += 1
            except ShardError as e:
                if self.on_bad_shard == "raise":
                    raise
                if str(e) not in self.bad_shards:  # skipped: its samples are missing from every pass
                    self.bad_shards.append(str(e))
                    warnings.warn(f"skipping a bad shard: {e}", stacklevel=2)

    def stream(self, seed: int, slot: int, slots: int, *, shuffle: int = 1000, skip: int = 0) -> Iterator[dict]:
        """This slot's samples, pass after pass, forever (module docstring); ``skip`` samples already taken."""
        if len(self) < slots:
            raise ValueError(f"{self.path} holds {len(self)} samples, fewer than the {slots} readers (ranks x workers)")
        p = 0
        while skip and skip >= (c := self.pass_count(p, slot, slots, seed)):
            skip, p = skip - c, p + 1
        while True:
            rng = np.random.default_rng([seed, slot, p, 5])
            for k, sample in enumerate(shuffled(self._read(p, slot, slots, seed), shuffle, rng)):
                c = int(rng.integers(self.crops))  # drawn for skipped samples too: the stream stays the same
                if k < skip:
                    continue
                out = {n: sample[n][c] for n in self.names if n in sample}  # int16 views; stacking widens
                out["__key__"] = sample["__key__"]
                yield out
            skip, p = 0, p + 1


class TextSource:
    """Text files, one document per line (empty lines skipped), tokenized into the ``caption`` modality.

    Lines are split between slots line by line (line i goes to slot i % slots); the files are read into memory.
    """

    def __init__(self, paths, tokenizer: str | os.PathLike, *, modality: str = "caption"):
        paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
        self.paths = [Path(p) for p in paths]
        self.tokenizer_path, self.names = str(tokenizer), (modality,)
        self.lines = [s for p in self.paths for s in (ln.strip() for ln in p.read_text("utf-8").splitlines()) if s]
        if not self.lines:
            raise ValueError(f"no text lines in {', '.join(map(str, self.paths))}")
        self._tok = None

    def __len__(self) -> int:
        return len(self.lines)

    def pass_count(self, p: int, slot: int, slots: int, seed: int = 0) -> int:
        return len(range(slot, len(self.lines), slots))

    def stream(self, seed: int, slot: int, slots: int, *, shuffle: int = 1000, skip: int = 0) -> Iterator[dict]:
        if self._tok is None:
            from ..tokenizers import load_tokenizer

            self._tok = load_tokenizer(self.tokenizer_path)
        name = self.names[0]
        limit = modalities.get(name).max_length
        c = self.pass_count(0, slot, slots)
        if not c:
            raise ValueError(f"{len(self.lines)} text lines are fewer than the {slots} readers (ranks x workers)")
        p, skip = skip // c, skip % c
        while True:
            rng = np.random.default_rng([seed, slot, p, 6])
            for k, line in enumerate(shuffled(iter(self.lines[slot::slots]), shuffle, rng)):
                if k >= skip:
                    yield {name: np.asarray(self._tok.encode_lists([line], max_length=limit)[0], dtype=np.int64)}
            skip, p = 0, p + 1


def open_source(spec: str, *, text_tokenizer: str = "", on_bad_shard: str = "raise"):
    """A token dataset folder, or a text file / glob of ``.txt`` files (needs ``text_tokenizer``)."""
    import glob

    files = sorted(glob.glob(spec)) if glob.has_magic(spec) else [spec]
    if files and all(f.endswith(".txt") for f in files):
        if not text_tokenizer:
            raise ConfigError(f"data.text_tokenizer: the text source {spec} needs a text tokenizer")
        return TextSource(files, text_tokenizer)
    return TokenSource(spec, on_bad_shard=on_bad_shard)
