"""Faults of issue 20: damaged stores and run files, full or read-only disks, signals.

Each test injects one fault (tests/faults.py) and asserts the one line the command ends
with: the file, the clip or field, the problem, and a non-zero exit."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from hopecli.cli import hope
from hopecli.data.store import ClipFeatures, FeatureStore, UnfinishedClipsWarning
from hopecli.errors import DamagedStoreError, DiskFullError
from tests.faults import (EACCES, corrupt_json, delete_chunk, fails_with, truncate_chunk)
from tests.train.conftest import make_store

TRAIN = ("--preset", "vit_tiny", "--tasks", "a,b", "--steps", "1", "--batch-size", "2", "--horizon", "1")


def _run(*args):
    return CliRunner().invoke(hope, [str(a) for a in args], catch_exceptions=False)


def _one_line(result, pattern: str) -> None:
    """The command failed with exactly one `Error: ...` line matching `pattern`."""
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, result.output
    assert re.fullmatch(f"Error: {pattern}", lines[0]), lines[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny store and a finished two-experience run on it (copied by `fresh`)."""
    root = tmp_path_factory.mktemp("trained")
    store = make_store(root / "store.zarr", {"a": 4, "b": 4})
    result = _run("train", store, "--out", root / "run", *TRAIN)
    assert result.exit_code == 0, result.output
    return store, root / "run"


@pytest.fixture
def fresh(trained, tmp_path) -> tuple[Path, Path]:
    """Copies of the trained store and run, with config.json pointing at the copied store."""
    store, run = (Path(shutil.copytree(p, tmp_path / p.name)) for p in trained)
    config = json.loads((run / "config.json").read_text())
    config["store"]["path"] = str(store.resolve())
    (run / "config.json").write_text(json.dumps(config))
    return store, run


# -- damaged store ---------------------------------------------------------------------


def _damage_every_clip(store: Path, how) -> None:
    for i in range(len(FeatureStore.open(store))):
        how(store, "features", i)


def test_truncated_chunk_names_the_clip_and_the_file(fresh):
    store, run = fresh
    path = truncate_chunk(store, "features", 2)
    with pytest.raises(DamagedStoreError, match=re.escape(f"{path}: clip 'a/clip2.mp4#0' (index 2) of the store: "
                                                          "its features chunk does not decode")):
        FeatureStore.open(store).read_batch([0, 2, 3])
    _damage_every_clip(store, truncate_chunk)
    _one_line(_run("train", store, "--out", run.parent / "new", *TRAIN),
              r".*/features/c/\d/0/0/0: clip '.*' \(index \d\) of the store: its features chunk does not "
              r"decode \(.*\); `hope check .*store.zarr --repair` extracts it again")
    assert not (run.parent / "new" / "checkpoints").exists()


def test_deleted_chunk_is_an_error_not_zeros(fresh):
    store, run = fresh
    for i, array in enumerate(("features", "actions", "states")):
        path = delete_chunk(store, array, i)
        with pytest.raises(DamagedStoreError, match=re.escape(f"{path}: clip 'a/clip{i}.mp4#0' (index {i}) of the "
                                                              f"store: its {array} chunk is missing")):
            FeatureStore.open(store).read(i)
    _damage_every_clip(store, delete_chunk)
    _one_line(_run("train", store, "--out", run.parent / "new", *TRAIN), r".*: its features chunk is missing; .*")


def test_all_zero_actions_are_written_and_read_back(tmp_path):
    store = FeatureStore.open(make_store(tmp_path / "s.zarr", {"a": 1}), writable=True)
    clip = store.read(0)
    store.write(0, ClipFeatures(clip.features, np.zeros_like(clip.actions), np.zeros_like(clip.states)))
    assert store.chunk_file("actions", 0).is_file()  # Zarr skips chunks equal to the fill value by default
    assert not store.read(0).actions.any()


def test_deleted_done_chunk_is_not_dropped_silently(fresh):
    store, _ = fresh
    delete_chunk(store, "done", 3)
    with pytest.warns(UnfinishedClipsWarning, match=r"1 clip\(s\) not marked done are left out "
                                                    r"\(first 'a/clip3.mp4#0'\)"):
        assert 3 not in FeatureStore.open(store).indices()


def test_garbage_array_metadata_is_one_line(fresh):
    store, run = fresh
    meta = corrupt_json(store / "features" / "zarr.json")
    with pytest.raises(DamagedStoreError, match=re.escape(f"{meta}: damaged store metadata (not valid JSON")):
        FeatureStore.open(store)
    _one_line(_run("train", store, "--out", run.parent / "new", *TRAIN),
              r".*/features/zarr.json: damaged store metadata \(not valid JSON: .*\); .*")


# -- damaged run files -----------------------------------------------------------------


@pytest.mark.parametrize("text, problem", [
    ("{}", "name is missing"),
    ('{"name": 3}', "name must be a string, got 3"),
    ('{"name": "../elsewhere"}', "name must be the name of a checkpoint folder, got '../elsewhere'"),
    ("[]", "the file must be an object, got a list"),
], ids=["empty", "number", "escapes", "list"])
def test_damaged_latest_json(fresh, text, problem):
    store, run = fresh
    latest = corrupt_json(run / "checkpoints" / "latest.json", text)
    _one_line(_run("train", store, "--out", run, "--resume"), re.escape(f"{latest}: {problem}"))
    _one_line(_run("rollout", "--run", run, "--store", store, "--index", 0), re.escape(f"{latest}: {problem}"))


def _edit_state(run: Path, edit) -> Path:
    path = run / "checkpoints" / "experience-1" / "state.pt"
    state = torch.load(path, weights_only=True)
    torch.save(edit(state), path)
    return path


def _wrong_shape(state):
    first = state["optimizer"]["state"][0]
    first["exp_avg"] = torch.zeros(3, 3, 3)
    return state


@pytest.mark.parametrize("edit, problem", [
    (lambda s: {}, "optimizer is missing"),
    (lambda s: {**s, "progress": {**s["progress"], "step": "x"}},
     "progress.step must be a non-negative integer, got 'x'"),
    (_wrong_shape, r"the optimizer state 'exp_avg' has shape \[3, 3, 3\], a parameter .*: it belongs to another model"),
    (lambda s: {**s, "optimizer": {**s["optimizer"], "param_groups": s["optimizer"]["param_groups"][:1]}},
     r"the optimizer state does not fit this model \(.*\)"),
], ids=["empty", "progress-type", "optimizer-shape", "optimizer-groups"])
def test_damaged_state_pt(fresh, edit, problem):
    store, run = fresh
    path = _edit_state(run, edit)
    pattern = problem if "\\" in problem else re.escape(problem)
    _one_line(_run("train", store, "--out", run, "--resume"), re.escape(str(path)) + ": " + pattern)


@pytest.mark.parametrize("edit, problem", [
    (lambda r: r["R"]["jump"][0].__setitem__(0, "0.5"), "R.jump[0][0] must be a number or null, got '0.5'"),
    (lambda r: r["R"]["teacher_forcing"][1].pop(), "R.teacher_forcing[1] must hold 2 value(s), one per task, got 1"),
    (lambda r: r.__setitem__("experiences", ["a", "b"]), "experiences[0] must be an object, got 'a'"),
    (lambda r: r.pop("tasks"), "tasks is missing"),
], ids=["R-string", "ragged", "experiences-strings", "no-tasks"])
def test_damaged_results_json(fresh, edit, problem):
    _, run = fresh
    results = json.loads((run / "results.json").read_text())
    edit(results)
    (run / "results.json").write_text(json.dumps(results))
    _one_line(_run("eval", run), re.escape(f"{run / 'results.json'}: {problem}"))


@pytest.mark.parametrize("text, problem", [
    ("[]", "the file must be an object, got a list"),
    ('{"train": {"a": 3}, "val": {}}', "train.a must be a list, got 3"),
    ('{"train": {}}', "val is missing"),
], ids=["list", "number", "no-val"])
def test_damaged_split_json(fresh, text, problem):
    store, run = fresh
    split = corrupt_json(run / "split.json", text)
    _one_line(_run("train", store, "--out", run, "--resume"), re.escape(f"{split}: {problem}"))


# -- the operating system's errors -----------------------------------------------------


def test_permission_error_is_one_line_naming_the_file(fresh, monkeypatch):
    store, run = fresh
    target = run.parent / "new" / "config.json"
    monkeypatch.setattr("hopecli.train.continual.write_json", fails_with(EACCES, target))
    _one_line(_run("train", store, "--out", run.parent / "new", *TRAIN),
              re.escape(f"{target}: permission denied (owned by another user, or read-only)"))


# -- signals ---------------------------------------------------------------------------


@pytest.fixture
def restore_signals():
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for s, handler in saved.items():
        signal.signal(s, handler)


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["INT", "TERM"])
def test_signal_during_start_up_exits_130_or_143(monkeypatch, restore_signals, signum, code):
    from hopecli import cli

    monkeypatch.setattr(cli, "prepare_environment", lambda: os.kill(os.getpid(), signum))
    with pytest.raises(SystemExit) as stopped:
        cli.main()
    assert stopped.value.code == code


def test_sigterm_during_the_final_measurement_exits_143_and_resumes(fresh, monkeypatch, restore_signals):
    from hopecli.train import continual

    store, run = fresh
    real = continual._evaluate_tasks

    def measure(*args, horizon=0):
        if horizon:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, horizon=horizon)

    monkeypatch.setattr(continual, "_evaluate_tasks", measure)
    new = run.parent / "new"
    result = _run("train", store, "--out", new, *TRAIN)
    assert result.exit_code == 143, result.output
    assert "stopped by SIGTERM during the final measurement per horizon" in result.output
    assert json.loads((new / "results.json").read_text())["complete"] is False
    monkeypatch.undo()
    assert _run("train", store, "--out", new, "--resume").exit_code == 0
    assert json.loads((new / "results.json").read_text()) == json.loads((run / "results.json").read_text())


# -- two writers, a store changed under a run ------------------------------------------


def test_a_second_writer_of_a_run_is_refused_naming_the_holder(fresh):
    from hopecli.runs.folder import run_lock

    store, run = fresh
    with run_lock(run):  # as a `hope train --resume` of this run in progress would
        result = _run("train", store, "--out", run, "--resume")
    _one_line(result, re.escape(f"{run}: pid {os.getpid()} on ") + r".* since .* is writing this run "
              r"\(train or --resume\); wait for it to finish or stop it \(its lock: .*run.lock\)")
    assert _run("train", store, "--out", run, "--resume").exit_code == 0  # released


@pytest.mark.parametrize("change, gone", [
    (lambda g: g["task"].__setitem__(1, "b"), "a/clip1.mp4#0"),
    (lambda g: g["done"].__setitem__(3, False), "a/clip3.mp4#0"),
], ids=["relabelled", "removed"])
def test_a_store_changed_under_a_run_is_refused_on_resume(fresh, change, gone):
    import zarr

    store, run = fresh
    change(zarr.open_group(str(store), mode="r+"))
    result = _run("train", store, "--out", run, "--resume")
    _one_line(result, re.escape(f"{store.resolve()}: the clips differ from the split recorded in "
                                f"{run / 'split.json'}: task 'a' now has ") + r".*gone " + re.escape(repr(gone))
              + r"\); resume on the store as it was, or start a new run with another --out")


# -- disk space, file modes ------------------------------------------------------------


def test_a_checkpoint_that_does_not_fit_is_refused_and_leaves_nothing(fresh, monkeypatch):
    from tests.faults import full_disk

    store, run = fresh
    new = run.parent / "new"
    full_disk(monkeypatch, free=4096)
    result = _run("train", store, "--out", new, *TRAIN)
    _one_line(result, re.escape(f"{new / 'checkpoints'}: no space left on ") + r"/\S* for checkpoint experience-0, "
              r"\d+\.\d MiB needed, 0\.0 MiB free")
    assert sorted(p.name for p in (new / "checkpoints").iterdir()) == []  # no .tmp-experience-0


def test_a_failed_checkpoint_write_leaves_no_temporary_folder(fresh, monkeypatch):
    from tests.faults import ENOSPC, fails_with

    from hopecli.runs import checkpoint

    store, run = fresh
    new = run.parent / "new"
    monkeypatch.setattr(checkpoint.torch, "save", fails_with(ENOSPC, new / "checkpoints" / ".tmp-experience-0"))
    result = _run("train", store, "--out", new, *TRAIN)
    _one_line(result, re.escape(f"{new / 'checkpoints' / '.tmp-experience-0'}: no space left on ") + r"/\S*")
    assert list((new / "checkpoints").iterdir()) == []


def test_a_clip_that_does_not_fit_is_refused_and_the_store_stays_whole(tmp_path, monkeypatch):
    from tests.faults import full_disk

    path = make_store(tmp_path / "s.zarr", {"a": 2})
    store = FeatureStore.open(path, writable=True)
    [index] = store.add_clips(["a/new.mp4#0"], ["a"])
    full_disk(monkeypatch, free=1000)
    with pytest.raises(DiskFullError, match=re.escape(f"{path}: no space left on ") + r"/\S* for clip 2, "
                                            r"0\.1 MiB needed, 0\.0 MiB free"):
        store.write(index, store.read(0))
    assert not store.chunk_file("features", index).exists()
    assert FeatureStore.open(path).indices() == [0, 1]


def test_run_files_follow_the_umask(fresh):
    store, run = fresh
    old = os.umask(0o022)
    try:
        assert _run("train", store, "--out", run.parent / "new", *TRAIN).exit_code == 0
    finally:
        os.umask(old)
    for name in ("config.json", "split.json", "results.json", "checkpoints/latest.json",
                 "checkpoints/experience-1/model.safetensors", "checkpoints/experience-1/state.pt"):
        assert (run.parent / "new" / name).stat().st_mode & 0o777 == 0o644, name


# -- inputs ----------------------------------------------------------------------------


@pytest.fixture
def clips(tmp_path) -> Path:
    """A folder with one good video, a looping and a dangling .mp4 link."""
    from hopecli.data.synth import PushConfig, simulate_push, write_clip

    folder = tmp_path / "clips"
    folder.mkdir()
    write_clip(simulate_push(PushConfig(frames=8, resolution=32, seed=0)), folder / "good.mp4")
    (folder / "loop.mp4").symlink_to("loop.mp4")
    (folder / "dangling.mp4").symlink_to("nowhere.mp4")
    return folder


def test_broken_links_in_a_folder_are_named_and_skipped(clips, tmp_path):
    from hopecli.data.video import list_videos

    broken = []
    assert list_videos([clips], on_broken=lambda link, reason: broken.append(reason)) == [clips / "good.mp4"]
    assert broken == [f"{clips / 'dangling.mp4'}: dangling symlink (its target nowhere.mp4 does not exist); skipped",
                      f"{clips / 'loop.mp4'}: symlink loop (the link points back to itself); skipped"]
    result = _run("extract", clips / "loop.mp4", "--out", tmp_path / "s.zarr")
    _one_line(result, re.escape(f"{clips / 'loop.mp4'}: symlink loop (the link points back to itself); skipped"))
    result = _run("extract", clips, "--out", tmp_path / "s.zarr", "--frames", 8, "--device", "cpu")
    _one_line(result, re.escape("2 file(s) skipped; fix them or pass --allow-skips"))
    assert "symlink loop" in result.output and "dangling symlink" in result.output
    result = _run("extract", clips, "--out", tmp_path / "s.zarr", "--frames", 8, "--device", "cpu", "--allow-skips")
    assert result.exit_code == 0, result.output


def test_non_finite_rollout_actions_are_refused(fresh, tmp_path):
    store, run = fresh
    actions = np.zeros((3, 2), np.float32)
    actions[1, 0] = np.nan
    np.save(tmp_path / "a.npy", actions)
    _one_line(_run("rollout", "--run", run, "--store", store, "--index", 0, "--context", 1,
                   "--actions", tmp_path / "a.npy"),
              re.escape(f"{tmp_path / 'a.npy'}: row 1 of the actions holds NaN or infinite values"))


def test_a_failed_atomic_write_names_the_file_and_leaves_nothing(tmp_path, monkeypatch):
    from tests.faults import EROFS

    from hopecli.runs import folder

    target = tmp_path / "results.json"
    monkeypatch.setattr(folder.os, "replace", lambda src, dst: (_ for _ in ()).throw(OSError(EROFS, "ro", src)))
    with pytest.raises(OSError) as raised:
        folder.write_json(target, {"a": 1})
    assert raised.value.filename == str(target)
    assert list(tmp_path.iterdir()) == []


def test_eval_of_a_run_it_cannot_write_shows_the_metrics_and_warns(fresh, monkeypatch):
    from hopecli.eval import evaluate

    _, run = fresh
    monkeypatch.setattr(evaluate, "save_figure", fails_with(EACCES, run / "eval.png"))
    result = _run("eval", run)
    assert result.exit_code == 0, result.output
    assert "Avg Error" in result.output
    assert (f"warning: {run / 'eval.png'}: permission denied (owned by another user, or read-only): its figure "
            "is not written") in result.output
