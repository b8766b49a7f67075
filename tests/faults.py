"""Fault injection for the tests of issue 20: damage a store or a run folder as a failing
disk, a careless hand or a full file system would."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import zarr


def chunk_file(store: Path, array: str, index: int) -> Path:
    """The file of clip `index`'s chunk of per-clip array `array` in a store."""
    meta = zarr.open_array(str(Path(store) / array), mode="r")
    return Path(store) / array / meta.metadata.encode_chunk_key((index,) + (0,) * (meta.ndim - 1))


def truncate_chunk(store: Path, array: str, index: int, size: int = 10) -> Path:
    """Cut a chunk file short, as a disk error would."""
    path = chunk_file(store, array, index)
    os.truncate(path, size)
    return path


def delete_chunk(store: Path, array: str, index: int) -> Path:
    path = chunk_file(store, array, index)
    path.unlink(missing_ok=True)
    return path


def corrupt_json(path: Path, text: str = "garbage{") -> Path:
    Path(path).write_text(text)
    return Path(path)


def full_disk(monkeypatch, free: int = 1000) -> None:
    """Every free-space check sees a file system with `free` bytes left."""
    usage = shutil.disk_usage("/")
    monkeypatch.setattr("hopecli.errors.shutil.disk_usage",
                        lambda path: usage._replace(free=free))


def os_error(code: int, filename) -> OSError:
    """The OSError the system gives for `code` on `filename` (as root, chmod stops nothing,
    so read-only and other-user cases raise it from a patched call instead)."""
    return OSError(code, os.strerror(code), str(filename))


def fails_with(code: int, filename):
    """A function that raises os_error(code, filename) whatever it is called with."""
    def fail(*args, **kwargs):
        raise os_error(code, filename)
    return fail


ENOSPC, EACCES, EROFS = errno.ENOSPC, errno.EACCES, errno.EROFS
