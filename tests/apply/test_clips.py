"""Clips as a run reads them: a video's windows encoded as the run's store was made, and
the encoder a run needs."""

from __future__ import annotations

import numpy as np
import pytest

from hopecli.clips import clip_from_store, clip_from_video, run_encoder
from hopecli.errors import InputError, StoreMismatchError
from hopecli.runs.folder import read_json, write_json
from hopecli.runs.load import load_run


def test_video_clip_is_encoded_as_the_store_was(runs, store_path, clips_dir):
    run = load_run(runs["hope_tiny"])
    windows = clip_from_video(clips_dir / "clip0.mp4", run, run_encoder(run))
    store_clips = [clip_from_store(store_path, i, run) for i in range(4)]
    stored = {c.name.rpartition("/")[2]: c for c in store_clips}
    assert [w.name for w in windows] == ["clip0.mp4#0", "clip0.mp4#1"]
    for w in windows:
        np.testing.assert_allclose(w.features, stored[w.name].features, atol=2e-3)  # store is float16
        np.testing.assert_array_equal(w.actions, stored[w.name].actions)
        np.testing.assert_array_equal(w.frames, stored[w.name].frames)
    assert windows[1].frames.tolist() == [8, 10, 12, 14]


def test_weights_are_required_and_checked_for_a_real_encoder(runs, tmp_path):
    config = read_json(runs["vit_tiny"] / "config.json")
    config["store"]["encoder"] = {"name": "vjepa2-large", "checksum": "ab" * 32, "config": {}}
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "checkpoints").symlink_to(runs["vit_tiny"] / "checkpoints")
    write_json(run_dir / "config.json", config)
    run = load_run(run_dir)
    with pytest.raises(InputError, match="pass those weights with --weights"):
        run_encoder(run)
    from hopecli.encoder import load_encoder, save_encoder

    weights = save_encoder(load_encoder().model, tmp_path / "enc.safetensors")
    with pytest.raises(StoreMismatchError, match="is not the one the run"):
        run_encoder(run, weights)
