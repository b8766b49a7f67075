"""`hope extract` end to end on small synthetic clips: skips, resume, mismatch, time modes."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from hopecli.cli import hope
from hopecli.data.sidecar import load_sidecar, save_sidecar
from hopecli.data.store import FeatureStore
from hopecli.data.synth import synth_clips
from hopecli.data.video import list_videos, preprocess, read_frames
from hopecli.encoder import encoder_config, load_encoder, save_encoder
from hopecli.extract import ExtractConfig, extract

FRAMES = 4


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    """Four 4-frame 64 px clips in two friction regimes."""
    folder = tmp_path_factory.mktemp("clips")
    synth_clips(folder, [("low", 0.1), ("high", 0.8)], clips=2, frames=FRAMES, resolution=64)
    return folder


@pytest.fixture(scope="module")
def encoder():
    return load_encoder()


def _copy(clips: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(clips, tmp_path / "clips"))


def _run(*args, input=None):
    return CliRunner().invoke(hope, ["extract", *map(str, args)], input=input)


def _all_features(path: Path) -> dict[str, np.ndarray]:
    store = FeatureStore.open(path)
    return {store.clips[i]: store.read(i).features for i in store.indices()}


def test_bad_files_are_named_and_the_rest_extracted(clips, tmp_path):
    folder = _copy(clips, tmp_path)
    (folder / "x.mp4").write_bytes(b"\x00garbage" * 100)
    shutil.copy(folder / "low_000.mp4", folder / "orphan.mp4")  # no orphan.npz
    shutil.copy(folder / "low_000.mp4", folder / "nan.mp4")
    sidecar = load_sidecar(folder / "low_000.npz")
    actions = sidecar.actions.copy()
    actions[1, 0] = np.nan
    save_sidecar(folder / "nan.npz", actions, sidecar.states)
    store = tmp_path / "s.zarr"

    result = _run(folder, "--out", store, "--frames", FRAMES)
    assert result.exit_code == 1
    assert f"skipped: {folder / 'x.mp4'}: not a readable video" in result.stderr
    assert f"skipped: {folder / 'orphan.npz'}: sidecar missing" in result.stderr
    assert (f"skipped: {folder / 'nan.npz'}: 'actions' contains NaN or infinite values"
            in result.stderr)
    assert result.stderr.rstrip().endswith(
        "Error: 3 file(s) skipped; fix them or pass --allow-skips")
    extracted = FeatureStore.open(store)
    assert sorted(extracted.clips) == ["high_000.mp4#0", "high_001.mp4#0", "low_000.mp4#0",
                                       "low_001.mp4#0"]
    assert extracted.done.all() and extracted.task_names() == ["high", "low"]

    again = _run(folder, "--out", tmp_path / "t.zarr", "--frames", FRAMES, "--allow-skips")
    assert again.exit_code == 0, again.output
    assert len(FeatureStore.open(tmp_path / "t.zarr").indices()) == 4


def test_json_summary_and_random_encoder_label(clips, tmp_path):
    store = tmp_path / "s.zarr"
    result = _run(clips, "--out", store, "--frames", FRAMES, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["store"] == str(store)
    assert summary["clips_written"] == 4 and summary["clips_skipped"] == 0
    assert summary["random_features"] is True
    assert summary["encoder"]["checksum"] == "embedded-default"
    assert "random weights" in result.stderr
    attrs = FeatureStore.open(store).attrs
    assert attrs["encoder"]["random_features"] is True and "random weights" in attrs["note"]

    rerun = _run(clips, "--out", store, "--frames", FRAMES, "--json")
    assert json.loads(rerun.stdout)["clips_already_done"] == 4
    assert json.loads(rerun.stdout)["clips_written"] == 0


def test_empty_folder_among_inputs_is_named_and_fails_without_allow_skips(clips, tmp_path):
    folder = _copy(clips, tmp_path)
    (folder / "empty").mkdir()
    result = _run(folder, folder / "empty", "--out", tmp_path / "s.zarr", "--frames", FRAMES, "--json")
    assert result.exit_code == 1
    assert f"skipped: {folder / 'empty'}: no videos in this folder" in result.stderr
    assert result.stderr.rstrip().endswith("Error: 1 file(s) skipped; fix them or pass --allow-skips")
    summary = json.loads(result.stdout)
    assert summary["clips_written"] == 4 and summary["skipped"] == [
        {"path": str(folder / "empty"), "reason": f"{folder / 'empty'}: no videos in this folder"}]
    allowed = _run(folder, folder / "empty", "--out", tmp_path / "s.zarr", "--frames", FRAMES,
                   "--allow-skips")
    assert allowed.exit_code == 0, allowed.output


def test_stdin_paths(clips, tmp_path):
    names = [clips / "low_001.mp4", clips / "high_000.mp4"]
    result = _run("-", "--out", tmp_path / "s.zarr", "--frames", FRAMES,
                  input="".join(f"{p}\n" for p in names))
    assert result.exit_code == 0, result.output
    assert sorted(FeatureStore.open(tmp_path / "s.zarr").clips) == ["high_000.mp4#0",
                                                                    "low_001.mp4#0"]


def test_interrupted_run_resumes_to_identical_features(clips, tmp_path, encoder):
    videos = list_videos([clips])
    config = ExtractConfig(frames=FRAMES, batch_size=1)
    extract(videos, tmp_path / "ref.zarr", config, encoder=encoder)

    class Interrupt(Exception):
        pass

    written = []

    def stop_after_two(clip_id):
        written.append(clip_id)
        if len(written) == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        extract(videos, tmp_path / "s.zarr", config, encoder=encoder, on_clip=stop_after_two)
    partial = FeatureStore.open(tmp_path / "s.zarr")
    assert partial.done.sum() == 2 and len(partial) == 4

    result = extract(videos, tmp_path / "s.zarr", config, encoder=encoder)
    assert sorted(result.already_done) == sorted(written) and len(result.written) == 2
    resumed, reference = _all_features(tmp_path / "s.zarr"), _all_features(tmp_path / "ref.zarr")
    assert resumed.keys() == reference.keys() and len(resumed) == 4
    for name, features in reference.items():
        assert np.array_equal(resumed[name], features), name


def test_sigkill_leaves_a_valid_store_that_resumes(tmp_path):
    """Kill a real extract process once its first clip is done; the re-run completes it."""
    folder = tmp_path / "many"
    synth_clips(folder, [("low", 0.1)], clips=12, frames=FRAMES, resolution=64)
    store = tmp_path / "s.zarr"
    command = [sys.executable, "-c", "from hopecli.cli import main; main()", "extract",
               str(folder), "--out", str(store), "--frames", str(FRAMES), "--batch-size", "1"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=env)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            done = store / "done" / "c"
            if done.exists() and any(done.iterdir()):
                break
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    killed = FeatureStore.open(store)
    assert killed.done.any() and not killed.done.all()
    for i in killed.indices():  # done clips are complete
        assert np.abs(killed.read(i).features.astype(np.float32)).sum() > 0

    result = CliRunner().invoke(hope, command[3:])
    assert result.exit_code == 0, result.output
    assert FeatureStore.open(store).done.tolist() == [True] * 12


def test_store_from_another_encoder_is_refused(clips, tmp_path):
    store = tmp_path / "s.zarr"
    assert _run(clips, "--out", store, "--frames", FRAMES).exit_code == 0
    other = load_encoder(config=encoder_config("default", depth=1))
    weights = save_encoder(other.model, tmp_path / "other.safetensors")
    result = _run(clips, "--out", store, "--frames", FRAMES, "--weights", weights)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {store}: store was made with encoder.")
    frames = _run(clips, "--out", store, "--frames", 2 * FRAMES, "--allow-skips")
    assert f"Error: {store}: store was made with frames_per_clip = 4, not 8;" in frames.stderr


def test_tubelet_steps_average_actions_and_states(clips, tmp_path, encoder):
    extract([clips / "low_000.mp4"], tmp_path / "s.zarr", ExtractConfig(frames=FRAMES),
            encoder=encoder)
    store = FeatureStore.open(tmp_path / "s.zarr")
    sidecar = load_sidecar(clips / "low_000.npz")
    clip = store.read(0)
    assert clip.features.shape == (FRAMES // 2, 64, 192)  # 128 px crop: 8x8 patches
    assert np.allclose(clip.actions, sidecar.actions.reshape(2, 2, 2).mean(1))
    assert np.allclose(clip.states, sidecar.states.reshape(2, 2, 2).mean(1))
    video = preprocess(read_frames(clips / "low_000.mp4", range(FRAMES)), 128)
    with torch.no_grad():
        direct = encoder.model(video[None]).reshape(2, 64, 192)
    assert np.allclose(clip.features.astype(np.float32), direct.numpy(), atol=2e-2)
    assert store.attrs["time_mode"] == "tubelet" and store.attrs["patches_per_step"] == 64
    # the object's state is resampled to the steps like the robot's
    assert sidecar.object_states is not None and store.has_object_states
    assert np.allclose(store.read_object_states([0])[0], sidecar.object_states.reshape(2, 2, 3).mean(1))


def test_object_states_are_optional_per_clip(clips, tmp_path, encoder):
    folder = _copy(clips, tmp_path)
    plain = load_sidecar(folder / "low_000.npz")
    save_sidecar(folder / "low_000.npz", plain.actions, plain.states, task="low")  # no object states
    extract([folder / "low_000.mp4"], tmp_path / "s.zarr", ExtractConfig(frames=FRAMES), encoder=encoder)
    store = FeatureStore.open(tmp_path / "s.zarr")
    assert not store.has_object_states  # a store without them, as before
    # clips that bring them later add the array; the earlier clip reads as NaN
    extract([folder / "high_000.mp4"], tmp_path / "s.zarr", ExtractConfig(frames=FRAMES), encoder=encoder)
    store = FeatureStore.open(tmp_path / "s.zarr")
    states = store.read_object_states([0, 1])
    assert np.isnan(states[0]).all() and np.isfinite(states[1]).all()
    high = load_sidecar(folder / "high_000.npz")
    other = _copy(clips, tmp_path / "other")
    save_sidecar(other / "low_001.npz", high.actions, high.states, task="low",
                 object_states=np.zeros((FRAMES, 5)))
    result = extract([other / "low_001.mp4"], tmp_path / "s.zarr", ExtractConfig(frames=FRAMES), encoder=encoder)
    assert [s.reason for s in result.skipped] == [
        f"{other / 'low_001.npz'}: object_state_dim 5, but the other clips have 3"]


def test_frame_mode_encodes_each_frame_alone(clips, tmp_path, encoder):
    extract([clips / "high_001.mp4"], tmp_path / "s.zarr",
            ExtractConfig(frames=FRAMES, time_mode="frame"), encoder=encoder)
    store = FeatureStore.open(tmp_path / "s.zarr")
    clip = store.read(0)
    sidecar = load_sidecar(clips / "high_001.npz")
    assert clip.features.shape == (FRAMES, 64, 192)
    assert np.array_equal(clip.actions, sidecar.actions)
    assert np.array_equal(clip.states, sidecar.states)
    video = preprocess(read_frames(clips / "high_001.mp4", range(FRAMES)), 128)
    with torch.no_grad():
        third = encoder.model(video[:, 2:3].repeat(1, 2, 1, 1)[None])[0]  # frame 2, twice
    assert np.allclose(clip.features[2].astype(np.float32), third.numpy(), atol=2e-2)
    assert store.attrs["time_mode"] == "frame"


def test_stride_sums_actions_and_short_clips_are_skipped(clips, tmp_path, encoder):
    skipped = []
    result = extract([clips / "low_001.mp4"], tmp_path / "s.zarr",
                     ExtractConfig(frames=2, stride=2), encoder=encoder, on_skip=skipped.append)
    sidecar = load_sidecar(clips / "low_001.npz")
    clip = FeatureStore.open(tmp_path / "s.zarr").read(0)
    # window = frames 0 and 2; each sampled frame stands for 2 source frames
    per_frame = sidecar.actions[[0, 2]] + sidecar.actions[[1, 3]]
    assert np.allclose(clip.actions, per_frame.mean(0, keepdims=True))
    assert np.allclose(clip.states, sidecar.states[[0, 2]].mean(0, keepdims=True))
    assert result.skipped == [] and skipped == []

    short = extract([clips / "low_001.mp4"], tmp_path / "t.zarr", ExtractConfig(frames=6),
                    encoder=encoder)
    assert [s.reason for s in short.skipped] == [
        f"{clips / 'low_001.mp4'}: 4 frames, shorter than one window of 6 frames x stride 1; "
        "skipped"]
    assert not (tmp_path / "t.zarr").exists()


def test_clip_with_other_action_dims_is_skipped(clips, tmp_path, encoder):
    folder = _copy(clips, tmp_path)
    sidecar = load_sidecar(folder / "low_000.npz")
    save_sidecar(folder / "low_000.npz", np.zeros((FRAMES, 3)), sidecar.states, task="low")
    result = extract(list_videos([folder]), tmp_path / "s.zarr", ExtractConfig(frames=FRAMES),
                     encoder=encoder)
    assert [s.reason for s in result.skipped] == [
        f"{folder / 'low_000.npz'}: action_dim 3, but the other clips have 2"]
    assert len(result.written) == 3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_bf16_features_match_cpu(clips, tmp_path):
    videos = list_videos([clips])
    extract(videos, tmp_path / "cpu.zarr", ExtractConfig(frames=FRAMES, device="cpu"),
            encoder=load_encoder())
    result = extract(videos, tmp_path / "gpu.zarr", ExtractConfig(frames=FRAMES, device="cuda"),
                     encoder=load_encoder())
    assert result.device.startswith("cuda")
    cpu, gpu = _all_features(tmp_path / "cpu.zarr"), _all_features(tmp_path / "gpu.zarr")
    for name, features in cpu.items():
        ref, got = features.astype(np.float32), gpu[name].astype(np.float32)
        relative_rms = np.sqrt(np.mean((got - ref) ** 2) / np.mean(ref**2))
        assert relative_rms < 0.05, (name, relative_rms)


def test_non_finite_features_are_never_written(clips, tmp_path):
    """An encoder that gives NaN: every clip is skipped, named, and none is marked done."""
    broken = load_encoder()
    with torch.no_grad():
        next(broken.model.parameters()).fill_(float("inf"))
    result = extract(list_videos([clips]), tmp_path / "s.zarr", ExtractConfig(frames=FRAMES), encoder=broken)
    assert result.written == [] and len(result.skipped) == 4
    for skipped in result.skipped:
        clip = Path(skipped.path).name + "#0"
        assert skipped.reason == (f"{skipped.path}: the encoder gave NaN or infinite features for clip "
                                  f"{clip!r} (or beyond the float16 range); not written")
    assert not FeatureStore.open(tmp_path / "s.zarr").done.any()
