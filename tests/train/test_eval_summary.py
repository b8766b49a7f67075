"""`hope eval` on several runs: one summary table first, the details on request, a warning
for partitions validated on too few clips."""

from __future__ import annotations

import json

from click.testing import CliRunner

from hopecli.cli import hope
from hopecli.commands import eval as eval_cmd

from .conftest import make_store


def _run(*args):
    return CliRunner().invoke(hope, [str(a) for a in args], catch_exceptions=False)


def _train(store, run, *extra):
    result = _run("train", store, "--out", run, "--preset", "vit_tiny", "--tasks", "a,b", "--steps", "1",
                  "--batch-size", "2", "--horizon", "1", *extra)
    assert result.exit_code == 0, result.output


def test_summary_first_details_on_request(tmp_path):
    store = make_store(tmp_path / "s.zarr", {"a": 8, "b": 8})
    for name, strategy in (("naive", "naive"), ("joint", "joint"), ("replay", "replay")):
        _train(store, tmp_path / name, "--strategy", strategy, "--val-clips", "3")
    runs = [tmp_path / n for n in ("naive", "joint", "replay")]
    result = _run("eval", *runs, "--naive", runs[0], "--joint", runs[1], "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    lines = result.stderr.splitlines()
    assert lines[0].strip() == ("summary: teacher-forcing error, lower is better (Gap Closed: higher is "
                                "better)")
    header = next(line for line in lines if "Avg Error" in line)
    assert [c.strip() for c in header.strip("┃ ").split("┃")] == [
        "run", "Avg Error", "Forgetting", "Plasticity", "Gap Closed", "Jump Avg Error", "vs copy"]
    cut = next(i for i, line in enumerate(lines) if "over seeds: mean [95% interval]" in line)
    rows = [[c.strip() for c in line.strip("│ ").split("│")] for line in lines[:cut] if line.startswith("│")]
    assert [r[0] for r in rows] == ["naive", "joint", "replay", "copy-last", "context-mean"]
    groups = [line.strip("│ ").split("│")[0].strip() for line in lines[cut:] if line.startswith("│")]
    assert groups[:3] == ["naive", "joint", "replay"]  # one seed each: an interval from the clips
    copy = report["runs"][0]["baselines"]["copy_last"]["avg_error"]["teacher_forcing"]
    assert rows[3][1] == f"{copy:.4f}" and rows[3][2] == ""  # a baseline forgets nothing
    vs_copy = report["runs"][2]["metrics"]["teacher_forcing"]["vs_copy"]
    assert rows[2][6] == f"{100 * vs_copy:+.1f}%"
    m = report["runs"][2]["metrics"]["teacher_forcing"]
    gap = "-" if m["gap_closed"] is None else f"{100 * m['gap_closed']:.1f}%"
    assert rows[2][1:5] == [f"{m['avg_error']:.4f}", f"{m['forgetting']:.4f}", f"{m['plasticity']:.4f}", gap]
    assert rows[1][2] == "-"  # a joint run has nothing to forget
    assert "error on each partition" not in result.stderr and "validation clips" not in result.stderr
    assert lines[-1].startswith("per-run error matrices and both metric families: --details; figures: ")
    # the summary and its means with intervals (one row per configuration), not ten tables
    assert len([line for line in lines if line.startswith("┏")]) == 2

    detailed = _run("eval", *runs, "--details")
    assert detailed.stderr.splitlines()[0] == lines[0]
    assert detailed.stderr.count("error on each partition (column) after each experience (row)") == 6
    assert "BWT (+ = error grew)" in detailed.stderr and "BWT (+ = helped)" in detailed.stderr


def test_a_warning_for_fewer_than_three_validation_clips(store_path, tmp_path):
    _train(store_path, tmp_path / "run", "--val-clips", "2")
    result = _run("eval", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert ("warning: run: fewer than 3 validation clips for 'a' 2, 'b' 2; errors on so few clips are too "
            "noisy to compare runs (train with --val-clips 3 or a larger --val-fraction)") in result.stderr.splitlines()


def test_a_summary_column_is_one_more_entry(store_path, tmp_path, monkeypatch):
    _train(store_path, tmp_path / "run", "--val-clips", "3")
    extra = ("Tasks", lambda run: str(len(run["tasks"])))
    monkeypatch.setattr(eval_cmd, "SUMMARY_COLUMNS", [*eval_cmd.SUMMARY_COLUMNS, extra])
    result = _run("eval", tmp_path / "run")
    header = next(line for line in result.stderr.splitlines() if "Avg Error" in line)
    assert header.strip("┃ ").split("┃")[-1].strip() == "Tasks"
    assert next(line for line in result.stderr.splitlines() if line.startswith("│ run")).rstrip(" │").endswith("2")
