"""Tar shards written and checked one way by every job that makes them (world synthesis, labeling, tokenizing).

- `atomic_tar`: a shard appears under its final name only once complete (written under ``NAME.tmp-PID``, then
  renamed), so a killed job leaves either the whole shard or a temporary file that the next run deletes.
- `add_member`: fixed member metadata (mtime 0, mode 644), so the same samples always give the same bytes.
- `cut_short`: tarfile stops quietly at a cut inside the last member's data or at a header it cannot parse; this
  checks that the data and the two end blocks are there, and nothing but zeros after the last entry.
- `worker_pool`: the process pool of a sharded job, or None when one process does.
"""

from __future__ import annotations

import io
import multiprocessing as mp
import os
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.pool import Pool
from pathlib import Path

import numpy as np


@contextmanager
def atomic_tar(final: Path) -> Iterator[tarfile.TarFile]:
    tmp = final.with_name(f"{final.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f, tarfile.open(fileobj=f, mode="w", format=tarfile.GNU_FORMAT) as tar:
            yield tar
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


def add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    tar.addfile(info, io.BytesIO(data))


def npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


def cut_short(path: Path, members: list[tarfile.TarInfo]) -> str | None:
    """Why the shard at ``path`` (whose readable members are ``members``) is truncated, or None."""
    if not members:
        return "no entries"
    end = members[-1].offset_data + members[-1].size
    size = path.stat().st_size
    if size < -(-end // 512) * 512 + 1024:
        return f"cut short at byte {size} (the last entry ends at {end})"
    # tarfile also stops quietly at a header that does not parse (bytes overwritten): the entries after it are lost.
    # A whole archive holds only zeros (end blocks, record padding) past its last entry.
    start = -(-end // 512) * 512
    with open(path, "rb") as f:
        f.seek(start)
        while chunk := f.read(1 << 20):
            if chunk.count(0) != len(chunk):
                return f"unreadable entry header at byte {start}: the entries from there on are lost"
    return None


def worker_pool(workers: int, jobs: int) -> Pool | None:
    """A pool of ``min(workers, jobs)`` processes, or None for one worker or one job. Create it before any thread
    (a progress bar's monitor) exists: forking a threaded process is fragile. fork starts workers without
    re-importing torch; where there is no fork, spawn is the only safe choice."""
    if workers <= 1 or jobs <= 1:
        return None
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    return ctx.Pool(min(workers, jobs))
