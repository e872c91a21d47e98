"""Run folders: durable writes (a file or folder reaches the disk before it is renamed into place), the lock that
keeps two runs out of one folder, and the write check at the start of a run.

A rename is atomic, but without an fsync the new name can reach the disk before the data does: after a power loss
the file is there, truncated or empty. So every file is fsynced, then renamed, then its folder is fsynced (which
makes the rename itself durable).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from . import dist


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


def replace_folder(tmp: Path, final: Path) -> None:
    """Move the complete folder ``tmp`` to ``final`` (a sibling), replacing an old ``final``: every file of ``tmp``
    reaches the disk first, so a reader finds the old folder, the new one or (for the moment between two renames,
    or after a kill there) none, never a part. The old one is renamed aside before it is removed; a kill in
    between leaves it as ``.<name>.old-<pid>``, which `clear_leftovers` removes."""
    for path in sorted(tmp.rglob("*"), reverse=True):  # files before the folders that hold them
        fsync_path(path)
    fsync_path(tmp)
    old = final.with_name(f".{final.name}.old-{os.getpid()}")
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    fsync_path(final.parent)
    shutil.rmtree(old, ignore_errors=True)


def clear_leftovers(final: Path) -> None:
    """Remove the temporary and old copies of ``final`` that a kill in `replace_folder`, or while the temporary one
    was written, left beside it (run under the run folder's lock: no other run is writing one)."""
    for junk in [*final.parent.glob(f".{final.name}.tmp-*"), *final.parent.glob(f".{final.name}.old-*")]:
        shutil.rmtree(junk, ignore_errors=True)


class RunFolderError(OSError):
    """A run folder this run cannot use: another run holds it, or it refuses writes. One line, no errno."""


LOCK = ".lock"
_HELD: set[int] = set()  # this process's run-folder locks


def _drop_inherited_locks() -> None:
    """In a forked child (a data-loader worker): close the copies of the parent's lock descriptors. A flock belongs
    to the open file, which a child's copy keeps open: a worker that outlived its killed run would hold the lock."""
    for fd in _HELD:
        os.close(fd)
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_drop_inherited_locks)


def lock_run_folder(run_dir: Path) -> int | None:
    """Take the run folder's lock (creating the folder) for this process's life: an exclusive ``flock`` on
    ``run_dir/.lock``, which holds the owner's pid. The kernel drops it when the process ends in any way, so a lock
    left by a killed run never blocks the rerun. Returns the descriptor to pass to `unlock_run_folder` (None where
    there is no flock: no lock there). Raises `RunFolderError` naming the pid of the run that holds it."""
    try:
        import fcntl
    except ImportError:  # not POSIX
        return None
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise RunFolderError(f"{run_dir} is in use by another run (pid {owner}); wait for it to end, or use "
                             "another train.out_dir") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    _HELD.add(fd)
    return fd


def unlock_run_folder(fd: int | None) -> None:
    """Release the lock of `lock_run_folder` (the file stays: removing it could let two runs lock two files)."""
    if fd is not None:
        _HELD.discard(fd)
        os.close(fd)


def check_writable(folder: Path) -> None:
    """Refuse, before any step is trained, a folder where files cannot be created (read-only, another owner's): a
    run found out only at its first checkpoint, losing the steps since the start."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-check-", dir=folder)
    except OSError as e:
        raise RunFolderError(f"{folder} is not writable ({e.strerror}); the run writes its checkpoints, metrics and "
                             "release there: make it writable, or use another train.out_dir") from None
    os.close(fd)
    os.unlink(probe)


def claim_run_folder(run_dir: Path, info) -> int | None:
    """Rank 0 checks that the run folder and its checkpoints/ take new files (`files.check_writable`) and takes the
    folder's lock (`files.lock_run_folder`); every rank stops on its refusal (after shutting the process group
    down), so that a torchrun job stops as one. Returns rank 0's lock (None on the other ranks)."""
    lock, problem = None, None
    if info.is_main:
        try:
            (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
            for folder in (run_dir, run_dir / "checkpoints"):  # before the lock: its file is created in run_dir
                check_writable(folder)
            lock = lock_run_folder(run_dir)
        except OSError as e:  # not writable, busy, a path under a file
            unlock_run_folder(lock)
            problem = e
    refused = dist.broadcast_object(None if problem is None else str(problem))
    if refused is not None:
        dist.shutdown()
        raise problem if problem is not None else RunFolderError(f"rank 0 refused {run_dir}: {refused}")
    return lock
