"""Errors a user sees. Library code raises these; the CLI turns them into one line.

The CLI also turns the OSErrors a user's machine gives (a full or read-only disk, a folder
of another user, a symlink loop) into that line, by `describe_os_error`.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path


class HopeError(Exception):
    """A user-facing problem: bad input, a mismatched store, a missing file.

    The message is one sentence that names the file (when there is one) and what is wrong.
    """


class InputError(HopeError):
    """A file given by the user cannot be used (corrupt video, missing sidecar, bad shape)."""


class StoreMismatchError(HopeError):
    """An existing store was made with another encoder or other settings."""


class CheckpointError(HopeError):
    """A weights file has missing or unexpected keys, or cannot be read safely."""


class DamagedStoreError(HopeError):
    """A feature store's metadata or a clip's chunk is missing or does not decode."""


class RunFileError(HopeError):
    """A file of a run folder (latest.json, state.pt, results.json, split.json) is damaged."""


class DiskFullError(HopeError):
    """Not enough free space for a write that was sized before it started."""


def mount_point(path: str | Path) -> Path:
    """The mount point of the file system that holds `path` (or would hold it)."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    while not os.path.ismount(path) and path != path.parent:
        path = path.parent
    return path


def check_free_space(path: str | Path, needed: int, what: str) -> None:
    """DiskFullError when the file system of `path` has less than `needed` bytes free, before
    a write of about that size starts (the previous state stays as it is)."""
    where = Path(path)
    while not where.exists() and where != where.parent:
        where = where.parent
    free = shutil.disk_usage(where).free
    if free < needed:
        raise DiskFullError(f"{path}: no space left on {mount_point(path)} for {what}, "
                            f"{_mib(needed)} MiB needed, {_mib(free)} MiB free")


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f}"


def describe_os_error(e: OSError) -> str:
    """One line "FILE: problem" for an OSError a user can meet: a full or read-only disk,
    a folder of another user, a symlink loop."""
    name = e.filename
    problem = {
        errno.ENOSPC: f"no space left on {mount_point(name)}" if name is not None else "no space left on the device",
        errno.EDQUOT: "disk quota exceeded",
        errno.EACCES: "permission denied (owned by another user, or read-only)",
        errno.EPERM: "operation not permitted (owned by another user, or read-only)",
        errno.EROFS: "read-only file system",
        errno.ELOOP: "symlink loop (a link that points back to itself)",
    }.get(e.errno, e.strerror or str(e))
    return problem if name is None else f"{name}: {problem}"  # a write to an open file names none
