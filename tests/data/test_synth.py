"""Synthetic push clips: determinism, the friction model, the shift regimes (size, walls,
spin), files that read back, and the `hope synth` options that choose them."""

import hashlib
import math
from dataclasses import replace

import numpy as np
import pytest
from click.testing import CliRunner

from hopecli.cli import hope
from hopecli.data import synth
from hopecli.data.sidecar import load_sidecar
from hopecli.data.synth import (PRESETS, STUDY, PushConfig, Regime, Shift, clip_config, clip_seed,
                                simulate_push, synth_clips)
from hopecli.data.video import probe_video, read_frames

PLAIN_SIDECAR_KEYS = {"actions", "states", "task", "object_states", "fps", "friction", "mass",
                      "seed", "shape"}
SHIFT_KEYS = {"scale", "size", "walls", "wall_inset", "spin", "spin_friction"}


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


def _digest(clip) -> str:
    h = hashlib.sha256()
    for a in _arrays(clip):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


# sha256 prefixes of (frames, actions, states, object_states), taken before the shift regimes
# were added (pymunk 7.3.1): friction clips, hence the shipped samples, must not change
@pytest.mark.parametrize("shape,mu,expected", [
    ("box", 0.1, "fe966bc61b20e3ca"), ("box", 0.8, "533e16506f5c27e3"),
    ("disc", 0.1, "8cf0a1a101c52951"), ("disc", 0.8, "cc637dbce29a3339")])
def test_friction_clips_are_unchanged(shape, mu, expected):
    config = PushConfig(frames=6, resolution=64, friction=mu, shape=shape, seed=11, mass=1.3)
    assert _digest(simulate_push(config)) == expected


def test_default_shift_is_the_standard_push():
    for shape in synth.SHAPES:
        plain = simulate_push(PushConfig(frames=4, resolution=32, shape=shape, seed=5))
        based = simulate_push(PushConfig(frames=4, resolution=32, shape=shape, seed=5,
                                         shift=Shift()))
        for a, b in zip(_arrays(plain), _arrays(based)):
            assert np.array_equal(a, b)


def test_plain_sidecar_records_no_shift(tmp_path):
    (video,) = synth_clips(tmp_path, [("low", 0.1)], clips=1, frames=3, resolution=32)
    with np.load(video.with_suffix(".npz")) as npz:
        assert set(npz.files) == PLAIN_SIDECAR_KEYS


@pytest.mark.parametrize("name", STUDY)
def test_preset_sidecar_records_its_physics_and_rebuilds_the_clip(tmp_path, name):
    regime = PRESETS[name]
    (video,) = synth_clips(tmp_path, [regime], clips=1, frames=3, resolution=32, mass=2.0)
    sidecar = load_sidecar(video.with_suffix(".npz"), frames=3)
    meta, shift = sidecar.meta, regime.shift
    assert sidecar.task == name and set(meta) >= SHIFT_KEYS
    assert meta["friction"] == regime.friction
    assert meta["mass"] == pytest.approx(2.0 * shift.scale**2)
    assert meta["scale"] == shift.scale and meta["walls"] is shift.walls
    assert meta["wall_inset"] == (synth.ARENA_INSET / synth.TABLE if shift.walls else 0.0)
    assert abs(meta["spin"]) == shift.spin and meta["spin_friction"] == shift.spin_friction
    width = synth.BOX_SIDE if meta["shape"] == "box" else 2 * synth.DISC_RADIUS
    assert meta["size"] == pytest.approx(width * shift.scale / synth.TABLE)
    if regime.shape is not None:
        assert meta["shape"] == regime.shape
    rebuilt = Shift(scale=meta["scale"], walls=meta["walls"], spin=meta["spin"],
                    spin_friction=meta["spin_friction"])
    clip = simulate_push(PushConfig(frames=3, resolution=32, friction=meta["friction"],
                                    mass=meta["mass"], shape=meta["shape"], seed=meta["seed"],
                                    task=name, shift=rebuilt))
    assert np.array_equal(sidecar.object_states, clip.object_states)
    assert np.array_equal(sidecar.actions, clip.actions)


@pytest.mark.parametrize("name", STUDY)
def test_presets_are_deterministic(name):
    first, second = (simulate_push(clip_config(PRESETS[name], 2, seed=4, frames=4,
                                               resolution=32)) for _ in range(2))
    for a, b in zip(_arrays(first), _arrays(second)):
        assert np.array_equal(a, b)


def test_spin_sign_and_shape_follow_the_clip_seed():
    configs = [clip_config(PRESETS["kinematics"], i, seed=0) for i in range(8)]
    assert {c.physics.spin for c in configs} == {synth.SPIN, -synth.SPIN}
    assert {c.shape for c in configs} == {"box"}  # a spinning disc would show little
    assert configs[3] == clip_config(PRESETS["kinematics"], 3, seed=0)


def _object_pixels(frame: np.ndarray) -> int:
    def near(color):
        return np.abs(frame.astype(int) - np.array(color)).sum(-1) < 30
    return int((near(synth.OBJECT_COLOR) | near(synth.MARKER_COLOR)).sum())


@pytest.mark.parametrize("shape", synth.SHAPES)
def test_scaling_grows_the_rendered_object_by_its_area(shape):
    """Scale 1.6 covers 1.6^2 = 2.56x the pixels (a little more at 64 px: the thin
    anti-aliased rim excluded by the colour test is a larger share of a small object)."""
    for seed in range(3):
        small, big = (simulate_push(PushConfig(frames=2, resolution=64, shape=shape, seed=seed,
                                               shift=Shift(scale=scale)))
                      for scale in (1.0, 1.6))
        ratio = _object_pixels(big.frames[0]) / _object_pixels(small.frames[0])
        assert 2.3 < ratio < 3.1


def test_arena_walls_are_drawn_only_with_walls():
    plain, walled = (simulate_push(PushConfig(frames=2, resolution=64, seed=1,
                                              shift=Shift(walls=walls)))
                     for walls in (False, True))
    def wall_pixels(frame):
        return int((frame == np.array(synth.WALL_COLOR, np.uint8)).all(-1).sum())
    assert wall_pixels(plain.frames[0]) == 0
    assert wall_pixels(walled.frames[0]) > 4 * 40  # four sides, one pixel wide at least


def test_walls_bounce_the_object_with_their_elasticity():
    """A disc slid at a wall line: without walls it crosses it; with walls it stays inside
    and comes back at WALL_ELASTICITY times its speed."""
    edge = synth.ARENA_INSET + synth.ARENA_WALL_RADIUS  # inner face of the left wall
    runs = {}
    for walls in (False, True):
        config = PushConfig(shape="disc", shift=Shift(walls=walls))
        table = synth._Table(config, np.array([40.0, 50.0]), 0.0, np.array([75.0, 75.0]))
        table.object.velocity = (-120.0, 0.0)
        left, vx = [], []
        for _ in range(240):
            table.step(np.zeros(2), 1 / 240, 1)
            left.append(table.object.position.x - synth.DISC_RADIUS)
            vx.append(table.object.velocity.x)
        runs[walls] = np.array(left), np.array(vx)
    left, vx = runs[False]
    assert left.min() < edge - 3.0 and vx.max() <= 0
    left, vx = runs[True]
    assert left.min() > edge - 0.5  # collision slop only
    bounce = int(np.argmax(vx > 0))
    assert bounce > 0 and vx[bounce] == pytest.approx(
        synth.WALL_ELASTICITY * -vx[bounce - 1], rel=0.05)


@pytest.mark.parametrize("name,index", [("discretization", 2), ("discretization", 3),
                                        ("compositional", 0), ("compositional", 1)])
def test_walled_clips_keep_the_object_inside_the_arena(name, index):
    """The object's edge stays behind the walls' inner face (up to collision slop) where the
    same clip without walls carries it past the wall line."""
    lo, hi = synth.ARENA_INSET, synth.TABLE - synth.ARENA_INSET
    walled = clip_config(PRESETS[name], index, frames=12, resolution=16)
    free = replace(walled, shift=replace(walled.shift, walls=False))
    clearance = {}
    for config in (walled, free):
        xy = simulate_push(config).object_states[:, :2] * synth.TABLE  # [F, 2] cm
        clearance[config.physics.walls] = np.minimum(xy - lo, hi - xy).min() - config.half_width
    assert clearance[True] > synth.ARENA_WALL_RADIUS - 0.5
    assert clearance[False] < 0


def test_spin_turns_a_free_object_and_low_spin_friction_keeps_it_turning():
    """No pusher contact: a box launched at w turns w t - f a t^2 / 2, with a = mu m g r_eff / I
    the Coulomb torque's deceleration scaled by spin_friction f; without spin it does not
    turn at all."""
    turned = {}
    for shift in (Shift(), Shift(spin=6.0, spin_friction=0.02), Shift(spin=6.0)):
        config = PushConfig(shape="box", shift=shift)
        table = synth._Table(config, np.array([50.0, 50.0]), 0.3, np.array([90.0, 90.0]))
        table.step(np.zeros(2), 0.5, 120)
        turned[shift] = table.object_state()[1] - 0.3
    still, free, stopped = turned.values()
    assert still == 0.0
    inertia = synth.BOX_SIDE**2 / 6  # m (a^2 + a^2) / 12 for m = 1
    decel = 0.4 * synth.GRAVITY * 0.3826 * synth.BOX_SIDE / inertia  # full spin friction
    assert free == pytest.approx(6.0 * 0.5 - 0.02 * decel * 0.5**2 / 2, rel=0.01)
    # full spin friction stops it within w^2 / 2a, a sixth of a turn, well inside 0.5 s
    assert stopped == pytest.approx(6.0**2 / (2 * decel), rel=0.05)


def test_kinematics_clips_turn_where_base_clips_barely_do():
    kin = [simulate_push(clip_config(PRESETS["kinematics"], i, frames=2, resolution=16))
           for i in range(4)]
    base = [simulate_push(clip_config(PRESETS["base"], i, frames=2, resolution=16, shape="box"))
            for i in range(4)]
    def turn(clips):
        return np.mean([abs(c.object_states[1, 2] - c.object_states[0, 2]) for c in clips])
    assert turn(kin) > 0.4  # about SPIN / fps = 0.75 rad per frame before the pusher arrives
    assert turn(base) < 0.15


def test_shift_and_regime_validation():
    with pytest.raises(ValueError, match="scale must be a positive number, got -1"):
        Shift(scale=-1)
    with pytest.raises(ValueError, match="spin_friction must be >= 0"):
        Shift(spin_friction=-0.5)
    with pytest.raises(ValueError, match="too large for a 70 cm arena"):
        PushConfig(shift=Shift(scale=3.0, walls=True))
    with pytest.raises(ValueError, match="regime name must be"):
        Regime("")


def _synth(*args):
    return CliRunner().invoke(hope, ["synth", *args])


def test_cli_study_writes_base_and_five_shifts(tmp_path):
    result = _synth("--study", "--clips", "1", "--frames", "3", "--resolution", "32",
                    "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.glob("*.mp4")) == sorted(f"{n}_000.mp4" for n in STUDY)
    for name in STUDY:
        sidecar = load_sidecar(tmp_path / f"{name}_000.npz", frames=3)
        assert sidecar.task == name and set(sidecar.meta) >= SHIFT_KEYS


def test_cli_mixes_presets_and_friction_regimes(tmp_path):
    result = _synth("--regime", "kinematics", "--regime", "low=0.1", "--clips", "1",
                    "--frames", "2", "--resolution", "32", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    with np.load(tmp_path / "low_000.npz") as npz:
        assert set(npz.files) == PLAIN_SIDECAR_KEYS
    assert load_sidecar(tmp_path / "kinematics_000.npz").meta["spin_friction"] == 0.02


@pytest.mark.parametrize("args,message", [
    (["--regime", "sliding"],
     "'sliding' is neither a preset (base, scaling, dissipation, discretization, kinematics, "
     "compositional) nor NAME=MU"),
    (["--regime", "scaling=0.3"],
     "'scaling' names a preset: give it without '=0.3', or label the friction regime "
     "differently"),
    (["--regime", "base", "--regime", "base"], "task label 'base' given twice"),
    (["--study", "--regime", "base"],
     "--study writes its own six regimes: leave out --friction, --regime and --single"),
], ids=["unknown-preset", "preset-with-mu", "twice", "study-and-regime"])
def test_cli_rejects_bad_regimes(tmp_path, args, message):
    result = _synth(*args, "--out", str(tmp_path))
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
    assert not list(tmp_path.glob("*.mp4"))
