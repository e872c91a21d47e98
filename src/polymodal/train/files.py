"""Durable writes for run folders: a file or folder reaches the disk before it is renamed into place.

A rename is atomic, but without an fsync the new name can reach the disk before the data does: after a power loss
the file is there, truncated or empty. So every file is fsynced, then renamed, then its folder is fsynced (which
makes the rename itself durable).
"""

from __future__ import annotations

import os
from pathlib import Path


def fsync_path(path: str | Path) -> None:
    """Flush a file's data, or a folder's entries, to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Replace ``path`` with ``text``: readers see the old content or the new one, never a part, also after a
    power loss."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_path(path.parent)
