"""Several processes writing one store: every clip once, under its own name; a writer
killed while creating the store leaves nothing in the way of the next one."""

import os
import subprocess
import sys
import time

import numpy as np

from hopecli.data.store import FeatureStore

WRITERS, CLIPS = 3, 30

# One writer: says it is ready, waits for GO, then creates (or opens) the store and claims and writes its
# clips one by one; clip k of writer w holds the value 100 * w + k everywhere.
WRITER = """
import pathlib, sys, time
import numpy as np
from hopecli.data.store import ClipFeatures, FeatureStore
path, go, writer, clips = sys.argv[1], pathlib.Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
attrs = {"hope_version": "0", "encoder": {"name": "enc", "config": {}, "checksum": "abc"},
         "time_mode": "tubelet", "frames_per_clip": 4, "resolution": 32, "fps": 8.0, "tubelet_size": 2,
         "patch_size": 16, "patches_per_step": 4, "grid": [2, 2], "action_dim": 2, "state_dim": 3}
pathlib.Path(f"{go}.ready{writer}").touch()
while not go.exists():
    time.sleep(0.001)
store = FeatureStore.create_or_resume(path, attrs, steps=2, dim=8)
for k in range(clips):
    [i] = store.add_clips([f"w{writer}/clip{k}.mp4#0"], [f"w{writer}"])
    value = 100 * writer + k
    store.write(i, ClipFeatures(np.full((2, 4, 8), value, np.float16), np.full((2, 2), value, np.float32),
                                np.full((2, 3), value, np.float32)))
"""


def test_concurrent_writers_keep_every_clip_once_under_its_name(tmp_path):
    path, go = tmp_path / "s.zarr", tmp_path / "go"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(go), str(w), str(CLIPS)],
                                stderr=subprocess.PIPE, text=True, env=env) for w in range(WRITERS)]
    while not all((tmp_path / f"go.ready{w}").exists() for w in range(WRITERS)):  # started: now race
        assert all(w.poll() is None for w in writers), [w.communicate()[1] for w in writers]
        time.sleep(0.01)
    go.touch()
    errors = [w.communicate()[1] for w in writers]
    assert [w.returncode for w in writers] == [0] * WRITERS, errors

    store = FeatureStore.open(path)
    names = store.clips
    wanted = [f"w{w}/clip{k}.mp4#0" for w in range(WRITERS) for k in range(CLIPS)]
    assert sorted(names) == sorted(wanted)  # every clip once
    assert store.done.all()
    for i, name in enumerate(names):  # each under its own name
        writer, k = int(name[1]), int(name.split("clip")[1].split(".")[0])
        clip = store.read(i)
        assert np.all(clip.features == 100 * writer + k) and np.all(clip.actions == 100 * writer + k), name
        assert store.tasks[i] == f"w{writer}"
    assert not list(tmp_path.glob(".s.zarr.creating-*"))  # the losers' builds are gone
