"""Faults of issue 12 on the training side: the device, the run files, the split, resumes
and interruptions. Each test reproduces its fault through the real command."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from hopecli.cli import hope


def _run(*args):
    return CliRunner().invoke(hope, [str(a) for a in args], catch_exceptions=False)


def _train(store, run, *extra):
    return _run("train", store, "--out", run, "--preset", "vit_tiny", "--tasks", "a", "--steps", "1",
                "--batch-size", "2", "--horizon", "1", *extra)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_one_line_and_writes_nothing(store_path, tmp_path):
    run = tmp_path / "run"
    result = _train(store_path, run, "--device", "cuda")
    assert result.exit_code == 1
    assert result.output == "Error: --device cuda: no CUDA device is available on this machine\n"
    assert not run.exists()
    assert _train(store_path, run, "--device", "cpu").exit_code == 0  # nothing left in the way


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_resume_on_another_device(store_path, tmp_path):
    run = tmp_path / "run"
    assert _train(store_path, run, "--device", "cpu").exit_code == 0
    config = json.loads((run / "config.json").read_text())
    config["train"]["device"] = "cuda"  # as if trained on a GPU machine
    (run / "config.json").write_text(json.dumps(config))
    result = _run("train", store_path, "--out", run, "--resume")
    assert result.exit_code == 1
    assert result.output == ("Error: --device cuda: no CUDA device is available on this machine; the run was "
                             "saved with device 'cuda': add --device cpu (or auto) to --resume on this machine\n")
    result = _run("train", store_path, "--out", run, "--resume", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "on cpu" in result.output


def test_resume_before_the_first_checkpoint_logs_the_initial_evaluation_once(store_path, tmp_path, monkeypatch):
    from hopecli.data.store import FeatureStore
    from hopecli.model.presets import preset_config
    from hopecli.runs.checkpoint import latest_checkpoint
    from hopecli.runs.folder import MetricsLog
    from hopecli.train import loop
    from hopecli.train.config import TrainConfig
    from hopecli.train.continual import train

    store = FeatureStore.open(store_path)
    model_cfg = preset_config("vit_tiny", input_dim=16, action_dim=2, state_dim=2, patches_per_step=4)
    cfg = TrainConfig(steps=2, batch_size=2, horizon=1)
    run = tmp_path / "run"
    real_step = loop.optimizer_step

    def crash_at_2(optimizer, step, *args):
        if step == 2:
            raise RuntimeError("crash")
        return real_step(optimizer, step, *args)

    monkeypatch.setattr(loop, "optimizer_step", crash_at_2)
    with pytest.raises(RuntimeError):
        train(store, run, model_cfg, cfg)
    monkeypatch.undo()
    assert latest_checkpoint(run) is None
    train(store, run, model_cfg, cfg, resume=True)
    records = MetricsLog.read(run / "metrics.jsonl")
    assert [r["experience"] for r in records if r["kind"] == "eval"] == [-1, 0, 1]
    assert [r["step"] for r in records if r["kind"] == "step"] == [1, 2, 3, 4]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A store and a finished one-experience run on it (vit_tiny, one step)."""
    from .conftest import make_store

    folder = tmp_path_factory.mktemp("finished")
    store = make_store(folder / "store.zarr", {"a": 4, "b": 4})
    run = folder / "run"
    assert _train(store, run).exit_code == 0
    return store, run


DAMAGE = {
    "field-edited": (lambda c: c["model"].update(drop_path="x"),
                     "model.drop_path must be a number, got 'x'"),
    "model-missing": (lambda c: c.pop("model"), "the 'model' section is missing"),
    "list-not-object": (lambda c: [c], "the file must hold an object with model, train and store, got list"),
    "bad-value": (lambda c: c["train"].update(batch_size=0), "train: batch_size must be >= 1, got 0"),
    "store-field": (lambda c: c["store"].pop("time_mode"), "store.time_mode is missing"),
}
COMMANDS = {
    "rollout": lambda store, run: ["rollout", "--run", run, "--store", store, "--index", 0],
    "adapt": lambda store, run: ["adapt", "--run", run, "--store", store, "--index", 0],
    "eval-horizon": lambda store, run: ["eval", run, "--horizon", 1],
    "train-resume": lambda store, run: ["train", store, "--out", run, "--resume"],
}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("damage", DAMAGE)
def test_damaged_config_json_is_one_line_naming_the_file_and_field(finished_run, tmp_path, damage, command):
    import shutil

    store, original = finished_run
    run = Path(shutil.copytree(original, tmp_path / "run"))
    config = json.loads((run / "config.json").read_text())
    edit, message = DAMAGE[damage]
    edited = edit(config)
    (run / "config.json").write_text(json.dumps(edited if isinstance(edited, list) else config))
    result = _run(*COMMANDS[command](store, run))
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == f"Error: {run / 'config.json'}: {message}"
    assert "Traceback" not in result.output


def test_resume_refuses_a_store_whose_split_changed(tmp_path, monkeypatch):
    """More clips extracted into the store after the run started: the validation set of
    task a would grow from 1 clip to 2, so rows of R would come from different sets."""
    import numpy as np

    from hopecli.data.store import ClipFeatures, FeatureStore

    from .conftest import make_store

    store_path = make_store(tmp_path / "store.zarr", {"a": 6, "b": 6})
    run = tmp_path / "run"
    result = _run("train", store_path, "--out", run, "--preset", "vit_tiny", "--steps", "1", "--batch-size", "2",
                  "--horizon", "1")
    assert result.exit_code == 0, result.output
    split = json.loads((run / "split.json").read_text())
    assert [len(split["val"][t]) for t in ("a", "b")] == [1, 1] and len(split["train"]["a"]) == 5

    store = FeatureStore.open(store_path, writable=True)
    ids = store.add_clips([f"a/more{i}.mp4#0" for i in range(10)], ["a"] * 10)
    for i in ids:
        clip = store.read(0)
        store.write(i, ClipFeatures(clip.features, clip.actions, np.asarray(clip.states)))
    result = _run("train", store_path, "--out", run, "--resume")
    assert result.exit_code == 1
    line = result.output.splitlines()[-1]
    assert line.startswith(f"Error: {store_path.resolve()}: the clips differ from the split recorded in "
                           f"{run / 'split.json'}: task 'a' now has 2 validation clip(s), not 1 (new ")
    assert line.endswith("; resume on the store as it was, or start a new run with another --out")


# Runs `hope train` with optimizer_step wrapped: after global step 3 the process writes
# MARKER and waits for GO, so the test signals it at a known step (the wait polls a file:
# the signal, sent before GO exists, is handled before the wait can end).
HOOKED_TRAIN = """
import pathlib, sys, time
from hopecli.train import loop
marker, go = map(pathlib.Path, sys.argv[1:3])
del sys.argv[1:3]
real_step = loop.optimizer_step
def hooked(optimizer, step, *args):
    logs = real_step(optimizer, step, *args)
    if step == 3:
        marker.touch()
        while not go.exists():
            time.sleep(0.01)
    return logs
loop.optimizer_step = hooked
from hopecli.cli import main
main()
"""
INTERRUPTED_ARGS = ["--preset", "hope_tiny", "--tasks", "a,b", "--steps", "4", "--batch-size", "2",
                    "--horizon", "1", "--log-every", "1", "--threads", "1"]  # one thread: bit-equal runs


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    from .conftest import make_store

    folder = tmp_path_factory.mktemp("uninterrupted")
    store = make_store(folder / "store.zarr", {"a": 6, "b": 6})
    run = folder / "run"
    result = _run("train", store, "--out", run, *INTERRUPTED_ARGS)
    assert result.exit_code == 0, result.output
    return store, run


@pytest.mark.parametrize("signum, code", [(2, 130), (15, 143)], ids=["SIGINT", "SIGTERM"])
def test_signal_checkpoints_the_step_reached_and_resume_continues_exactly(uninterrupted, tmp_path, signum, code):
    import os
    import subprocess
    import sys
    import time

    from safetensors.torch import load_file

    from hopecli.runs.checkpoint import latest_checkpoint
    from hopecli.runs.folder import MetricsLog

    store, full = uninterrupted
    run, marker, go = tmp_path / "run", tmp_path / "marker", tmp_path / "go"
    command = [sys.executable, "-c", HOOKED_TRAIN, str(marker), str(go), "train", str(store), "--out", str(run),
               *INTERRUPTED_ARGS]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=dict(os.environ, OMP_NUM_THREADS="1"))
    try:
        while not marker.exists() and process.poll() is None:
            time.sleep(0.02)
        assert marker.exists(), process.communicate()
        process.send_signal(signum)
        go.touch()
        _, stderr = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == code, stderr
    lines = stderr.strip().splitlines()
    name = "SIGINT" if signum == 2 else "SIGTERM"
    assert lines[-1] == (f"stopped by {name} after step 3 (experience 1 'a', step 3 of 4); checkpoint "
                         f"step-0000003 saved; continue with: hope train {store} --out {run} --resume")
    assert latest_checkpoint(run) == "step-0000003"
    assert [r["step"] for r in MetricsLog.read(run / "metrics.jsonl") if r["kind"] == "step"] == [1, 2, 3]

    result = _run("train", store, "--out", run, "--resume", "--threads", "1")
    assert result.exit_code == 0, result.output

    def losses(folder):
        return [(r["step"], r["loss"]) for r in MetricsLog.read(folder / "metrics.jsonl") if r["kind"] == "step"]

    assert losses(run) == losses(full) and len(losses(full)) == 8
    evals = [r["experience"] for r in MetricsLog.read(run / "metrics.jsonl") if r["kind"] == "eval"]
    assert evals == [-1, 0, 1]
    a = load_file(full / "checkpoints" / "experience-1" / "model.safetensors")
    b = load_file(run / "checkpoints" / "experience-1" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((run / "results.json").read_text()) == json.loads((full / "results.json").read_text())


@pytest.fixture(scope="module")
def nan_store(finished_run):
    """A store like the run's whose task-a clips hold NaN features."""
    from .conftest import make_store

    store, _ = finished_run
    return make_store(store.parent / "nan.zarr", {"a": 4, "b": 4}, nan_task="a")


@pytest.mark.parametrize("command", ["train", "eval-horizon", "rollout", "adapt"])
def test_clip_with_nan_features_is_refused_naming_the_store_and_clip(finished_run, nan_store, tmp_path, command):
    _, run = finished_run
    args = {
        "train": ["train", nan_store, "--out", tmp_path / "run", "--preset", "vit_tiny", "--tasks", "a",
                  "--steps", "1", "--batch-size", "2"],
        "eval-horizon": ["eval", run, "--horizon", 1, "--store", nan_store],
        "rollout": ["rollout", "--run", run, "--store", nan_store, "--index", 2],
        "adapt": ["adapt", "--run", run, "--store", nan_store, "--index", 2],
    }[command]
    result = _run(*args)
    assert result.exit_code == 1
    line = result.output.splitlines()[-1]
    assert re.fullmatch(re.escape(f"Error: {nan_store}: clip ") + r"'a/clip\d\.mp4#0' \(index \d\)"
                        + re.escape(" has NaN or infinite features; extract it again or leave its task out"),
                        line), line
    if command in ("rollout", "adapt"):
        assert "'a/clip2.mp4#0' (index 2)" in line


@pytest.mark.parametrize("command", ["rollout", "adapt"])
def test_json_output_is_strict_with_null_and_a_reason(finished_run, tmp_path, command):
    """rollout reports NaN as null with a reason; adapt refuses such weights (issue 20: its
    helped / hurt verdict from NaN would mean nothing)."""
    import shutil

    from safetensors.torch import load_file, save_file

    store, original = finished_run
    run = Path(shutil.copytree(original, tmp_path / "run"))
    weights = run / "checkpoints" / "experience-0" / "model.safetensors"
    tensors = load_file(weights)
    tensors = {k: torch.full_like(v, float("nan")) if k.startswith("out") or "norm" in k else v
               for k, v in tensors.items()}
    save_file(tensors, weights)
    result = _run(command, "--run", run, "--store", store, "--index", 0, "--json")
    if command == "adapt":
        assert result.exit_code == 1
        assert re.fullmatch(re.escape(f"Error: {weights}: ") + r"\S+ holds NaN or infinite values \(the run "
                            r"diverged or the file is damaged\); use an earlier checkpoint or train again\n",
                            result.output), result.output
        return
    assert result.exit_code == 0, result.output

    def refuse(constant):
        raise ValueError(f"bare {constant} in --json output")

    report = json.loads(result.stdout, parse_constant=refuse)
    assert report["non_finite"]["fields"] and "NaN or infinite" in report["non_finite"]["reason"]
    if command == "rollout":
        assert report["rollout"]["l1_per_horizon"][0] is None
        assert "rollout.l1_per_horizon[0]" in report["non_finite"]["fields"]
    else:
        assert report["mean"]["frozen"] is None and "mean.frozen" in report["non_finite"]["fields"]
