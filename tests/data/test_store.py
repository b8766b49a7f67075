"""The Zarr feature store: round trip, resume bookkeeping, mismatch errors, plain Zarr."""

import copy

import numpy as np
import pytest
import zarr

from hopecli.data.store import ClipFeatures, FeatureStore
from hopecli.errors import HopeError, StoreMismatchError

ATTRS = {
    "hope_version": "0",
    "encoder": {"name": "enc", "config": {"embed_dim": 8, "depth": 1}, "checksum": "abc",
                "random_features": True},
    "time_mode": "tubelet", "frames_per_clip": 4, "resolution": 32, "fps": 8.0,
    "sampling": {"stride": None, "target_fps": None}, "tubelet_size": 2, "patch_size": 16,
    "patches_per_step": 4, "grid": (2, 2), "action_dim": 2, "state_dim": 3,
}


def _clip(seed):
    rng = np.random.default_rng(seed)
    return ClipFeatures(features=rng.normal(size=(2, 4, 8)).astype(np.float16),
                        actions=rng.normal(size=(2, 2)).astype(np.float32),
                        states=rng.normal(size=(2, 3)).astype(np.float32))


def _store(path):
    return FeatureStore.create_or_resume(path, ATTRS, steps=2, dim=8)


def test_round_trip(tmp_path):
    path = tmp_path / "s.zarr"
    store = _store(path)
    indices = store.add_clips(["a#0", "b#0", "c#0"], ["low", "high", "low"])
    assert indices == [0, 1, 2]
    clips = {i: _clip(i) for i in (0, 2)}
    for i, clip in clips.items():
        store.write(i, clip)

    store = FeatureStore.open(path)
    assert len(store) == 3 and store.clips == ["a#0", "b#0", "c#0"]
    assert store.tasks == ["low", "high", "low"] and store.task_names() == ["low", "high"]
    assert store.done.tolist() == [True, False, True]
    assert store.indices() == [0, 2] and store.indices(["high"]) == []
    assert store.attrs["grid"] == [2, 2]
    for i, clip in clips.items():
        got = store.read(i)
        assert got.features.dtype == np.float16
        assert np.array_equal(got.features, clip.features)
        assert np.array_equal(got.actions, clip.actions)
        assert np.array_equal(got.states, clip.states)
    batch = store.read_batch([2, 0, 2])
    assert batch.features.shape == (3, 2, 4, 8)
    assert np.array_equal(batch.actions[1], clips[0].actions)
    assert np.array_equal(batch.states[2], clips[2].states)
    with pytest.raises(HopeError, match="no task 'mid'"):
        store.indices(["mid"])


def test_plain_zarr_reads_it(tmp_path):
    store = _store(tmp_path / "s.zarr")
    store.add_clips(["a#0"], ["low"])
    store.write(0, _clip(0))
    group = zarr.open_group(str(tmp_path / "s.zarr"))
    assert group["features"].shape == (1, 2, 4, 8)
    assert group["features"].chunks == (1, 2, 4, 8)
    assert group["done"][:].tolist() == [True]
    assert group.attrs["encoder"]["checksum"] == "abc"


def test_resume_reuses_known_clips_and_appends_new(tmp_path):
    path = tmp_path / "s.zarr"
    store = _store(path)
    store.add_clips(["a#0", "b#0"], ["low", "low"])
    store.write(1, _clip(1))
    again = _store(path)
    assert again.add_clips(["b#0", "c#0", "a#0"], ["low", "mid", "low"]) == [1, 2, 0]
    assert again.done.tolist() == [False, True, False]
    assert np.array_equal(again.read(1).features, _clip(1).features)


def test_grown_arrays_from_a_killed_add_are_reused(tmp_path):
    """A run killed after growing the arrays but before growing `done` loses nothing."""
    path = tmp_path / "s.zarr"
    store = _store(path)
    store.group["features"].resize((5, 2, 4, 8))  # what a killed add_clips leaves behind
    store = _store(path)
    assert len(store) == 0
    assert store.add_clips(["a#0"], ["low"]) == [0]
    assert store.group["features"].shape[0] == 5 and len(store) == 1


@pytest.mark.parametrize("change, field", [
    (lambda a: a["encoder"].update(checksum="other"), "encoder.checksum = 'abc', not 'other'"),
    (lambda a: a["encoder"]["config"].update(depth=2), "encoder.config.depth = 1, not 2"),
    (lambda a: a.update(time_mode="frame"), "time_mode = 'tubelet', not 'frame'"),
    (lambda a: a.update(frames_per_clip=8), "frames_per_clip = 4, not 8"),
    (lambda a: a.update(resolution=64), "resolution = 32, not 64"),
], ids=["checksum", "config", "time-mode", "frames", "resolution"])
def test_mismatch_names_store_and_field(tmp_path, change, field):
    path = tmp_path / "s.zarr"
    _store(path)
    attrs = copy.deepcopy(ATTRS)
    change(attrs)
    with pytest.raises(StoreMismatchError) as e:
        FeatureStore.create_or_resume(path, attrs, steps=2, dim=8)
    assert str(e.value).startswith(f"{path}: store was made with {field};")


def test_open_errors(tmp_path):
    with pytest.raises(HopeError, match=f"^{tmp_path / 'none.zarr'}: no such feature store$"):
        FeatureStore.open(tmp_path / "none.zarr")
    (tmp_path / "empty").mkdir()
    with pytest.raises(HopeError, match="not a Zarr group"):
        FeatureStore.open(tmp_path / "empty")
    zarr.open_group(str(tmp_path / "other.zarr"), mode="w")
    with pytest.raises(HopeError, match="not a hope feature store \\(missing features"):
        FeatureStore.open(tmp_path / "other.zarr")


def test_a_missing_states_chunk_is_damage_only_where_every_chunk_was_written(tmp_path):
    """Stores made before every chunk was written left out all-zero states chunks (an
    imported clip's states): those read as zeros; in a store of this version it is damage."""
    from hopecli.data.store import EVERY_CHUNK
    from hopecli.errors import DamagedStoreError

    store = _store(tmp_path / "s.zarr")
    (i,) = store.add_clips(["c"], ["t"])
    store.write(i, _clip(0))
    assert store.attrs[EVERY_CHUNK] is True
    store.chunk_file("states", i).unlink()
    with pytest.raises(DamagedStoreError, match="states chunk is missing"):
        FeatureStore.open(store.path).read_batch([i])
    group = zarr.open_group(str(store.path), mode="r+")
    del group.attrs[EVERY_CHUNK]  # as a store written before
    old = FeatureStore.open(store.path)
    assert (old.read_batch([i]).states == 0).all()
    store.chunk_file("features", i).unlink()  # features are never left out
    with pytest.raises(DamagedStoreError, match="features chunk is missing"):
        FeatureStore.open(store.path).read_batch([i])
