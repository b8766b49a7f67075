"""Intervals over seeds and clips (hopecli.eval.intervals): each one brackets what it should and
says "within noise" exactly when it is."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hopecli.eval import intervals


def _results(clips: dict[str, list[float]], steps: int = 10, R_extra: list | None = None) -> dict:
    """A finished one-experience results.json whose final errors are `clips` per task."""
    tasks = list(clips)
    last = [float(np.mean(v)) for v in clips.values()]
    return {"tasks": tasks, "experiences": [{"name": "joint", "tasks": tasks, "steps": steps}],
            "first_trained": [0] * len(tasks), "R": {"teacher_forcing": [last], "jump": [last]},
            "val_clips": {t: len(v) for t, v in clips.items()},
            "clip_errors": {"teacher_forcing": clips, "jump": clips}}


def _metrics(results: dict) -> dict:
    from hopecli.eval.metrics import run_metrics

    return run_metrics(results)


def test_one_run_gets_an_interval_from_its_clips_that_brackets_its_mean():
    rng = np.random.default_rng(1)
    run = _results({"a": list(0.5 + 0.1 * rng.normal(size=20)), "b": list(0.3 + 0.1 * rng.normal(size=20))})
    entry = intervals.group_intervals([run], [_metrics(run)])["teacher_forcing"]["avg_error"]
    assert entry["low"] < entry["mean"] < entry["high"]
    # about the standard error of a mean over 2 x 20 clips of sd 0.1: 0.1 / sqrt(40) / sqrt(... )
    se = np.sqrt((0.1 ** 2 / 20) / 4 * 2)
    assert 2 * 1.96 * se * 0.7 < entry["high"] - entry["low"] < 2 * 1.96 * se * 1.3
    assert intervals.group_intervals([run], [_metrics(run)])["teacher_forcing"]["forgetting"] is None


def test_without_clip_errors_the_seeds_alone_are_resampled():
    runs = [_results({"a": [v]}) for v in (0.1, 0.2, 0.3)]
    for r in runs:
        del r["clip_errors"]
    entry = intervals.group_intervals(runs, [_metrics(r) for r in runs])["teacher_forcing"]["avg_error"]
    assert entry["mean"] == pytest.approx(0.2)
    assert 0.1 <= entry["low"] < 0.2 < entry["high"] <= 0.3


def _noisy(level: float, rng, n: int = 12, noise: float = 0.002) -> dict:
    """Clip difficulty shared by every run (the same validation clips) plus a run's own noise."""
    difficulty = np.random.default_rng(7).uniform(0.2, 0.6, size=n)
    return _results({"a": list(difficulty + level + noise * rng.normal(size=n))})


def test_a_clear_gap_gives_gap_closed_with_an_interval_around_the_truth():
    """naive 0.10 above joint on every clip, the model halfway: Gap Closed near 50%, and the
    clips' shared difficulty (spread 0.4) does not swamp it, as the clips are paired."""
    rng = np.random.default_rng(0)
    naive = [_noisy(0.10, rng) for _ in range(2)]
    joint = [_noisy(0.0, rng) for _ in range(2)]
    model = [_noisy(0.05, rng) for _ in range(2)]
    entry = intervals.gap_intervals(model, naive, joint)["teacher_forcing"]
    assert not entry["gap_within_noise"]
    assert entry["naive_joint_gap"]["low"] > 0.09
    closed = entry["gap_closed"]
    assert closed["low"] < 0.5 < closed["high"] and closed["high"] - closed["low"] < 0.2


def test_a_gap_smaller_than_the_seed_noise_is_within_noise():
    rng = np.random.default_rng(0)
    naive = [_noisy(0.001, rng, noise=0.05) for _ in range(3)]
    joint = [_noisy(0.0, rng, noise=0.05) for _ in range(3)]
    entry = intervals.gap_intervals(naive[:1], naive, joint)["teacher_forcing"]
    gap = entry["naive_joint_gap"]
    assert gap["low"] < 0 < gap["high"] and entry["gap_within_noise"]


def test_runs_that_differ_only_by_seed_group_together(tmp_path):
    def run(name: str, seed: int, lr: float, device: str = "cpu"):
        folder = tmp_path / name
        folder.mkdir(parents=True)
        (folder / "config.json").write_text(json.dumps({
            "hope_version": "x", "numerics": {"threads": seed}, "model": {"dim": 8},
            "train": {"seed": seed, "device": device, "optim": {"lr": lr}}, "store": {"path": "s"}}))
        return folder

    runs = [run("a/s0", 0, 1e-3), run("b/other", 0, 2e-3), run("a/s1", 1, 1e-3, device="cuda"), run("c/s0", 5, 1e-3)]
    assert intervals.group_runs(runs) == [[0, 2, 3], [1]]


def test_runs_of_one_name_in_different_folders_print_apart(tmp_path):
    names = intervals.short_names([tmp_path / "x" / "vit", tmp_path / "y" / "vit", tmp_path / "y" / "hope"])
    assert names == ["x/vit", "y/vit", "hope"]


def test_different_budgets_and_validation_clips_are_named():
    a, b = _results({"a": [0.1] * 3}, steps=100), _results({"a": [0.1] * 4}, steps=300)
    warnings = intervals.budget_differences({"vit": a, "vit_long": b})
    assert warnings[0].startswith("the runs trained for different numbers of steps (vit 100, vit_long 300)")
    assert warnings[1].startswith("the runs were validated on different numbers of clips (vit 3, vit_long 4")
    assert intervals.budget_differences({"vit": a, "again": _results({"a": [0.2] * 3}, steps=100)}) == []


def test_the_same_number_of_other_clips_is_named_too():
    a, b = _results({"a": [0.1] * 3}, steps=100), _results({"a": [0.2] * 3}, steps=100)
    names = {"s0": {"a": ["a/1", "a/2", "a/3"]}, "s1": {"a": ["a/1", "a/2", "a/4"]}}
    assert intervals.budget_differences({"s0": a, "s1": b}, names)[0].startswith(
        "the runs were validated on different clips (s0, s1; e.g. --val-fraction draws them with the seed)")
    assert intervals.budget_differences({"s0": a, "s1": b}, {"s0": names["s0"], "s1": names["s0"]}) == []
