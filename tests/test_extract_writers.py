"""`hope extract` processes sharing one store: concurrent runs on other folders, --shard
ranks, and a run killed while it creates the store (real processes and signals)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from hopecli.cli import hope
from hopecli.data.store import FeatureStore
from hopecli.data.synth import synth_clips
from hopecli.extract import shard_videos

FRAMES = 4
HOPE = [sys.executable, "-c", "from hopecli.cli import main; main()"]
ENV = dict(os.environ, OMP_NUM_THREADS="1")


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> tuple[Path, Path]:
    """Two folders of three clips each, with the same file names (other clips inside)."""
    root = tmp_path_factory.mktemp("folders")
    synth_clips(root / "one", [("low", 0.1)], clips=3, frames=FRAMES, resolution=64, seed=1)
    synth_clips(root / "two", [("low", 0.8)], clips=3, frames=FRAMES, resolution=64, seed=2)
    return root / "one", root / "two"


def _extract(*args):
    return [*HOPE, "extract", *map(str, args), "--frames", str(FRAMES), "--batch-size", "1", "--json"]


def _by_video(path: Path) -> dict[Path, np.ndarray]:
    """Features of every done clip of a store by the video it came from (clip ids are
    relative to the store's source_root, or absolute for videos outside it)."""
    store = FeatureStore.open(path)
    root = Path(store.attrs["source_root"])
    out = {}
    for i in store.indices():
        rel = store.clips[i].rsplit("#", 1)[0]
        video = (root / rel).resolve()
        assert video not in out, f"{video} twice in {path}"
        out[video] = store.read(i).features
    return out


@pytest.fixture(scope="module")
def reference(folders, tmp_path_factory) -> dict[Path, np.ndarray]:
    """Every video's features, each folder extracted alone."""
    out = {}
    for folder in folders:
        store = tmp_path_factory.mktemp("reference") / "s.zarr"
        assert CliRunner().invoke(hope, _extract(folder, "--out", store)[3:]).exit_code == 0
        out.update(_by_video(store))
    return out


def _together(commands) -> list[dict]:
    processes = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
                 for c in commands]
    outputs = [p.communicate() for p in processes]
    assert [p.returncode for p in processes] == [0] * len(processes), [e for _, e in outputs]
    import json

    return [json.loads(o) for o, _ in outputs]


def test_two_runs_on_other_folders_into_one_new_store(folders, reference, tmp_path):
    store = tmp_path / "s.zarr"
    summaries = _together([_extract(folder, "--out", store) for folder in folders])
    assert [s["clips_written"] for s in summaries] == [3, 3]
    got = _by_video(store)
    assert got.keys() == reference.keys()  # all six, each once
    for video, features in reference.items():  # each under its own name
        assert np.array_equal(got[video], features), video


def test_a_store_made_meanwhile_by_another_writer_gets_every_clip_under_its_name(folders, reference, tmp_path,
                                                                                 monkeypatch):
    """The interleaving behind lost and mislabelled clips, made certain: this run plans its
    clips while the store does not exist, then another run creates it (names relative to
    another folder, the same file names) just before this one would."""
    from hopecli.encoder import load_encoder
    from hopecli.extract import ExtractConfig, extract

    store, config, encoder = tmp_path / "s.zarr", ExtractConfig(frames=FRAMES, batch_size=1), load_encoder()
    real = FeatureStore.create_or_resume.__func__

    def other_writer_first(cls, path, attrs, **kwargs):
        monkeypatch.setattr(FeatureStore, "create_or_resume", classmethod(real))
        assert len(extract(sorted(folders[1].glob("*.mp4")), path, config, encoder=encoder).written) == 3
        return real(cls, path, attrs, **kwargs)

    monkeypatch.setattr(FeatureStore, "create_or_resume", classmethod(other_writer_first))
    result = extract(sorted(folders[0].glob("*.mp4")), store, config, encoder=encoder)
    assert len(result.written) == 3 and result.already_done == []
    got = _by_video(store)
    assert got.keys() == reference.keys()
    for video, features in reference.items():
        assert np.array_equal(got[video], features), video


def test_a_store_another_writer_made_but_has_not_filled_yet_keeps_its_names(folders, reference, tmp_path,
                                                                           monkeypatch):
    """The interleaving CI met: another run has created the store (its names relative to
    its folder) but not yet added a clip when this run opens it. An empty store is still
    a store: this run must name its clips against it, not as if there were none."""
    from hopecli.encoder import load_encoder
    from hopecli.extract import ExtractConfig, extract

    store, config, encoder = tmp_path / "s.zarr", ExtractConfig(frames=FRAMES, batch_size=1), load_encoder()

    class Stopped(Exception):
        pass

    def stop(self, clips, tasks):
        raise Stopped

    with monkeypatch.context() as patch:  # the other writer, stopped just after creating
        patch.setattr(FeatureStore, "add_clips", stop)
        with pytest.raises(Stopped):
            extract(sorted(folders[1].glob("*.mp4")), store, config, encoder=encoder)
    assert len(FeatureStore.open(store)) == 0
    assert len(extract(sorted(folders[0].glob("*.mp4")), store, config, encoder=encoder).written) == 3
    assert len(extract(sorted(folders[1].glob("*.mp4")), store, config, encoder=encoder).written) == 3
    got = _by_video(store)
    assert got.keys() == reference.keys()
    for video, features in reference.items():
        assert np.array_equal(got[video], features), video


def test_shards_write_disjoint_clips_of_one_store(folders, reference, tmp_path):
    store = tmp_path / "s.zarr"
    summaries = _together([_extract(*folders, "--out", store, "--shard", f"{i}/2") for i in range(2)])
    assert sorted(s["clips_written"] for s in summaries) == [3, 3]
    got = _by_video(store)
    assert got.keys() == reference.keys()
    for video, features in reference.items():
        assert np.array_equal(got[video], features), video
    assert sorted(FeatureStore.open(store).clips) == sorted(f"{f.name}/{v.name}#0" for f in folders
                                                           for v in f.glob("*.mp4"))


def test_shard_videos_partition():
    videos = [Path(f"/v/{name}.mp4") for name in "edcba"]
    shards = [shard_videos(videos, (i, 3)) for i in range(3)]
    assert sorted(v for s in shards for v in s) == sorted(videos)
    assert shards[0] == [Path("/v/a.mp4"), Path("/v/d.mp4")]


def test_bad_shard_is_a_usage_error(folders, tmp_path):
    result = CliRunner().invoke(hope, ["extract", str(folders[0]), "--out", str(tmp_path / "s.zarr"),
                                       "--shard", "2/2"])
    assert result.exit_code == 2 and "Invalid value for --shard: shard '2/2': I must be in 0..N-1" in result.output


# `hope extract`, killed (SIGKILL) by itself while it creates the store: right after the
# second array of the new store is made.
KILLED_WHILE_CREATING = """
import os, signal, zarr
real = zarr.Group.create_array
def create_array(self, name, *args, **kwargs):
    array = real(self, name, *args, **kwargs)
    if name == "actions":
        os.kill(os.getpid(), signal.SIGKILL)
    return array
zarr.Group.create_array = create_array
from hopecli.cli import main
main()
"""


def test_kill_while_creating_the_store_leaves_nothing_in_the_way(folders, tmp_path):
    store = tmp_path / "s.zarr"
    args = ["extract", str(folders[0]), "--out", str(store), "--frames", str(FRAMES)]
    killed = subprocess.run([sys.executable, "-c", KILLED_WHILE_CREATING, *args], capture_output=True, env=ENV)
    assert killed.returncode == -9, killed.stderr
    result = CliRunner().invoke(hope, args)
    assert result.exit_code == 0, result.output
    assert FeatureStore.open(store).done.tolist() == [True] * 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.zarr", "s.zarr.lock"]  # the half-built one removed
