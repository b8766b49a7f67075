"""`hope eval` over seeds: a seeds folder is one row with intervals, runs of one name in two
folders print apart, and the warnings for a gap within noise and for unequal budgets."""

from __future__ import annotations

import json

from click.testing import CliRunner

from hopecli.cli import hope


def _run(*args):
    return CliRunner().invoke(hope, [str(a) for a in args], catch_exceptions=False)


def _train(store_path, out, *extra):
    result = _run("train", store_path, "--out", out, "--preset", "vit_tiny", "--tasks", "a,b", "--steps", "2",
                  "--batch-size", "2", "--val-clips", "3", *extra)
    assert result.exit_code == 0, result.output


def test_eval_aggregates_seed_runs_with_intervals(store_path, tmp_path):
    _train(store_path, tmp_path / "naive", "--seeds", "0,1")
    _train(store_path, tmp_path / "joint", "--seeds", "0,1", "--strategy", "joint")
    _train(store_path, tmp_path / "other" / "naive", "--steps", "3")  # same folder name, a longer budget
    result = _run("eval", tmp_path / "naive", tmp_path / "joint", tmp_path / "other" / "naive",
                  "--naive", tmp_path / "naive", "--joint", tmp_path / "joint", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    names = [r["name"] for r in report["runs"]]
    here = tmp_path.name
    assert names == [f"{here}/naive/seed0", f"{here}/naive/seed1", "joint/seed0", "joint/seed1", "other/naive"]
    groups = {g["name"]: g for g in report["groups"]}
    assert list(groups) == [f"{here}/naive", "joint", "other/naive"]
    assert groups[f"{here}/naive"]["seeds"] == [0, 1]
    avg = groups[f"{here}/naive"]["metrics"]["teacher_forcing"]["avg_error"]
    seeds = [r["metrics"]["teacher_forcing"]["avg_error"] for r in report["runs"][:2]]
    assert avg["mean"] == sum(seeds) / 2 and avg["low"] < avg["mean"] < avg["high"]
    gap = groups[f"{here}/naive"]["gap"]["teacher_forcing"]
    assert gap["gap_within_noise"] == (gap["naive_joint_gap"]["low"] <= 0 <= gap["naive_joint_gap"]["high"])
    text = " ".join(result.stderr.split())
    assert "over seeds: mean [95% interval]" in text
    assert (f"warning: the runs trained for different numbers of steps ({here}/naive/seed0 4, {here}/naive/seed1 4, "
            "joint/seed0 4, joint/seed1 4, other/naive 6") in text
    if gap["gap_within_noise"]:
        assert "warning: the naive - joint gap of Avg Error (teacher-forcing) is" in text
