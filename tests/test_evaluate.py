"""Continual-learning metrics against answers worked out by hand, and `evaluate_runs` on
hand-written results.json files (no training)."""

from __future__ import annotations

import json

import pytest

from hopecli.errors import HopeError
from hopecli.evaluate import continual_metrics, evaluate_runs, gap_closed

# rows: after experience i (one task each, in column order); columns: task j
R = [
    [0.30, 0.50, 0.60],
    [0.27, 0.28, 0.55],
    [0.40, 0.33, 0.25],
]
INITIAL = [0.70, 0.65, 0.80]


def test_metrics_by_hand():
    m = continual_metrics(R, initial=INITIAL)
    # mean of the last row: (0.40 + 0.33 + 0.25) / 3
    assert m["avg_error"] == pytest.approx(0.98 / 3)
    # mean of the diagonal: (0.30 + 0.28 + 0.25) / 3
    assert m["plasticity"] == pytest.approx(0.83 / 3)
    # task 0: 0.40 - min(0.30, 0.27) = 0.13; task 1: 0.33 - 0.28 = 0.05 -> 0.09
    assert m["forgetting"] == pytest.approx(0.09)
    # task 0: 0.30 - 0.40 = -0.10; task 1: 0.28 - 0.33 = -0.05 -> -0.075
    assert m["backward_transfer"] == pytest.approx(-0.075)
    # task 1: 0.65 - 0.50 = 0.15; task 2: 0.80 - 0.55 = 0.25 -> 0.20
    assert m["forward_transfer"] == pytest.approx(0.20)


def test_forgetting_ignores_rows_before_the_task_was_learned():
    # task 1's error before its own experience (0.10) is lower than after; it is not "best earlier"
    m = continual_metrics([[0.3, 0.10, 0.9], [0.3, 0.20, 0.9], [0.3, 0.25, 0.2]])
    assert m["forgetting"] == pytest.approx((0.0 + 0.05) / 2)


def test_joint_run_one_experience_for_all_tasks():
    m = continual_metrics([[0.25, 0.26]], first_trained=[0, 0], initial=[0.7, 0.7])
    assert m["avg_error"] == pytest.approx(0.255)
    assert m["plasticity"] == pytest.approx(0.255)
    assert m["forgetting"] is None and m["backward_transfer"] is None and m["forward_transfer"] is None


def test_gap_closed_reproduces_the_seed_table():
    # seeds/002: naive ViT 0.3720, joint ViT 0.2502; HOPE phase 1 0.3958 -> -19.5 %, phase 2 0.3987 -> -21.9 %
    assert gap_closed(0.3958, 0.3720, 0.2502) == pytest.approx(-0.195, abs=5e-4)
    assert gap_closed(0.3987, 0.3720, 0.2502) == pytest.approx(-0.219, abs=5e-4)
    assert gap_closed(0.3720, 0.3720, 0.2502) == 0.0
    assert gap_closed(0.2502, 0.3720, 0.2502) == 1.0
    with pytest.raises(HopeError, match="same Avg Error"):
        gap_closed(0.3, 0.3, 0.3)


def test_bad_shapes_are_value_errors():
    with pytest.raises(ValueError, match="first_trained"):
        continual_metrics(R, first_trained=[0, 1, 3])
    with pytest.raises(ValueError, match="initial"):
        continual_metrics(R, initial=[0.1, 0.2])


def _write_run(path, R_tf, first_trained, experiences, strategy, horizon=None):
    path.mkdir()
    results = {
        "strategy": strategy,
        "tasks": ["a", "b"],
        "experiences": [{"name": e, "tasks": [e], "steps": 1} for e in experiences],
        "first_trained": first_trained,
        "initial": {"teacher_forcing": [0.9, 0.9], "jump": [0.9, 0.9]},
        "R": {"teacher_forcing": R_tf, "jump": R_tf},
        "horizon": horizon,
        "complete": horizon is not None,
    }
    (path / "results.json").write_text(json.dumps(results))
    return path


def test_evaluate_runs_gap_closed_and_figures(tmp_path):
    h = {"steps": 2, "tasks": {"a": [0.2, 0.3], "b": [0.4, 0.5]}}
    naive = _write_run(tmp_path / "naive", [[0.3, 0.6], [0.5, 0.3]], [0, 1], ["a", "b"], "naive", h)
    joint = _write_run(tmp_path / "joint", [[0.2, 0.2]], [0, 0], ["joint"], "joint", h)
    model = _write_run(tmp_path / "model", [[0.3, 0.6], [0.35, 0.25]], [0, 1], ["a", "b"], "naive", h)
    unfinished = _write_run(tmp_path / "unfinished", [[0.3, 0.6]], [0, 1], ["a", "b"], "naive")
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
    for run in (model, naive, unfinished):
        assert (run / "eval.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    json.dumps(report, allow_nan=False)  # valid JSON, no NaN


def test_evaluate_runs_errors(tmp_path):
    with pytest.raises(HopeError, match="no results.json"):
        evaluate_runs([tmp_path], figures=False)
    run = _write_run(tmp_path / "r", [[0.3, 0.6], [0.5, 0.3]], [0, 1], ["a", "b"], "naive")
    with pytest.raises(HopeError, match="both baselines"):
        evaluate_runs([run], naive=run, figures=False)
