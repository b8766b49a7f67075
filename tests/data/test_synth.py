"""Synthetic push clips: determinism, the friction model, and files that read back."""

import math

import numpy as np
import pytest

from hopecli.data import synth
from hopecli.data.sidecar import load_sidecar
from hopecli.data.synth import PushConfig, clip_seed, simulate_push, synth_clips
from hopecli.data.video import probe_video, read_frames


def _arrays(clip):
    return [clip.frames, clip.actions, clip.states, clip.object_states]


@pytest.mark.parametrize("shape", ["box", "disc"])
def test_same_seed_same_clip(shape):
    config = PushConfig(frames=6, resolution=32, friction=0.3, shape=shape, seed=7)
    first, second = simulate_push(config), simulate_push(config)
    for a, b in zip(_arrays(first), _arrays(second)):
        assert np.array_equal(a, b)
    other = simulate_push(PushConfig(frames=6, resolution=32, friction=0.3, shape=shape, seed=8))
    assert not np.array_equal(first.actions, other.actions)


def test_shapes_and_ranges():
    clip = simulate_push(PushConfig(frames=8, resolution=32, seed=1))
    assert clip.frames.shape == (8, 32, 32, 3) and clip.frames.dtype == np.uint8
    assert clip.actions.shape == (8, 2) and clip.states.shape == (8, 2)
    assert clip.object_states.shape == (8, 3)
    assert ((clip.states > 0) & (clip.states < 1)).all()


def test_clip_seed_depends_on_task_and_index_only():
    assert clip_seed(0, "low", 3) == clip_seed(0, "low", 3)
    assert len({clip_seed(0, "low", 3), clip_seed(0, "mid", 3), clip_seed(0, "low", 4),
                clip_seed(1, "low", 3)}) == 4


@pytest.mark.parametrize("mu", [0.2, 0.8])
def test_table_friction_stops_a_sliding_object_at_v2_over_2mug(mu):
    """Dry friction: an object launched at v slides v^2 / (2 mu g) before it stops."""
    config = PushConfig(friction=mu, shape="disc")
    start = np.array([30.0, 50.0])
    table = synth._Table(config, start, 0.0, np.array([90.0, 90.0]))
    v = 60.0
    table.object.velocity = (v, 0.0)
    table.step(np.zeros(2), 1.0, 240)
    travelled = table.object_state()[0][0] - start[0]
    expected = v**2 / (2 * mu * synth.GRAVITY)
    # time-stepped at 240 Hz: off by at most one substep of travel
    assert travelled == pytest.approx(expected, abs=v / synth.PHYSICS_HZ)
    assert math.hypot(*table.object.velocity) < 1e-6


def test_written_clip_reads_back(tmp_path):
    videos = synth_clips(tmp_path, [("slippery", 0.1)], clips=2, frames=5, resolution=32,
                         fps=10.0, seed=3)
    assert [v.name for v in videos] == ["slippery_000.mp4", "slippery_001.mp4"]
    info = probe_video(videos[0])
    assert (info.num_frames, info.height, info.width, info.fps) == (5, 32, 32, 10.0)
    sidecar = load_sidecar(videos[0].with_suffix(".npz"), frames=info.num_frames)
    clip = simulate_push(PushConfig(frames=5, resolution=32, fps=10.0, friction=0.1,
                                    seed=sidecar.meta["seed"], shape=sidecar.meta["shape"],
                                    task="slippery"))
    assert sidecar.task == "slippery" and sidecar.meta["friction"] == 0.1
    assert np.array_equal(sidecar.actions, clip.actions)
    assert np.array_equal(sidecar.object_states, clip.object_states)
    decoded = read_frames(videos[0], range(5)).astype(int)
    assert np.abs(decoded - clip.frames).mean() < 4  # lossy H.264, same picture


def test_single_writes_one_named_clip(tmp_path):
    (video,) = synth_clips(tmp_path, [("new", 1.5)], clips=1, frames=3, resolution=32,
                           single="held_out")
    assert video.name == "held_out.mp4" and video.with_suffix(".npz").exists()
    with pytest.raises(ValueError, match="one clip of one regime"):
        synth_clips(tmp_path, [("a", 0.1), ("b", 0.2)], clips=1, single="x")
