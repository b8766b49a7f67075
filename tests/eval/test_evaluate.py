"""`evaluate_runs` on hand-written results.json files (no training): Gap Closed, unfinished
runs, figures written, and its errors."""

from __future__ import annotations

import json

import pytest

from hopecli.errors import HopeError
from hopecli.eval.evaluate import evaluate_runs

from .conftest import write_run


def test_evaluate_runs_gap_closed_and_figures(tmp_path):
    h = {"steps": 2, "tasks": {"a": [0.2, 0.3], "b": [0.4, 0.5]}}
    naive = write_run(tmp_path / "naive", [[0.3, 0.6], [0.5, 0.3]], [0, 1], ["a", "b"], "naive", h)
    joint = write_run(tmp_path / "joint", [[0.2, 0.2]], [0, 0], ["joint"], "joint", h)
    model = write_run(tmp_path / "model", [[0.3, 0.6], [0.35, 0.25]], [0, 1], ["a", "b"], "naive", h)
    unfinished = write_run(tmp_path / "unfinished", [[0.3, 0.6]], [0, 1], ["a", "b"], "naive")
    figure = tmp_path / "all.png"
    report = evaluate_runs([model, naive, unfinished], naive=naive, joint=joint, out_figure=figure)
    m = report["runs"][0]["metrics"]["teacher_forcing"]
    # naive avg 0.4, joint 0.2, model 0.3 -> half the gap
    assert m["avg_error"] == pytest.approx(0.3)
    assert m["gap_closed"] == pytest.approx(0.5)
    assert m["forgetting"] == pytest.approx(0.05)
    assert report["runs"][1]["metrics"]["teacher_forcing"]["gap_closed"] == pytest.approx(0.0)
    assert report["runs"][2]["metrics"]["teacher_forcing"] is None  # one of two experiences done
    assert report["runs"][0]["horizon"]["mean"] == pytest.approx([0.3, 0.4])
    assert report["baselines"]["joint"]["avg_error"]["jump"] == pytest.approx(0.2)
    stream = report["runs"][0]["stream"]["jump"]  # the seeds' family beside ours, from the same R
    assert stream["stream_error"] == pytest.approx([0.3, 0.3]) and stream["final"]["backward_transfer"] == \
        pytest.approx(0.05)
    unfinished_stream = report["runs"][2]["stream"]["teacher_forcing"]
    assert unfinished_stream["stream_error"] == pytest.approx([0.3]) and unfinished_stream["final"] is None
    for run in (model, naive, unfinished):
        assert (run / "eval.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    json.dumps(report, allow_nan=False)  # valid JSON, no NaN


def test_evaluate_runs_errors(tmp_path):
    with pytest.raises(HopeError, match="no results.json"):
        evaluate_runs([tmp_path], figures=False)
    run = write_run(tmp_path / "r", [[0.3, 0.6], [0.5, 0.3]], [0, 1], ["a", "b"], "naive")
    with pytest.raises(HopeError, match="both baselines"):
        evaluate_runs([run], naive=run, figures=False)
