"""The figures of `hope eval`: runs on shared, named axes, a bounded width, no title clipped."""

from __future__ import annotations

import pytest

from hopecli.eval.evaluate import evaluate_runs
from hopecli.eval.figures import COMPARISON_TITLES, COMPARISON_WIDTH, comparison_figure, save_figure
from hopecli.eval.report import RunReport

from .conftest import write_run


def test_figures_draw_runs_on_shared_named_axes(tmp_path, monkeypatch):
    h = {"steps": 2, "tasks": {"a": [0.2, 0.3], "b": [0.4, 0.5]}}
    runs = [write_run(tmp_path / name, [[0.3, 0.6], [0.35, 0.25]], [0, 1], ["a", "b"], "naive", h)
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
    h = {"steps": 2, "tasks": {"a": [0.2, 0.3], "b": [0.4, 0.5]}}
    runs = [write_run(tmp_path / f"a_rather_long_run_name_{k}", [[0.3, 0.6], [0.35, 0.25]], [0, 1], ["a", "b"],
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
