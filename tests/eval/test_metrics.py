"""Continual-learning metrics against answers worked out by hand, and `evaluate_runs` on
hand-written results.json files (no training)."""

from __future__ import annotations

import json

import pytest

from hopecli.errors import HopeError
from hopecli.eval.metrics import continual_metrics, evaluate_runs, final_stream_metrics, gap_closed, stream_metrics

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


# the seeds' protocol: base training, then three tasks; columns: base, t1, t2, t3
R_BASE = [
    [0.20, 0.50, 0.60, 0.70],  # after base
    [0.25, 0.30, 0.30, 0.65],  # after t1 (t2 already improved: 0.30, before its own training)
    [0.30, 0.28, 0.35, 0.60],  # after t2
    [0.28, 0.45, 0.50, 0.40],  # after t3
]


def test_seeds_metric_family_by_hand():
    m = stream_metrics(R_BASE)
    # stream error: mean over the seen columns j <= i
    # 0.20; (0.25 + 0.30) / 2; (0.30 + 0.28 + 0.35) / 3; (0.28 + 0.45 + 0.50 + 0.40) / 4
    assert m["stream_error"] == pytest.approx([0.20, 0.275, 0.93 / 3, 1.63 / 4])
    # experience forgetting: R[i][j] - min over ALL earlier rows k < i of R[k][j]
    # row 1: base 0.25 - 0.20 = 0.05
    # row 2: base 0.30 - min(0.20, 0.25) = 0.10; t1 0.28 - min(0.50, 0.30) = -0.02
    # row 3: base 0.28 - 0.20 = 0.08; t1 0.45 - min(0.50, 0.30, 0.28) = 0.17;
    #        t2 0.50 - min(0.60, 0.30, 0.35) = 0.20 (the 0.30 from before t2's own training counts)
    ef = m["experience_forgetting"]
    assert ef[0] == [None] * 4
    assert ef[1][0] == pytest.approx(0.05) and ef[1][1:] == [None] * 3
    assert ef[2][:2] == pytest.approx([0.10, -0.02]) and ef[2][2:] == [None] * 2
    assert ef[3][:3] == pytest.approx([0.08, 0.17, 0.20]) and ef[3][3] is None
    # stream forgetting: mean of each row's EF; 0 after base
    assert m["stream_forgetting"] == pytest.approx([0.0, 0.05, 0.08 / 2, 0.45 / 3])
    # BWT (theirs): mean over j < i of R[i][j] - R[j][j]; positive = the error grew
    # row 1: 0.25 - 0.20; row 2: (0.10 + (0.28 - 0.30)) / 2; row 3: (0.08 + 0.15 + 0.15) / 3
    assert m["backward_transfer"][0] is None
    assert m["backward_transfer"][1:] == pytest.approx([0.05, 0.04, 0.38 / 3])
    # FWT (theirs): mean error on the not yet trained columns j > i
    # row 0: (0.50 + 0.60 + 0.70) / 3; row 1: (0.30 + 0.65) / 2; row 2: 0.60; row 3: none
    assert m["forward_transfer"][:3] == pytest.approx([0.60, 0.475, 0.60]) and m["forward_transfer"][3] is None
    final = final_stream_metrics(m)
    assert final["stream_error"] == pytest.approx(0.4075) and final["stream_forgetting"] == pytest.approx(0.15)
    assert final["backward_transfer"] == pytest.approx(0.38 / 3)
    assert final["forward_transfer"] == pytest.approx((0.60 + 0.475 + 0.60) / 3)  # mean over rows 0..2
    # ours on the same R, for contrast: forgetting only counts rows from the task's training on
    # base 0.28 - min(0.20, 0.25, 0.30) = 0.08; t1 0.45 - min(0.30, 0.28) = 0.17; t2 0.50 - 0.35 = 0.15
    ours = continual_metrics(R_BASE)
    assert ours["forgetting"] == pytest.approx(0.40 / 3)
    assert ours["backward_transfer"] == pytest.approx(-0.38 / 3)  # the opposite sign of theirs
    assert ours["avg_error"] == pytest.approx(final["stream_error"])  # every column seen at the end


def test_seeds_metrics_of_a_joint_run_and_of_missing_errors():
    m = stream_metrics([[0.25, 0.35]], first_trained=[0, 0])
    assert m["stream_error"] == pytest.approx([0.30]) and m["stream_forgetting"] == [0.0]
    assert m["backward_transfer"] == [None] and m["forward_transfer"] == [None]
    assert final_stream_metrics(m)["forward_transfer"] is None
    # a NaN (diverged) error: stream error / FWT of its row missing, forgetting and BWT skip it
    m = stream_metrics([[0.2, 0.5, 0.6], [0.3, 0.3, None], [0.4, None, 0.2]])
    assert m["forward_transfer"][1] is None and m["stream_error"][2] is None
    assert m["stream_forgetting"][2] == pytest.approx(0.2) and m["backward_transfer"][2] == pytest.approx(0.2)


def test_gap_closed_reproduces_the_seed_table():
    # seeds/002: naive ViT 0.3720, joint ViT 0.2502; HOPE phase 1 0.3958 -> -19.5 %, phase 2 0.3987 -> -21.9 %
    assert gap_closed(0.3958, 0.3720, 0.2502) == pytest.approx(-0.195, abs=5e-4)
    assert gap_closed(0.3987, 0.3720, 0.2502) == pytest.approx(-0.219, abs=5e-4)
    assert gap_closed(0.3720, 0.3720, 0.2502) == 0.0
    assert gap_closed(0.2502, 0.3720, 0.2502) == 1.0
    # a joint baseline no better than the naive one leaves the gap undefined, not sign-flipped
    assert gap_closed(0.3, 0.3, 0.3) is None
    assert gap_closed(0.2, 0.3, 0.35) is None


def test_bad_shapes_are_value_errors():
    with pytest.raises(ValueError, match="first_trained"):
        continual_metrics(R, first_trained=[0, 1, 3])
    with pytest.raises(ValueError, match="initial"):
        continual_metrics(R, initial=[0.1, 0.2])
    with pytest.raises(ValueError, match="first_trained"):
        stream_metrics(R, first_trained=[0, 1])


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
    stream = report["runs"][0]["stream"]["jump"]  # the seeds' family beside ours, from the same R
    assert stream["stream_error"] == pytest.approx([0.3, 0.3]) and stream["final"]["backward_transfer"] == \
        pytest.approx(0.05)
    unfinished_stream = report["runs"][2]["stream"]["teacher_forcing"]
    assert unfinished_stream["stream_error"] == pytest.approx([0.3]) and unfinished_stream["final"] is None
    for run in (model, naive, unfinished):
        assert (run / "eval.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    json.dumps(report, allow_nan=False)  # valid JSON, no NaN


def test_figures_draw_runs_on_shared_named_axes(tmp_path, monkeypatch):
    from hopecli.eval.metrics import COMPARISON_TITLES, RunReport, comparison_figure, save_figure

    h = {"steps": 2, "tasks": {"a": [0.2, 0.3], "b": [0.4, 0.5]}}
    runs = [_write_run(tmp_path / name, [[0.3, 0.6], [0.35, 0.25]], [0, 1], ["a", "b"], "naive", h)
            for name in ("one", "two")]
    reports = [RunReport(**r) for r in evaluate_runs(runs, figures=False)["runs"]]
    baselines = {"avg_error": {"teacher_forcing": 0.4, "jump": 0.5}, "horizon": {"steps": 2, "mean": [0.3, 0.6]}}
    reports[0].baselines = {"copy_last": baselines, "context_mean": baselines}
    reports[1].probe = {"steps": 2, "units": "table widths", "mean": {
        "true_features": [0.01, 0.02], "copy_last": [0.05, 0.1], "model": [0.03, 0.04]}}
    fig = comparison_figure(reports)
    bars, horizon, probe = fig.axes[:3]
    assert tuple(ax.get_title().replace("\n", " ") for ax in (bars, horizon, probe)) == COMPARISON_TITLES
    # errors as differences to copy-last (0.4), so that 0.3 against 0.4 is not two bars of nearly one height
    assert [t.get_text() for t in bars.get_xticklabels()] == ["Avg Error\n- copy-last", "Forgetting",
                                                              "Plasticity\n- copy-last"]
    assert len(bars.patches) == 6  # 3 metrics x 2 runs, grouped
    m = reports[0].metrics["teacher_forcing"]
    heights = [p.get_height() for p in bars.patches[:3]]
    assert heights == pytest.approx([m["avg_error"] - 0.4, m["forgetting"], m["plasticity"] - 0.4])
    assert [line.get_label() for line in horizon.get_lines()] == ["one", "two", "context-mean baseline",
                                                                  "copy-last baseline"]
    styles = [(line.get_linestyle(), line.get_color(), line.get_marker()) for line in horizon.get_lines()[2:]]
    assert len(set(styles)) == 2  # each baseline its own line style, colour and marker
    assert horizon.get_xlabel() == probe.get_xlabel() == "rollout horizon (steps)"
    assert [line.get_label() for line in probe.get_lines()] == ["true features (probe ceiling)", "copy-last", "two"]
    assert "table widths" in probe.get_ylabel()
    colour_bars = [ax for ax in fig.axes if ax.get_ylabel() == "L1 error"]
    assert len(colour_bars) == 2  # one labelled colour bar per run's heat map
    heat_maps = [ax for ax in fig.axes[3:] if ax.get_xlabel() == "evaluated on partition"]
    assert [ax.get_title().split(":")[0] for ax in heat_maps] == ["one", "two"]
    assert heat_maps[0].images[0].get_clim() == heat_maps[1].images[0].get_clim()  # one colour scale

    from matplotlib.figure import Figure

    saved, savefig = [], Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda fig, *a, **k: (saved.append(fig), savefig(fig, *a, **k)))
    save_figure(reports[:1], tmp_path / "one.png")
    titles = [ax.get_title() for ax in saved[0].axes]
    assert ("one: teacher-forcing error on each partition after each experience"
            in [t.replace("\n", " ") for t in titles])  # words, not R[i][j]
    per_horizon = next(ax for ax in saved[0].axes if ax.get_xlabel() == "rollout horizon (steps)")
    mean, *baselines = [line for line in per_horizon.get_lines() if "baseline" in line.get_label()
                        or line.get_label().startswith("mean")]
    assert len({(line.get_linestyle(), line.get_color(), line.get_marker()) for line in [mean, *baselines]}) == 3


def test_comparison_width_is_bounded_and_no_title_is_clipped(tmp_path):
    """Eight runs: the figure stays COMPARISON_WIDTH wide (heat maps wrap into rows), and
    every title, long run names included, lies inside the figure."""
    from hopecli.eval.metrics import COMPARISON_WIDTH, RunReport, comparison_figure, save_figure

    h = {"steps": 2, "tasks": {"a": [0.2, 0.3], "b": [0.4, 0.5]}}
    runs = [_write_run(tmp_path / f"a_rather_long_run_name_{k}", [[0.3, 0.6], [0.35, 0.25]], [0, 1], ["a", "b"],
                       "naive", h) for k in range(8)]
    reports = [RunReport(**r) for r in evaluate_runs(runs, figures=False)["runs"]]
    fig = comparison_figure(reports)
    assert fig.get_size_inches()[0] == COMPARISON_WIDTH
    fig.canvas.draw()
    box = fig.bbox
    for ax in fig.axes:
        if ax.get_visible() and ax.get_title():
            extent = ax.title.get_window_extent()
            assert box.x0 <= extent.x0 and extent.x1 <= box.x1 and extent.y1 <= box.y1, ax.get_title()

    from matplotlib.figure import Figure

    saved, savefig = [], Figure.savefig
    Figure.savefig = lambda fig, *a, **k: (saved.append(fig), savefig(fig, *a, **k))
    try:
        save_figure(reports[:1], tmp_path / "one.png")
    finally:
        Figure.savefig = savefig
    saved[0].canvas.draw()
    for ax in saved[0].axes:
        if ax.get_title():
            extent = ax.title.get_window_extent()
            assert saved[0].bbox.x0 <= extent.x0 and extent.x1 <= saved[0].bbox.x1, ax.get_title()
    assert sum(ax.get_ylabel() == "L1 error" for ax in saved[0].axes) >= 2  # both heat maps' colour bars


def test_evaluate_runs_errors(tmp_path):
    with pytest.raises(HopeError, match="no results.json"):
        evaluate_runs([tmp_path], figures=False)
    run = _write_run(tmp_path / "r", [[0.3, 0.6], [0.5, 0.3]], [0, 1], ["a", "b"], "naive")
    with pytest.raises(HopeError, match="both baselines"):
        evaluate_runs([run], naive=run, figures=False)
