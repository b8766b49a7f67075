"""Which clips a run trains and validates on: its partitions and their held-out clips.

The split is a function of the store and the run's TrainConfig (tasks, base_task,
val_clips or val_fraction, seed) only, so `hope train` and every later reader of the run
(`eval`'s horizons, baselines, probe and in-context curves) hold out the same clips;
split.json records their names (hopecli.runs.files.read_split).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hopecli.errors import HopeError, StoreMismatchError
from hopecli.runs.config import read_run_config
from hopecli.train.config import TrainConfig


def seeded_rng(*key: int | str) -> np.random.Generator:
    """A generator seeded by a tuple of ints and strings (strings hashed with crc32): every
    random choice of a run (its split here; its batch order, replay and jump targets in
    hopecli.train.data) is a pure function of such a key, so a resumed run draws alike."""
    return np.random.default_rng([k if isinstance(k, int) else zlib.crc32(k.encode()) for k in key])


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
        order = seeded_rng(seed, "split", task).permutation(len(names))
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


def protocol_tasks(store, cfg: TrainConfig) -> list[str]:
    """The run's partitions in column order: the base task (if any), then cfg.tasks or every
    other label of the store."""
    available = store.task_names()
    tasks = list(cfg.tasks) if cfg.tasks is not None else [t for t in available if t != cfg.base_task]
    parts = ([cfg.base_task] if cfg.base_task is not None else []) + tasks
    unknown = [t for t in parts if t not in available]
    if unknown:
        raise HopeError(f"{store.path}: no clips with task label(s) {unknown!r}; the store has {available!r}")
    if not tasks:
        raise HopeError(f"{store.path}: no task to learn after the base task {cfg.base_task!r}; "
                        f"the store has {available!r}")
    return parts


def held_out(store, parts: list[str], cfg: TrainConfig) -> Split:
    """Training and validation clips of every partition (TrainConfig: val_clips or val_fraction)."""
    if cfg.val_clips is not None:
        return split_last(store, parts, cfg.val_clips)
    return split_clips(store, parts, cfg.val_fraction, cfg.seed)


def run_split(run_dir: Path, store_path: Path | None = None):
    """(open store, TrainConfig, partitions, validation split) of a run, without its model."""
    from hopecli.data.store import FeatureStore

    saved = read_run_config(run_dir)
    store = FeatureStore.open(store_path or saved.store["path"])
    if store.attrs.get("encoder") != saved.store["encoder"]:
        raise StoreMismatchError(f"{store.path}: encoder differs from the one the run in {run_dir} was trained on")
    cfg = saved.train
    tasks = protocol_tasks(store, cfg)
    return store, cfg, tasks, held_out(store, tasks, cfg)
