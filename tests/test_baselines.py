"""Copy-last and context-mean baselines: by hand on a tiny store, and scored exactly as the
models are (a predictor that copies its input gets the copy-last numbers)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from hopecli.baselines import baseline_clip_errors, evaluate_baselines, relative_to, vs_copy
from hopecli.cli import hope
from hopecli.data.store import ClipFeatures, FeatureStore
from hopecli.eval.evaluate import evaluate_runs
from hopecli.runs.split import held_out
from hopecli.train.config import TrainConfig
from hopecli.train.continual import store_info
from hopecli.train.validate import clip_errors

torch.set_num_threads(1)

# D = 2: layer norm maps [1, 0] to [1, -1] and [0, 1] to [-1, 1] (up to its eps), so every
# error below is a small sum worked out by hand.
UP, DOWN = [1.0, 0.0], [0.0, 1.0]
CLIPS = {  # task -> the one patch's features per step (T = 3, P = 1)
    "a": [UP, DOWN, DOWN],
    "b": [UP, UP, DOWN],
}
# normalised: a = [+1, -1, -1] (first coordinate; the second is its negative), b = [+1, +1, -1]
# teacher forcing, copy-last:    a: (|1 - -1| + |-1 - -1|) / 2 = 1;  b: (0 + 2) / 2 = 1
# teacher forcing, context-mean: a: step 1 <- z0: 2, step 2 <- (z0 + z1) / 2 = 0: 1 -> 1.5
#                                b: step 1 <- z0: 0, step 2 <- (z0 + z1) / 2 = 1: 2 -> 1
# jump (targets 1 and 2 from step 0), both: a: (2 + 2) / 2 = 2;  b: (0 + 2) / 2 = 1
# horizon h from step 0, both: a: [2, 2];  b: [0, 2]
HAND = {
    "copy_last": {"a": (1.0, 2.0, [2.0, 2.0]), "b": (1.0, 1.0, [0.0, 2.0])},
    "context_mean": {"a": (1.5, 2.0, [2.0, 2.0]), "b": (1.0, 1.0, [0.0, 2.0])},
}


def _tiny_store(path):
    attrs = {
        "hope_version": "test",
        "encoder": {"name": "test", "config": {}, "checksum": "none", "random_features": True},
        "time_mode": "tubelet", "frames_per_clip": 6, "resolution": 16, "fps": 8.0, "tubelet_size": 2,
        "patch_size": 16, "patches_per_step": 1, "grid": [1, 1], "action_dim": 2, "state_dim": 2,
    }
    store = FeatureStore.create_or_resume(path, attrs, steps=3, dim=2)
    for task, steps in CLIPS.items():
        ids = store.add_clips([f"{task}/clip{i}.mp4#0" for i in range(3)], [task] * 3)
        for i in ids:
            features = np.array(steps, np.float16)[:, None, :]  # [T, 1, 2]
            store.write(i, ClipFeatures(features, np.zeros((3, 2), np.float32), np.zeros((3, 2), np.float32)))
    return store


def test_baselines_by_hand(tmp_path):
    store = _tiny_store(tmp_path / "s.zarr")
    for task in CLIPS:
        got = evaluate_baselines(store, store.indices([task]), horizon=2)
        for name, hand in HAND.items():
            tf, jump, horizon = hand[task]
            assert got[name]["teacher_forcing"] == pytest.approx(tf, rel=1e-4), (name, task)
            assert got[name]["jump"] == pytest.approx(jump, rel=1e-4), (name, task)
            assert got[name]["horizon"] == pytest.approx(horizon, rel=1e-4, abs=1e-6), (name, task)
            assert got[name]["clips"] == 3
    # jump_k = 1: only the last step is a jump target
    got = evaluate_baselines(store, store.indices(["b"]), jump_k=1)
    assert got["copy_last"]["jump"] == pytest.approx(2.0, rel=1e-4)


def test_eval_reports_baselines_on_the_runs_validation_clips(tmp_path):
    store = _tiny_store(tmp_path / "s.zarr")
    run = tmp_path / "run"
    run.mkdir()
    cfg = TrainConfig(tasks=("a", "b"), steps=1, val_fraction=0.3)
    (run / "config.json").write_text(json.dumps({"model": {}, "train": cfg.to_dict(), "store": store_info(store)}))
    results = {"strategy": "naive", "tasks": ["a", "b"], "first_trained": [0, 1],
               "experiences": [{"name": "a", "tasks": ["a"], "steps": 1}, {"name": "b", "tasks": ["b"], "steps": 1}],
               "R": {"teacher_forcing": [[0.5, 0.5], [0.5, 0.8]], "jump": [[1.0, 1.0], [1.0, 1.0]]},
               "horizon": {"steps": 2, "tasks": {"a": [1.0, 1.5], "b": [0.0, 1.0]}}, "complete": True}
    (run / "results.json").write_text(json.dumps(results))
    report = evaluate_runs([run], figures=False)["runs"][0]
    split = held_out(store, ["a", "b"], cfg)
    assert all(len(v) == 1 for v in split.val.values())  # 1 of 3 clips held out per task
    copy, mean = report["baselines"]["copy_last"], report["baselines"]["context_mean"]
    assert copy["teacher_forcing"] == pytest.approx({"a": 1.0, "b": 1.0}, rel=1e-4)
    assert mean["teacher_forcing"] == pytest.approx({"a": 1.5, "b": 1.0}, rel=1e-4)
    assert copy["avg_error"]["jump"] == pytest.approx(1.5, rel=1e-4)
    assert copy["horizon"]["mean"] == pytest.approx([1.0, 2.0], rel=1e-4)
    # Avg Error 0.65 (mean of the last row) against copy's 1.0
    assert report["metrics"]["teacher_forcing"]["vs_copy"] == pytest.approx(-0.35, rel=1e-3)
    result = CliRunner().invoke(hope, ["eval", str(run)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "copy-last" in result.output and "context-mean" in result.output
    assert "-35.0%" in result.output


def test_a_predictor_that_copies_scores_exactly_copy_last():
    """The same clips, steps, horizons and normalisation as the models' validation."""

    class Copy(torch.nn.Module):
        def forward(self, features, actions, states, target_step=None, **_):
            return SimpleNamespace(pred=features, diagnostics={})

    g = torch.Generator().manual_seed(0)
    features = torch.randn(3, 5, 4, 8, generator=g) * 3 + 1
    actions = states = torch.zeros(3, 5, 2)
    for jump_k in (None, 2):
        model = clip_errors(Copy(), features, actions, states, horizon=4, jump_k=jump_k)
        base = baseline_clip_errors(features, "copy_last", horizon=4, jump_k=jump_k)
        torch.testing.assert_close(model, base)
    # context-mean differs from copying where there is more than one step of context
    mean = baseline_clip_errors(features, "context_mean", horizon=4)
    base = baseline_clip_errors(features, "copy_last", horizon=4)
    assert not torch.allclose(mean[:, 0], base[:, 0]) and torch.allclose(mean[:, 1:], base[:, 1:])


def test_relative_to_copy():
    assert relative_to(0.069, 0.1) == pytest.approx(-0.31)
    assert vs_copy(0.069, 0.1) == "-31.0% vs copy"
    assert relative_to(None, 0.1) is None and relative_to(0.1, 0.0) is None and vs_copy(0.1, None) == "-"
