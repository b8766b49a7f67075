"""The train/validation split of a run: fixed by the seed, whole videos on one side, the
last videos held out with --val-clips."""

from __future__ import annotations

import pytest

from hopecli.data.store import FeatureStore
from hopecli.errors import HopeError
from hopecli.runs.split import split_clips, split_last
from tests.train.conftest import make_store


def test_split_is_fixed_by_seed_disjoint_and_holds_out_every_task(tmp_path):
    store = FeatureStore.open(make_store(tmp_path / "s.zarr", {"a": 10, "b": 5}))
    s1 = split_clips(store, ["a", "b"], 0.2, seed=3)
    s2 = split_clips(store, ["b", "a"], 0.2, seed=3)  # other order: same clips
    assert s1.val == s2.val and s1.train == s2.train
    assert len(s1.val["a"]) == 2 and len(s1.val["b"]) == 1
    for t in ("a", "b"):
        assert not set(s1.val[t]) & set(s1.train[t])
        assert sorted(s1.val[t] + s1.train[t]) == store.indices([t])
    others = [split_clips(store, ["a"], 0.2, seed=k).val["a"] for k in range(5)]
    assert len({tuple(v) for v in others}) > 1  # the seed matters


def test_windows_of_one_video_stay_on_one_side(tmp_path):
    path = make_store(tmp_path / "s.zarr", {"a": 0})
    store = FeatureStore.open(path, writable=True)
    ids = store.add_clips([f"v{v}.mp4#{w}" for v in range(4) for w in range(3)], ["a"] * 12)
    src = FeatureStore.open(make_store(tmp_path / "src.zarr", {"a": 1}))
    for i in ids:
        store.write(i, src.read(0))
    split = split_clips(FeatureStore.open(path), ["a"], 0.25, seed=0)
    videos = lambda idx: {store.clips[i].split("#")[0] for i in idx}  # noqa: E731
    assert len(split.val["a"]) == 3 and not videos(split.val["a"]) & videos(split.train["a"])


def test_val_clips_holds_out_the_last_videos_in_store_order(tmp_path):
    path = make_store(tmp_path / "s.zarr", {"a": 4, "b": 3})  # a: 0..3, b: 4..6
    store = FeatureStore.open(path, writable=True)
    # another video of task a after b's clips, in two windows: the last video of a
    ids = store.add_clips(["a/late.mp4#0", "a/late.mp4#1"], ["a", "a"])
    for i in ids:
        store.write(i, store.read(0))
    assert ids == [7, 8]
    split = split_last(FeatureStore.open(path), ["a", "b"], 2)
    assert split.val == {"a": [3, 7, 8], "b": [5, 6]}  # a: clip3 and both windows of late.mp4
    assert split.train == {"a": [0, 1, 2], "b": [4]}
    with pytest.raises(HopeError, match="task 'b' has 3 finished clip.s.; holding out the last 3 for "
                                        "validation leaves none to train on"):
        split_last(FeatureStore.open(path), ["b"], 3)


def test_a_task_with_one_clip_cannot_be_split(tmp_path):
    store = FeatureStore.open(make_store(tmp_path / "s.zarr", {"a": 1}))
    with pytest.raises(HopeError, match="task 'a' has 1 finished clip"):
        split_clips(store, ["a"], 0.1, seed=0)
