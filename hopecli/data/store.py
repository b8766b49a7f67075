"""The feature store: a Zarr v3 group of encoded clips, written clip by clip and resumable.

Layout (interfaces.md): `features [N, T, P, D]` float16, `actions [N, T, A]` and
`states [N, T, S]` float32, `done [N]` bool, `clip [N]` and `task [N]` strings; every
per-clip array has one chunk per clip, so each clip is written to files of its own (also
the unit a rank-sharded writer would own). Chunk files are replaced atomically by Zarr's
local store, and `done[i]` is set only after clip i's arrays are written, so a run killed
at any point leaves a store whose done clips are complete; a re-run skips them.

Optional: `object_states [N, T, K]` float32 (the simulated object's state resampled to
the steps like `states`, NaN for clips without one), created by the first clip that
brings it; stores without it work as before.

The number of clips N is the length of `done`, which is resized last when clips are
added: arrays that a killed run had already grown further are simply reused.

Several writers (concurrent `extract` runs, the ranks of `extract --shard I/N`) may share
one store. A new store is built under a temporary name beside its path and renamed into
place, so it appears whole or not at all (a writer killed while creating it leaves only
the temporary folder, removed by the next creation on that machine), and the first rename
wins: the others open the store it made. Clips are claimed (names appended, N grown)
while holding a file lock beside the store (`STORE.lock`, the `filelock` package), so every
clip gets one slot of its own; writing a claimed clip's chunks needs no lock.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import sys
import threading
import uuid
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from filelock import FileLock
from zarr.core.buffer.cpu import NDBuffer

from hopecli.data.compression import COMPRESSIONS, DEFAULT_COMPRESSION
from hopecli.errors import DamagedStoreError, HopeError, StoreMismatchError, check_free_space


class NonFiniteError(HopeError):
    """A clip in a store holds NaN or infinite values."""


class UnfinishedClipsWarning(UserWarning):
    """A store names clips that are not marked done: they are left out of train and eval."""

PER_CLIP = ("features", "actions", "states")
OPTIONAL_PER_CLIP = ("object_states",)
# attributes a re-run must agree on to append to or resume a store
MATCHED_ATTRS = ("time_mode", "frames_per_clip", "resolution", "fps", "sampling",
                 "tubelet_size", "patch_size", "patches_per_step", "grid",
                 "action_dim", "state_dim")
MATCHED_ENCODER = ("name", "checksum", "which", "config")
REQUIRED_ATTRS = ("encoder", "time_mode", "frames_per_clip", "resolution", "fps",
                  "tubelet_size", "patch_size", "patches_per_step", "grid",
                  "action_dim", "state_dim")
NAME_CHUNK = 4096
# attribute of a store whose writers write every chunk (also all-zero ones): there a
# missing chunk file is damage; in older stores an all-zero actions or states chunk was
# left out and reads as zeros
EVERY_CHUNK = "every_chunk_written"
SPACE_MARGIN = 64 << 10  # metadata and file system overhead beside a clip's chunks


def _clip_bytes(clip: ClipFeatures) -> int:
    """Bytes a clip's chunks take at most (compression only makes them smaller)."""
    signals = [a for a in (clip.actions, clip.states, clip.object_states) if a is not None]
    return 2 * clip.features.size + 4 * sum(a.size for a in signals) + SPACE_MARGIN


def _compressors(compression: str):
    """The Zarr compressors of a codec name (None: the bytes alone)."""
    if compression == "none":
        return None
    if compression == "zstd":
        return zarr.codecs.ZstdCodec(level=0)
    if compression == "lz4":
        return zarr.codecs.BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle", typesize=2)
    raise ValueError(f"compression must be one of {COMPRESSIONS}, got {compression!r}")


@dataclass(frozen=True)
class ClipFeatures:
    """One clip's encoded steps, or a batch of them with a leading batch dim."""

    features: np.ndarray  # [T, P, D] float16 (or [B, T, P, D])
    actions: np.ndarray  # [T, A] float32
    states: np.ndarray  # [T, S] float32
    object_states: np.ndarray | None = None  # [T, K] float32, when the sidecar has them


def _plain(value: Any) -> Any:
    """The value as it reads back from JSON attributes (tuples -> lists, ...)."""
    return json.loads(json.dumps(value))


def _first_difference(stored: Any, wanted: Any, name: str) -> tuple[str, Any, Any] | None:
    if isinstance(stored, dict) and isinstance(wanted, dict):
        for key in sorted(set(stored) | set(wanted)):
            found = _first_difference(stored.get(key), wanted.get(key), f"{name}.{key}")
            if found:
                return found
        return None
    return None if stored == wanted else (name, stored, wanted)


def _temporary_name(path: Path) -> Path:
    """A fresh folder name beside `path` for building it, after removing the ones that
    writers on this machine left when they were killed while creating it."""
    prefix = f".{path.name}.creating-{socket.gethostname()}-"
    path.parent.mkdir(parents=True, exist_ok=True)
    for old in path.parent.glob(f"{glob.escape(prefix)}*"):
        pid = old.name[len(prefix):].split("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    return path.parent / f"{prefix}{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def check_metadata(path: Path) -> None:
    """DamagedStoreError naming the first zarr.json of the store (the group's or an array's)
    that is not a JSON object, so a damaged one is one line instead of a JSONDecodeError."""
    for meta in [path / "zarr.json", *sorted(path.glob("*/zarr.json"))]:
        try:
            data = json.loads(meta.read_bytes())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DamagedStoreError(f"{meta}: damaged store metadata (not valid JSON: {e}); "
                                    "the store cannot be read, extract it again") from None
        if not isinstance(data, dict) or "zarr_format" not in data:
            raise DamagedStoreError(f"{meta}: damaged store metadata (not a Zarr v3 metadata object); "
                                    "the store cannot be read, extract it again")


def _build(folder: Path, attrs: dict[str, Any], steps: int, dim: int, compression: str) -> None:
    """A new, empty store in `folder` (which must not exist); `compression` codes the features."""
    group = zarr.open_group(str(folder), mode="w-", attributes={**attrs, EVERY_CHUNK: True})
    p, a, s = attrs["patches_per_step"], attrs["action_dim"], attrs["state_dim"]
    group.create_array("features", shape=(0, steps, p, dim), chunks=(1, steps, p, dim),
                       dtype="float16", fill_value=0, compressors=_compressors(compression))
    group.create_array("actions", shape=(0, steps, a), chunks=(1, steps, a),
                       dtype="float32", fill_value=0)
    group.create_array("states", shape=(0, steps, s), chunks=(1, steps, s),
                       dtype="float32", fill_value=0)
    for name in ("clip", "task"):
        group.create_array(name, shape=(0,), chunks=(NAME_CHUNK,), dtype=str)
    group.create_array("done", shape=(0,), chunks=(1,), dtype=bool, fill_value=False)


def _read_file_into(path: Path, out: np.ndarray) -> bool | None:
    """Whether `path` held exactly out.nbytes bytes, now in `out` (False: another size; None:
    no such file)."""
    try:
        with open(path, "rb", buffering=0) as f:
            n = f.readinto(memoryview(out).cast("B"))
            return n == out.nbytes and not f.read(1)
    except FileNotFoundError:
        return None


def _finite_rows(values: np.ndarray) -> np.ndarray:
    """[n, k] -> [n] bool, whether every value of a row is finite. float16 is tested on its
    bits (exponent all ones = inf or NaN), several times faster than np.isfinite on halves."""
    if values.dtype == np.float16:
        return ((values.view(np.uint16) & 0x7C00) != 0x7C00).all(axis=1)
    return np.isfinite(values).all(axis=1)


class FeatureStore:
    """A feature store on disk. `open` reads; `create_or_resume` is for writers."""

    def __init__(self, path: Path, group: zarr.Group) -> None:
        self.path = path
        self.group = group
        self.attrs: dict[str, Any] = dict(group.attrs)
        self.created = False  # whether create_or_resume made it
        self._warned = False  # about clips not marked done
        self.finite_checked: set[int] = set()  # clips read and found finite since opening
        self._arrays: dict[str, zarr.Array] = {}  # the read path's open arrays
        # read_into's copy of the actions and states of every clip it has read, [n, T, k] each,
        # and which rows hold one: after a clip's first read its small arrays cost no Zarr call
        self._small: dict[str, np.ndarray] = {}
        self._small_read = np.zeros(0, dtype=bool)
        self._small_lock = threading.Lock()  # the training loader reads in a thread beside validation

    # -- opening ---------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | Path, *, writable: bool = False) -> FeatureStore:
        """Open an existing store; HopeError naming the path if it is missing or not a store."""
        path = Path(path)
        if not path.exists():
            raise HopeError(f"{path}: no such feature store")
        if (path / "zarr.json").is_file():
            check_metadata(path)
        try:
            group = zarr.open_group(str(path), mode="r+" if writable else "r")
        except (zarr.errors.BaseZarrError, FileNotFoundError, ValueError) as e:
            raise HopeError(f"{path}: not a Zarr group, so not a feature store") from e
        missing = [name for name in PER_CLIP + ("done", "clip", "task") if name not in group]
        missing += [f"attribute {key}" for key in REQUIRED_ATTRS if key not in group.attrs]
        if missing:
            raise HopeError(f"{path}: not a hope feature store (missing {', '.join(missing)})")
        return cls(path, group)

    @classmethod
    def create_or_resume(cls, path: str | Path, attrs: dict[str, Any], *, steps: int,
                         dim: int, compression: str = DEFAULT_COMPRESSION) -> FeatureStore:
        """Open `path` for writing, creating it with `attrs` if it does not exist.

        An existing store must have been made with the same encoder and settings; otherwise
        StoreMismatchError names the store and the first field that differs. `created` on
        the result tells whether this call made the store (False when another writer did).
        `compression` (COMPRESSIONS) applies to a store this call creates; an existing
        store keeps its own.
        """
        path = Path(path)
        _compressors(compression)  # ValueError for an unknown name, before anything is made
        attrs = _plain(attrs)
        missing = [key for key in REQUIRED_ATTRS if key not in attrs]
        if missing:
            raise ValueError(f"store attributes lack {missing}")
        if not cls.exists(path):
            tmp = _temporary_name(path)
            _build(tmp, attrs, steps, dim, compression)
            try:
                os.rename(tmp, path)  # atomic; refused when a writer's store is already there
            except OSError as e:
                shutil.rmtree(tmp, ignore_errors=True)
                if not cls.exists(path):
                    raise HopeError(f"{path}: cannot create the feature store ({e.strerror})") from e
            else:
                store = cls(path, zarr.open_group(str(path), mode="r+"))
                store.created = True
                return store
        store = cls.open(path, writable=True)
        store.check_compatible(attrs)
        return store

    @staticmethod
    def exists(path: str | Path) -> bool:
        """Whether `path` holds something (an empty folder counts as nothing: it is replaced)."""
        path = Path(path)
        return path.exists() and not (path.is_dir() and not any(path.iterdir()))

    def check_compatible(self, attrs: dict[str, Any]) -> None:
        """StoreMismatchError if `attrs` (encoder, time mode, frames, ...) differ from ours."""
        attrs = _plain(attrs)
        pairs = [(f"encoder.{key}", self.attrs["encoder"].get(key), attrs["encoder"].get(key))
                 for key in MATCHED_ENCODER]
        pairs += [(key, self.attrs.get(key), attrs.get(key)) for key in MATCHED_ATTRS]
        for name, stored, wanted in pairs:
            found = _first_difference(stored, wanted, name)
            if found:
                field, old, new = found
                raise StoreMismatchError(
                    f"{self.path}: store was made with {field} = {old!r}, not {new!r}; "
                    "use another --out or the settings (and encoder) it was made with"
                )

    # -- writing ---------------------------------------------------------------------

    def writer_lock(self) -> FileLock:
        """The lock writers hold while they claim clips (a file beside the store)."""
        return FileLock(str(self.path.parent / f"{self.path.name}.lock"))

    def add_clips(self, clips: Sequence[str], tasks: Sequence[str]) -> list[int]:
        """Indices of the given clip ids, appending the ones the store does not have yet.

        Holds the writer lock: concurrent writers each get slots of their own, and a clip
        id that another writer has claimed meanwhile is found, not added twice.
        """
        with self.writer_lock():
            return self._add_clips(clips, tasks)

    def _add_clips(self, clips: Sequence[str], tasks: Sequence[str]) -> list[int]:
        known = {name: i for i, name in enumerate(self.clips)}
        new = [(c, t) for c, t in zip(clips, tasks) if c not in known]
        if new:
            start = len(self)
            end = start + len(new)
            for name in PER_CLIP + OPTIONAL_PER_CLIP + ("clip", "task"):
                if name not in self.group:
                    continue
                array = self.group[name]
                if array.shape[0] < end:
                    array.resize((end,) + array.shape[1:])
            self.group["clip"][start:end] = np.array([c for c, _ in new], dtype=str)
            self.group["task"][start:end] = np.array([t for _, t in new], dtype=str)
            self.group["done"].resize((end,))  # last: N grows only once names are in place
            known.update({c: start + k for k, (c, _) in enumerate(new)})
        return [known[c] for c in clips]

    def write(self, index: int, clip: ClipFeatures) -> None:
        """Write clip `index` and then mark it done."""
        if not 0 <= index < len(self):
            raise IndexError(f"clip index {index} out of range for {len(self)} clips")
        # every chunk is written, also one equal to the fill value (all-zero actions), so that
        # a chunk file that is missing always means damage, never zeros
        check_free_space(self.path, _clip_bytes(clip), f"clip {index}")
        with zarr.config.set({"array.write_empty_chunks": True}):
            self.group["features"][index] = clip.features.astype(np.float16)
            self.group["actions"][index] = clip.actions.astype(np.float32)
            self.group["states"][index] = clip.states.astype(np.float32)
            if clip.object_states is not None:
                self._object_states_array(clip.object_states.shape[-1])[index] = clip.object_states.astype(np.float32)
            self.group["done"][index] = True

    def _object_states_array(self, dim: int):
        """The object_states array, created (NaN-filled, one chunk per clip) on first use,
        under the writer lock, so concurrent writers create it once and grow it together."""
        if "object_states" not in self.group:
            with self.writer_lock():
                if "object_states" not in self.group:
                    steps = self.group["states"].shape[1]
                    self.group.create_array("object_states", shape=(self.group["states"].shape[0], steps, dim),
                                            chunks=(1, steps, dim), dtype="float32", fill_value=float("nan"))
        array = self.group["object_states"]
        if array.shape[-1] != dim:
            raise StoreMismatchError(f"{self.path}: the store's object states have {array.shape[-1]} dims, "
                                     f"this clip's {dim}")
        return array

    # -- reading ---------------------------------------------------------------------

    def __len__(self) -> int:
        return self.group["done"].shape[0]

    @property
    def clips(self) -> list[str]:
        return [str(c) for c in self.group["clip"][: len(self)]] if len(self) else []

    @property
    def tasks(self) -> list[str]:
        return [str(t) for t in self.group["task"][: len(self)]] if len(self) else []

    @property
    def done(self) -> np.ndarray:
        return np.asarray(self.group["done"][:], dtype=bool)

    def task_names(self) -> list[str]:
        """Distinct task labels in first-seen order (over all clips, done or not)."""
        return list(dict.fromkeys(self.tasks))

    def indices(self, tasks: Sequence[str] | None = None) -> list[int]:
        """Indices of done clips, only those of the given task labels when given.

        Warns once (UnfinishedClipsWarning) when the store names clips that are not done, so
        that a clip whose done chunk was lost is not left out silently."""
        done = self.done
        if not self._warned and not done.all():
            self._warned = True
            names = [self.clips[i] for i in np.flatnonzero(~done)]
            warnings.warn(f"{self.path}: {len(names)} clip(s) not marked done are left out "
                          f"(first {names[0]!r}): unfinished, or their done chunk is lost; "
                          f"`hope check {self.path}` tells which", UnfinishedClipsWarning, stacklevel=2)
        if tasks is None:
            return [int(i) for i in np.flatnonzero(done)]
        unknown = sorted(set(tasks) - set(self.task_names()))
        if unknown:
            raise HopeError(f"{self.path}: no task {unknown[0]!r}; tasks are {self.task_names()}")
        wanted = set(tasks)
        return [i for i, t in enumerate(self.tasks) if done[i] and t in wanted]

    @property
    def has_object_states(self) -> bool:
        return "object_states" in self.group

    def read_object_states(self, indices: Sequence[int]) -> np.ndarray:
        """[n, T, K] float32 object states of the clips (NaN where a clip has none)."""
        if not self.has_object_states:
            raise HopeError(f"{self.path}: the store holds no object states (its sidecars had none)")
        return np.asarray(self.group["object_states"].oindex[np.asarray(indices, dtype=np.int64)], np.float32)

    def check_finite(self, indices: Sequence[int], data: ClipFeatures) -> None:
        """NonFiniteError naming the store and the first clip of `indices` (the clips `data`
        holds, batch dim first, or one clip) with a NaN or infinite value."""
        for name in PER_CLIP:
            finite = _finite_rows(np.asarray(getattr(data, name)).reshape(len(indices), -1))
            if not finite.all():
                i = int(indices[int(np.argmin(finite))])
                raise NonFiniteError(
                    f"{self.path}: clip {self.clips[i]!r} (index {i}) has NaN or infinite {name}; "
                    "extract it again or leave its task out")

    def read_into(self, indices: Sequence[int], features: np.ndarray, actions: np.ndarray,
                  states: np.ndarray, map: Callable = map) -> None:
        """Clips `indices` written straight into the given arrays ([B, T, P, D] float16,
        [B, T, A] and [B, T, S] float32, C-contiguous), in that order, without intermediate
        copies; `map(fn, range(B))` reads the features clip by clip (pass a thread pool's map
        to read several at once).

        An uncompressed features chunk is one file of raw little-endian float16 (the Zarr v3
        `bytes` codec alone), read with one readinto, releasing the GIL; other codecs go
        through Zarr. A chunk file that is missing (Zarr would read zeros) or does not decode
        is a DamagedStoreError naming the clip and the file. A clip's actions and states are
        read through Zarr once, at its first read since the store was opened, and kept (a
        Zarr call costs milliseconds, about as long as reading a clip's 4 MiB of features);
        that first read also checks that the clip is finite: NonFiniteError naming the store
        and the clip.
        """
        idx = np.asarray(indices, dtype=np.int64)
        last = int(idx.max(initial=0))
        with self._small_lock:
            self._read_small(idx)
            actions[:] = self._small["actions"][idx]
            states[:] = self._small["states"][idx]
        raw = self._raw_chunks(last)
        features_array = self._read_array("features", last)

        def one(k: int) -> None:
            i = int(idx[k])
            if raw is not None:
                got = _read_file_into(raw(i), features[k])
                if got is None:
                    raise self._damage(i, "features", "is missing")
            else:
                got = False
                if not self.chunk_file("features", i).is_file():
                    raise self._damage(i, "features", "is missing")
            if not got:  # compressed, or a raw file of another size: Zarr decodes or says why not
                try:
                    features_array.get_basic_selection(i, out=NDBuffer.from_numpy_array(features[k]))
                except Exception as e:  # codec errors are plain RuntimeError / ValueError
                    raise self._damage(i, "features", f"does not decode ({e})") from None
            if i not in self.finite_checked:
                self.check_finite([i], ClipFeatures(features[k], actions[k], states[k]))
                self.finite_checked.add(i)

        for _ in map(one, range(len(idx))):
            pass

    def _read_small(self, idx: np.ndarray) -> None:
        """Read the actions and states of the clips of `idx` not read before into _small."""
        end = int(idx.max(initial=-1)) + 1
        if end > len(self._small_read):  # the first read, or a writer has grown the store
            grown = max(end, len(self._small_read) * 2)
            self._small_read = np.concatenate([self._small_read, np.zeros(grown - len(self._small_read), bool)])
            for name in ("actions", "states"):
                array = self._read_array(name, end - 1)
                old = self._small.get(name)
                self._small[name] = np.zeros((grown, *array.shape[1:]), dtype=np.float32)
                if old is not None:
                    self._small[name][: len(old)] = old
        new = np.unique(idx[~self._small_read[idx]])
        if not len(new):
            return
        for i in new:  # clip by clip, features first, as read_batch
            for name in PER_CLIP:
                if self._missing_is_damage(name) and not self.chunk_file(name, int(i)).is_file():
                    raise self._damage(int(i), name, "is missing")
        for name in ("actions", "states"):
            self._small[name][new] = self._read(name, new, self._read_array(name, int(new[-1])))
        self._small_read[new] = True

    def clip_shapes(self) -> dict[str, tuple[int, ...]]:
        """The shape of one clip's features, actions and states ([T, P, D], [T, A], [T, S])."""
        return {name: tuple(self._read_array(name, 0).shape[1:]) for name in PER_CLIP}

    def _raw_chunks(self, index: int) -> Callable[[int], Path] | None:
        """clip index -> the file of its features chunk, when that file holds the raw
        values (local store, one chunk per clip, the bytes codec alone, little-endian)."""
        array = self._read_array("features", index)
        codecs = array.metadata.codecs
        if not (isinstance(array.store, zarr.storage.LocalStore) and len(codecs) == 1
                and isinstance(codecs[0], zarr.codecs.BytesCodec) and sys.byteorder == "little"
                and array.metadata.chunk_grid.chunk_shape == (1,) + array.shape[1:]):
            return None
        root = Path(str(array.store.root)) / array.path
        rest = (0,) * (array.ndim - 1)
        return lambda i: root / array.metadata.encode_chunk_key((i,) + rest)

    def _read_array(self, name: str, index: int) -> zarr.Array:
        """The array `name`, opened once (opening reads its metadata from disk), again when
        `index` lies past the length it had then (a writer has grown it since)."""
        array = self._arrays.get(name)
        if array is None or index >= array.shape[0]:
            array = self._arrays[name] = self.group[name]
        return array

    def read(self, index: int) -> ClipFeatures:
        batch = self.read_batch([index])
        return ClipFeatures(features=batch.features[0], actions=batch.actions[0], states=batch.states[0])

    def read_batch(self, indices: Sequence[int]) -> ClipFeatures:
        """The clips' arrays; DamagedStoreError naming the clip and the chunk file when one
        is missing (Zarr would read it as zeros) or does not decode."""
        idx = np.asarray(indices, dtype=np.int64)
        for i in idx:
            for name in PER_CLIP:
                if self._missing_is_damage(name) and not self.chunk_file(name, int(i)).is_file():
                    raise self._damage(int(i), name, "is missing")
        return ClipFeatures(**{name: self._read(name, idx) for name in PER_CLIP})

    def _missing_is_damage(self, name: str) -> bool:
        """Whether a missing chunk file of array `name` can only be damage. Stores made before
        every chunk was written (no `every_chunk_written` attribute) left out the chunks of
        all-zero actions and states (an imported clip's states), which read as zeros."""
        return name == "features" or bool(self.attrs.get(EVERY_CHUNK))

    def _read(self, name: str, idx: np.ndarray, array: zarr.Array | None = None) -> np.ndarray:
        array = self.group[name] if array is None else array
        try:
            return array.oindex[idx]
        except Exception:  # codec errors are plain RuntimeError / ValueError: find the clip
            for i in idx:
                try:
                    array[int(i)]
                except Exception as e:
                    raise self._damage(int(i), name, f"does not decode ({e})") from None
            raise

    def chunk_file(self, name: str, index: int) -> Path:
        """The file of clip `index`'s chunk of per-clip array `name`."""
        array = self._read_array(name, index)
        key = array.metadata.encode_chunk_key((index,) + (0,) * (array.ndim - 1))
        return self.path / name / key

    def _damage(self, index: int, name: str, problem: str) -> DamagedStoreError:
        clip = self.clips[index] if index < len(self) else "?"
        return DamagedStoreError(
            f"{self.chunk_file(name, index)}: clip {clip!r} (index {index}) of the store: its {name} chunk "
            f"{problem}; `hope check {self.path} --repair` extracts it again")

    def damage(self, index: int) -> str | None:
        """What is wrong with done clip `index` (a chunk missing or not decoding), or None."""
        try:
            self.read_batch([index])
        except DamagedStoreError as e:
            return str(e)
        return None

    def unfinished(self) -> list[int]:
        """Indices of clips that are named but not marked done (being written, killed while
        being written, or their done chunk lost)."""
        return [int(i) for i in np.flatnonzero(~self.done)]
