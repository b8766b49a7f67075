"""Clips for training: the train/validation split, batch order, replay, reading by index.

Nothing here holds features in memory beyond the batch being read: batches are read from
the Zarr store by index (one chunk per clip, several clips at once in reader threads), the
next batch in a background thread while the current one trains. Every random choice is a
pure function of (seed, stream, step), so a resumed run draws exactly the batches the
uninterrupted run would have drawn, and every DDP rank draws the same global batch and
takes its own slice of it.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from hopecli.errors import HopeError


def _rng(*key: int | str) -> np.random.Generator:
    """A generator seeded by a tuple of ints and strings (strings hashed with crc32)."""
    return np.random.default_rng([k if isinstance(k, int) else zlib.crc32(k.encode()) for k in key])


def clip_shape(store) -> tuple[int, int, int]:
    """(T, P, D) of the store's clips."""
    _, T, P, D = store.group["features"].shape
    return T, P, D


def source_clip(clip_id: str) -> str:
    """The video a store entry came from: the clip id without its window suffix ("#k")."""
    return clip_id.rsplit("#", 1)[0]


@dataclass
class Split:
    """Store indices per task label, training and held-out validation (sorted)."""

    train: dict[str, list[int]]
    val: dict[str, list[int]]


def _videos(store, task: str) -> dict[str, list[int]]:
    """The store indices of a task's done clips grouped by source video, in store order."""
    clip_ids = store.clips
    groups: dict[str, list[int]] = {}
    for i in store.indices([task]):
        groups.setdefault(source_clip(clip_ids[i]), []).append(i)
    return groups


def split_clips(store, tasks: Sequence[str], val_fraction: float, seed: int) -> Split:
    """Hold out a fixed fraction (at least one) of every task's videos for validation.

    Windows of the same video stay on the same side. The choice depends on the seed and the
    task label only, so runs with other task orders or strategies validate on the same clips.
    """
    train: dict[str, list[int]] = {}
    val: dict[str, list[int]] = {}
    for task in tasks:
        groups = _videos(store, task)
        names = sorted(groups)
        if len(names) < 2:
            raise HopeError(
                f"{store.path}: task {task!r} has {len(names)} finished clip(s); "
                "need at least 2 to hold one out for validation"
            )
        order = _rng(seed, "split", task).permutation(len(names))
        n_val = min(len(names) - 1, max(1, round(val_fraction * len(names))))
        val[task] = sorted(i for k in order[:n_val] for i in groups[names[k]])
        train[task] = sorted(i for k in order[n_val:] for i in groups[names[k]])
    return Split(train=train, val=val)


def split_last(store, tasks: Sequence[str], count: int) -> Split:
    """Hold out the last `count` videos of every task, in store order (the seeds' protocol:
    the last clips of each partition's clip range; an import keeps clip-number order).

    A video's windows stay together, so `count` counts videos; with one window per video,
    as in an import, it counts clips.
    """
    train: dict[str, list[int]] = {}
    val: dict[str, list[int]] = {}
    for task in tasks:
        groups = list(_videos(store, task).values())
        if len(groups) <= count:
            raise HopeError(
                f"{store.path}: task {task!r} has {len(groups)} finished clip(s); holding out the "
                f"last {count} for validation leaves none to train on"
            )
        train[task] = sorted(i for g in groups[:-count] for i in g)
        val[task] = sorted(i for g in groups[-count:] for i in g)
    return Split(train=train, val=val)


def epoch_order(indices: Sequence[int], count: int, start: int, *key: int | str) -> list[int]:
    """Items start .. start+count-1 of an endless stream of reshuffled epochs of `indices`."""
    n = len(indices)
    out: list[int] = []
    pos = start
    while len(out) < count:
        epoch, offset = divmod(pos, n)
        perm = _rng(*key, epoch).permutation(n)
        take = min(count - len(out), n - offset)
        out += [indices[k] for k in perm[offset : offset + take]]
        pos += take
    return out


def reservoir(streams: Sequence[Sequence[int]], capacity: int, seed: int) -> list[int]:
    """Reservoir sample (Algorithm R) of `capacity` items from the streams in order."""
    rng = _rng(seed, "replay")
    buffer: list[int] = []
    seen = 0
    for stream in streams:
        for item in stream:
            if len(buffer) < capacity:
                buffer.append(item)
            else:
                k = int(rng.integers(0, seen + 1))
                if k < capacity:
                    buffer[k] = item
            seen += 1
    return buffer


@dataclass
class BatchPlan:
    """Which clips and jump targets a step of one experience uses (global batch).

    `indices` are the experience's training clips; `replay` (possibly empty) the buffer of
    earlier clips, of which `replay_count` go into every batch.
    """

    indices: list[int]
    batch_size: int
    seed: int
    stream: str
    replay: list[int]
    replay_count: int = 0

    def clips(self, step: int) -> list[int]:
        fresh = self.batch_size - self.replay_count
        batch = epoch_order(self.indices, fresh, step * fresh, self.seed, self.stream)
        if self.replay_count:
            batch += epoch_order(self.replay, self.replay_count, step * self.replay_count,
                                 self.seed, self.stream, "replay")
        return batch

    def jump_targets(self, step: int, taus: range) -> list[int]:
        """A tau drawn uniformly from `taus` (losses.jump_range) for every clip of the batch."""
        return _rng(self.seed, self.stream, "tau", step).integers(taus.start, taus.stop, self.batch_size).tolist()


@dataclass
class Batch:
    features: Tensor  # [B, T, P, D] float16 as stored
    actions: Tensor  # [B, T, A]
    states: Tensor  # [B, T, S]

    def to(self, device: torch.device) -> "Batch":
        return Batch(*(t.to(device, non_blocking=True) for t in (self.features, self.actions, self.states)))


READ_THREADS = 8  # clips read at once by read_batch (bench/store.py: near-linear to the cores)
_readers: ThreadPoolExecutor | None = None


def _reader_pool() -> ThreadPoolExecutor:
    global _readers
    if _readers is None:
        _readers = ThreadPoolExecutor(max_workers=READ_THREADS, thread_name_prefix="hope-read")
    return _readers


def read_batch(store, indices: Sequence[int], *, threads: int | None = None) -> Batch:
    """Read clips by store index, in the asked order, each clip straight into its slot of the
    batch tensors (no copy after the read), up to `threads` clips at once (READ_THREADS).

    The first read of each clip since the store was opened checks that it is finite:
    NonFiniteError naming the store and the clip (FeatureStore.read_into).
    """
    B = len(indices)
    _, T, P, D = store.group["features"].shape
    A, S = store.group["actions"].shape[-1], store.group["states"].shape[-1]
    features = torch.empty(B, T, P, D, dtype=torch.float16)
    actions = torch.empty(B, T, A, dtype=torch.float32)
    states = torch.empty(B, T, S, dtype=torch.float32)
    threads = READ_THREADS if threads is None else threads
    out = features.numpy(), actions.numpy(), states.numpy()
    if threads <= 1 or B <= 1:
        store.read_into(indices, *out)
    elif threads >= READ_THREADS:
        store.read_into(indices, *out, map=_reader_pool().map)
    else:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            store.read_into(indices, *out, map=pool.map)
    return Batch(features, actions, states)


def prefetch(store, index_lists: Iterator[Sequence[int]]) -> Iterator[Batch]:
    """read_batch for each index list, reading the next one while the caller works."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = None
        for idx in index_lists:
            future = pool.submit(read_batch, store, idx)
            if pending is not None:
                yield pending.result()
            pending = future
        if pending is not None:
            yield pending.result()
