"""Clips for training: batch order, replay, reading by index (the train/validation split:
hopecli.runs.split).

Nothing here holds features in memory beyond the batch being read: batches are read from
the Zarr store by index (one chunk per clip, several clips at once in reader threads), the
next batch in a background thread while the current one trains. Every random choice is a
pure function of (seed, stream, step), so a resumed run draws exactly the batches the
uninterrupted run would have drawn, and every DDP rank draws the same global batch and
takes its own slice of it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from hopecli.runs.split import seeded_rng


def clip_shape(store) -> tuple[int, int, int]:
    """(T, P, D) of the store's clips."""
    return store.clip_shapes()["features"]


def epoch_order(indices: Sequence[int], count: int, start: int, *key: int | str) -> list[int]:
    """Items start .. start+count-1 of an endless stream of reshuffled epochs of `indices`."""
    n = len(indices)
    out: list[int] = []
    pos = start
    while len(out) < count:
        epoch, offset = divmod(pos, n)
        perm = seeded_rng(*key, epoch).permutation(n)
        take = min(count - len(out), n - offset)
        out += [indices[k] for k in perm[offset : offset + take]]
        pos += take
    return out


def reservoir(streams: Sequence[Sequence[int]], capacity: int, seed: int) -> list[int]:
    """Reservoir sample (Algorithm R) of `capacity` items from the streams in order."""
    rng = seeded_rng(seed, "replay")
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
        return seeded_rng(self.seed, self.stream, "tau", step).integers(taus.start, taus.stop, self.batch_size).tolist()


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
    shapes = store.clip_shapes()
    # numpy's allocator asks the kernel for huge pages on large arrays: reading into a fresh
    # torch.empty batch spent most of its time faulting in 4 KiB pages (1.8 against 4.8 GB/s
    # into numpy's, 1 thread, 4 MiB clips, page cache warm; bench/store.py)
    out = (np.empty((B, *shapes["features"]), dtype=np.float16), np.empty((B, *shapes["actions"]), dtype=np.float32),
           np.empty((B, *shapes["states"]), dtype=np.float32))
    threads = READ_THREADS if threads is None else threads
    if threads <= 1 or B <= 1:
        store.read_into(indices, *out)
    elif threads >= READ_THREADS:
        store.read_into(indices, *out, map=_reader_pool().map)
    else:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            store.read_into(indices, *out, map=pool.map)
    return Batch(*(torch.from_numpy(a) for a in out))


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
