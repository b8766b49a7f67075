"""A tiny feature store written through hopecli.data.store, with features that follow the
actions differently per task, so a predictor has something task-specific to learn."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from hopecli.data.store import ClipFeatures, FeatureStore

T, P, D, A = 4, 4, 16, 2

# Tiny models on a shared 2-core machine: a second intra-op thread only adds contention
# (the memory backward ran about 100x slower with two threads than with one).
torch.set_num_threads(1)


def make_store(path: Path, tasks: dict[str, int], *, nan_task: str | None = None, seed: int = 0,
               compression: str = "none") -> Path:
    """tasks: label -> number of clips. Features of `nan_task` are all NaN."""
    attrs = {
        "hope_version": "test",
        "encoder": {"name": "test", "config": {}, "checksum": "none", "random_features": True},
        "time_mode": "tubelet", "frames_per_clip": 2 * T, "resolution": 32, "fps": 8.0,
        "tubelet_size": 2, "patch_size": 16, "patches_per_step": P, "grid": [2, 2],
        "action_dim": A, "state_dim": A,
    }
    store = FeatureStore.create_or_resume(path, attrs, steps=T, dim=D, compression=compression)
    rng = np.random.default_rng(seed)
    for k, (task, n) in enumerate(tasks.items()):
        drift = np.random.default_rng(100 + k).normal(size=(A, P, D))  # task-specific action effect
        ids = store.add_clips([f"{task}/clip{i}.mp4#0" for i in range(n)], [task] * n)
        for i in ids:
            actions = rng.uniform(-1, 1, size=(T, A)).astype(np.float32)
            z = np.empty((T, P, D), dtype=np.float32)
            z[0] = rng.normal(size=(P, D))
            for t in range(1, T):
                z[t] = z[t - 1] + np.einsum("a,apd->pd", actions[t - 1], drift)
            if task == nan_task:
                z[:] = np.nan
            store.write(i, ClipFeatures(z.astype(np.float16), actions, np.cumsum(actions, 0)))
    return path


@pytest.fixture
def store_path(tmp_path) -> Path:
    return make_store(tmp_path / "store.zarr", {"a": 6, "b": 6})
