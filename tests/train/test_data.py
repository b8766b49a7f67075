"""Batch order and replay, and reading batches from a real store."""

from __future__ import annotations

import numpy as np
import pytest

from hopecli.data.store import FeatureStore
from hopecli.train.data import BatchPlan, read_batch, reservoir
from hopecli.train.losses import jump_range

from .conftest import make_store


def test_batches_cover_every_clip_once_per_epoch_and_are_reproducible():
    plan = BatchPlan(list(range(10, 20)), batch_size=5, seed=0, stream="e0", replay=[])
    first_epoch = plan.clips(0) + plan.clips(1)
    assert sorted(first_epoch) == list(range(10, 20))
    assert plan.clips(2) + plan.clips(3) != first_epoch  # reshuffled
    again = BatchPlan(list(range(10, 20)), batch_size=5, seed=0, stream="e0", replay=[])
    assert again.clips(7) == plan.clips(7)
    taus = plan.jump_targets(3, jump_range(4, None))
    assert taus == again.jump_targets(3, jump_range(4, None)) and all(1 <= t <= 3 for t in taus)


def test_jump_k_draws_tau_from_the_last_k_steps():
    # the seeds: 8 steps, jump_k 3 -> tau in 5, 6, 7
    assert list(jump_range(8, 3)) == [5, 6, 7] and list(jump_range(8, None)) == list(range(1, 8))
    plan = BatchPlan(list(range(10)), batch_size=64, seed=0, stream="e0", replay=[])
    assert set(plan.jump_targets(0, jump_range(8, 3))) == {5, 6, 7}
    with pytest.raises(ValueError, match="jump_k 8 needs clips of more than 8 steps, got T=8"):
        jump_range(8, 8)


def test_replay_mixes_buffer_clips_into_every_batch():
    buffer = reservoir([range(100), range(100, 150)], capacity=8, seed=0)
    assert len(buffer) == 8 and len(set(buffer)) == 8
    assert buffer == reservoir([range(100), range(100, 150)], capacity=8, seed=0)
    plan = BatchPlan(list(range(200, 210)), batch_size=4, seed=0, stream="e1", replay=buffer, replay_count=2)
    for step in range(5):
        batch = plan.clips(step)
        assert len(batch) == 4 and set(batch[2:]) <= set(buffer) and set(batch[:2]) <= set(range(200, 210))


def test_read_batch_keeps_the_asked_order(store_path):
    store = FeatureStore.open(store_path)
    batch = read_batch(store, [5, 1, 3])
    for row, i in enumerate([5, 1, 3]):
        np.testing.assert_array_equal(batch.features[row].numpy(), store.read(i).features)
        np.testing.assert_array_equal(batch.actions[row].numpy(), store.read(i).actions)


@pytest.mark.parametrize("compression", ["none", "zstd", "lz4"])
@pytest.mark.parametrize("threads", [1, 3], ids=["1-thread", "3-threads"])
def test_read_batch_equals_zarr_for_every_codec(tmp_path, compression, threads):
    """Uncompressed chunks are read as raw files, the others through Zarr: the same values,
    in the asked order, repeats included; the store's codec is the one asked for."""
    path = make_store(tmp_path / "s.zarr", {"a": 5}, compression=compression)
    store = FeatureStore.open(path)
    codecs = [type(c).__name__ for c in store.group["features"].metadata.codecs]
    assert codecs == {"none": ["BytesCodec"], "zstd": ["BytesCodec", "ZstdCodec"],
                      "lz4": ["BytesCodec", "BloscCodec"]}[compression]
    order = [4, 0, 2, 4, 1]
    batch = read_batch(store, order, threads=threads)
    for row, i in enumerate(order):
        want = store.read(i)
        np.testing.assert_array_equal(batch.features[row].numpy(), want.features)
        np.testing.assert_array_equal(batch.actions[row].numpy(), want.actions)
        np.testing.assert_array_equal(batch.states[row].numpy(), want.states)


def test_a_non_finite_clip_is_named_on_its_first_read_and_each_clip_is_checked_once(tmp_path):
    from hopecli.data.store import NonFiniteError

    path = make_store(tmp_path / "s.zarr", {"a": 3, "b": 2}, nan_task="b")
    store = FeatureStore.open(path)
    read_batch(store, [0, 1], threads=2)
    assert store.finite_checked == {0, 1}
    with pytest.raises(NonFiniteError, match=r"clip 'b/clip1.mp4#0' \(index 4\) has NaN or infinite features"):
        read_batch(store, [2, 4])
    assert 4 not in store.finite_checked


def test_actions_and_states_are_read_through_zarr_once_per_clip_and_follow_a_grown_store(tmp_path, monkeypatch):
    path = make_store(tmp_path / "s.zarr", {"a": 3})
    store = FeatureStore.open(path)
    calls = []
    zarr_read = store._read
    monkeypatch.setattr(store, "_read", lambda name, idx, array=None: calls.append(name) or zarr_read(name, idx, array))
    read_batch(store, [2, 0], threads=1)
    assert sorted(calls) == ["actions", "states"]
    again = read_batch(store, [0, 2, 0], threads=2)
    assert len(calls) == 2  # kept since the first read
    make_store(path, {"b": 2}, seed=1)  # a writer appends two clips to the open store
    grown = read_batch(store, [4, 0], threads=1)
    assert len(calls) == 4  # the new clip's only
    fresh = FeatureStore.open(path)
    for batch, order in ((again, [0, 2, 0]), (grown, [4, 0])):
        for row, i in enumerate(order):
            want = fresh.read(i)
            np.testing.assert_array_equal(batch.actions[row].numpy(), want.actions)
            np.testing.assert_array_equal(batch.states[row].numpy(), want.states)
            np.testing.assert_array_equal(batch.features[row].numpy(), want.features)
