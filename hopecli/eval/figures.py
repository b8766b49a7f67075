"""The figures of `hope eval` (matplotlib, drawn off screen): RUN/eval.png for each run,
the runs side by side (--out-figure), and the in-context curves beside their ceilings.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hopecli.eval import incontext
from hopecli.eval.metrics import ERROR_KINDS
from hopecli.eval.report import RunReport
from hopecli.runs.folder import atomic_write


def save_figure(reports: Sequence[RunReport], path: Path) -> None:
    """One row per run: the teacher-forcing and jump error matrices (heat maps), the seeds'
    stream error and stream forgetting per experience, error vs rollout horizon beside
    the baselines (RUN/eval.png)."""
    plt = _pyplot()
    fig, axes = plt.subplots(len(reports), 4, figsize=(19, 3.8 * len(reports)), squeeze=False)
    for row, report in zip(axes, reports):
        name = report.name or Path(report.run).name
        for ax, kind in zip(row[:2], ERROR_KINDS):
            _heatmap(ax, report, kind, _wrapped(f"{name}: {kind.replace('_', '-')} error on each partition "
                                                "after each experience"))
        _stream_plot(row[2], report, name)
        ax = row[3]
        if report.horizon is not None:
            steps = np.arange(1, report.horizon["steps"] + 1)
            for task, errors in report.horizon["tasks"].items():
                ax.plot(steps, np.array(errors, dtype=float), marker="o", label=task or "(unlabelled)")
            ax.plot(steps, np.array(report.horizon["mean"], dtype=float), "k-", lw=2.5, marker="s",
                    label="mean over partitions")
            _baseline_lines(ax, [report], steps)
            ax.set_xticks(steps)
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "no per-horizon errors (run unfinished)", ha="center", va="center")
        ax.set_xlabel("rollout horizon (steps)")
        ax.set_ylabel("L1 error")
        ax.set_title(_wrapped(f"{name}: validation error vs rollout horizon"), fontsize=10)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)


COMPARISON_WIDTH = 16  # inches (1,600 px at 100 dpi), whatever the number of runs
COMPARISON_COLUMNS = 4  # heat maps per row below the shared panels
COMPARISON_TITLES = (
    "Continual-learning metrics (teacher forcing), lower is better",
    "Validation error vs rollout horizon",
    "Object position error through the probe vs rollout horizon",
)


def comparison_figure(reports: Sequence[RunReport]):
    """The runs on shared axes (a matplotlib Figure, COMPARISON_WIDTH wide whatever the
    number of runs): Avg Error and Plasticity as differences to the copy-last baseline (0,
    dashed) and Forgetting, as grouped bars; the error per rollout horizon
    of every run and of both baselines; the probe's object position error per horizon
    (when the store has object states); below, each run's teacher-forcing error matrix on
    one colour scale, COMPARISON_COLUMNS to a row."""
    plt = _pyplot()
    n = len(reports)
    per_row = min(n, COMPARISON_COLUMNS)
    rows = -(-n // COMPARISON_COLUMNS)
    # the width stays COMPARISON_WIDTH whatever the number of runs: more runs add heat-map rows
    fig = plt.figure(figsize=(COMPARISON_WIDTH, 5.5 + 4.0 * rows), layout="constrained")
    upper, lower = fig.subfigures(2, 1, height_ratios=[5.5, 4.0 * rows])
    bars, horizon, probe = upper.subplots(1, 3)
    names = [r.name or Path(r.run).name for r in reports]

    copy = next((r.baselines["copy_last"]["avg_error"]["teacher_forcing"] for r in reports if r.baselines), None)
    keys = ("avg_error", "forgetting", "plasticity")
    width = 0.8 / max(n, 1)
    for k, (report, name) in enumerate(zip(reports, names)):
        m = report.metrics["teacher_forcing"] or {}
        values = np.array([np.nan if m.get(key) is None else m[key] for key in keys], dtype=float)
        if copy is not None:  # errors as differences to copy-last: 0.064 vs 0.068 shows, not two equal bars
            values[[0, 2]] -= copy
        bars.bar(np.arange(3) + (k - (n - 1) / 2) * width, values, width, label=name, color=f"C{k}")
    bars.axhline(0, color="k", ls="--" if copy is not None else "-", lw=1.2 if copy is not None else 0.6,
                 label=f"copy-last baseline ({copy:.4f})" if copy is not None else None)
    if copy is not None:
        bars.set_xticks(range(3), ["Avg Error\n- copy-last", "Forgetting", "Plasticity\n- copy-last"])
        bars.set_ylabel("L1 difference (teacher forcing)")
    else:
        bars.set_xticks(range(3), ["Avg Error", "Forgetting", "Plasticity"])
        bars.set_ylabel("L1 error (teacher forcing)")
    bars.set_title(_wrapped(COMPARISON_TITLES[0]), fontsize=10)
    bars.legend(fontsize=7)

    for k, (report, name) in enumerate(zip(reports, names)):
        if report.horizon is not None:
            steps = np.arange(1, report.horizon["steps"] + 1)
            horizon.plot(steps, np.array(report.horizon["mean"], dtype=float), "o-", color=f"C{k}", label=name)
    with_h = [r for r in reports if r.horizon is not None]
    if with_h:
        _baseline_lines(horizon, with_h, np.arange(1, max(r.horizon["steps"] for r in with_h) + 1))
    horizon.set_xlabel("rollout horizon (steps)")
    horizon.set_ylabel("L1 error (mean over partitions)")
    horizon.set_title(_wrapped(COMPARISON_TITLES[1]), fontsize=10)
    horizon.legend(fontsize=7)

    with_probe = [(k, r) for k, r in enumerate(reports) if r.probe is not None]
    if with_probe:
        first = with_probe[0][1].probe
        steps = np.arange(1, first["steps"] + 1)
        probe.plot(steps, first["mean"]["true_features"], color="0.6", lw=2.5, label="true features (probe ceiling)")
        probe.plot(steps, first["mean"]["copy_last"], label="copy-last", **BASELINE_STYLES["copy_last"])
        for k, report in with_probe:
            probe.plot(steps, report.probe["mean"]["model"], "o-", color=f"C{k}",
                       label=report.name or Path(report.run).name)
        probe.set_ylabel(f"object position error\n({first['units']})")
        probe.legend(fontsize=7)
    else:
        probe.text(0.5, 0.5, "no object states in the store: no probe", ha="center", va="center")
        probe.set_ylabel("position error")
    probe.set_xlabel("rollout horizon (steps)")
    probe.set_title(_wrapped(COMPARISON_TITLES[2]), fontsize=10)

    matrices = [np.array([[np.nan if v is None else v for v in row] for row in r.R["teacher_forcing"]],
                         dtype=np.float64).reshape(-1, len(r.tasks)) for r in reports]
    finite = np.concatenate([m[np.isfinite(m)] for m in matrices] + [np.zeros(0)])
    limits = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
    grid = lower.subplots(rows, per_row, squeeze=False).ravel()
    for k, (report, ax) in enumerate(zip(reports, grid)):
        _heatmap(ax, report, "teacher_forcing", _wrapped(f"{names[k]}: teacher-forcing error on each partition "
                                                         "after each experience"), limits)
    for ax in grid[n:]:
        ax.set_visible(False)
    return fig


def save_comparison(reports: Sequence[RunReport], path: Path) -> None:
    """comparison_figure as a PNG (`hope eval --out-figure`)."""
    plt = _pyplot()
    fig = comparison_figure(reports)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _baseline_lines(ax, reports: Sequence[RunReport], steps: np.ndarray) -> None:
    """Copy-last and context-mean per horizon (of the first report that has them), each in
    its own style (BASELINE_STYLES); they coincide when the rollout starts from one step,
    so context-mean is drawn wide and light under copy-last's thin dashes, both visible."""
    from hopecli.baselines import LABELS

    report = next((r for r in reports if r.baselines is not None), None)
    if report is None:
        return
    for name in ("context_mean", "copy_last"):  # context-mean wide and light below, copy-last on top
        values = np.array(report.baselines[name]["horizon"]["mean"], dtype=float)[: len(steps)]
        ax.plot(steps[: len(values)], values, label=f"{LABELS[name]} baseline", **BASELINE_STYLES[name])


BASELINE_STYLES = {
    "copy_last": {"ls": "--", "color": "k", "lw": 1.2, "marker": "x", "zorder": 3},
    "context_mean": {"ls": ":", "color": "tab:orange", "lw": 4.0, "alpha": 0.6, "marker": "D", "zorder": 2},
}
TITLE_WIDTH = 48  # characters per title line in the figures (a 4.75-inch panel at 10 pt)


def _wrapped(title: str) -> str:
    """A figure title broken into lines that fit its panel (never clipped at the edge)."""
    import textwrap

    return "\n".join(textwrap.wrap(title, TITLE_WIDTH))


def _stream_plot(ax, report: RunReport, name: str) -> None:
    """Stream error (solid, left axis) and stream forgetting (dashed, right axis: it is
    usually far smaller) per experience, for both error kinds."""
    right = ax.twinx()
    for kind, color in zip(ERROR_KINDS, ("C0", "C1")):
        family = report.stream.get(kind)
        if family is None:
            continue
        rows = np.arange(len(family["stream_error"]))
        label = kind.replace("_", "-")
        for axis, key, style in ((ax, "stream_error", "-"), (right, "stream_forgetting", "--")):
            values = np.array([np.nan if v is None else v for v in family[key]], dtype=float)
            axis.plot(rows, values, style, color=color, marker="o", label=f"{label} {key.replace('_', ' ')}")
    ax.set_xticks(range(len(report.experiences)), [f"after {e}" for e in report.experiences],
                  rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("stream error (L1)")
    right.set_ylabel("stream forgetting (L1)")
    ax.set_title(_wrapped(f"{name}: stream error and forgetting per experience (seeds' metrics)"), fontsize=10)
    handles = [h for a in (ax, right) for h in a.get_legend_handles_labels()[0]]
    ax.legend(handles, [h.get_label() for h in handles], fontsize=7)


def _heatmap(ax, report: RunReport, kind: str, title: str, limits: tuple[float, float] | None = None) -> None:
    R = np.array([[np.nan if v is None else v for v in row] for row in report.R[kind]],
                 dtype=np.float64).reshape(-1, len(report.tasks))
    vmin, vmax = limits if limits is not None else (None, None)
    im = ax.imshow(R, cmap="viridis_r", aspect="auto", vmin=vmin, vmax=vmax)
    middle = np.nanmean(R) if limits is None else (limits[0] + limits[1]) / 2
    for (i, j), v in np.ndenumerate(R):
        ax.text(j, i, "-" if np.isnan(v) else f"{v:.3f}", ha="center", va="center", fontsize=8,
                color="k" if np.isnan(v) or v < middle else "w")
    ax.set_xticks(range(len(report.tasks)), [t or "(unlabelled)" for t in report.tasks], rotation=30,
                  ha="right", fontsize=8)
    ax.set_yticks(range(R.shape[0]), [f"after {e}" for e in report.experiences[: R.shape[0]]], fontsize=8)
    base = f" (base: {report.base_task})" if report.base_task is not None else ""
    ax.set_xlabel(f"evaluated on partition{base}")
    ax.set_ylabel("after training on experience")
    ax.set_title(title, fontsize=10)
    bar = ax.figure.colorbar(im, ax=ax, fraction=0.046)
    bar.set_label("L1 error")


RUN_COLORS = ("tab:blue", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan")
CEILING_STYLES = {"copy": ("0.55", ":"), "no_context": ("tab:orange", "--"),
                  "in_context_ls": ("tab:green", "--"), "oracle": ("black", "-.")}


def save_in_context_figure(runs: Sequence[dict], path: Path) -> None:
    """One panel per family: error against the step index, ceilings dashed (from the first
    run's clips), every run solid (memories writing) and faint (frozen)."""
    plt = _pyplot()
    families = list(dict.fromkeys(f for r in runs for f in r["in_context"]["families"]))
    fig, axes = plt.subplots(1, len(families), figsize=(4.2 * len(families), 3.6), squeeze=False)
    colors = RUN_COLORS
    for ax, family in zip(axes[0], families):
        first = next(r for r in runs if family in r["in_context"]["families"])
        steps = first["in_context"]["steps"]
        curves = first["in_context"]["families"][family]["curves"]
        for name in incontext.CEILINGS:
            color, style = CEILING_STYLES[name]
            ax.plot(steps, curves[name], style, color=color, label=incontext.LABELS[name])
        for k, run in enumerate(runs):
            entry = run["in_context"]["families"].get(family)
            if entry is None:
                continue
            color = colors[k % len(colors)]
            label = Path(run["run"]).name
            ax.plot(steps, entry["curves"]["model"], "o-", color=color, label=label, markersize=3)
            if "frozen" in entry["curves"]:
                ax.plot(steps, entry["curves"]["frozen"], "-", color=color, alpha=0.35, label=f"{label}, frozen")
        trained = "trained on" if first["in_context"]["families"][family]["trained"] else "held out"
        ax.set_title(f"{family} ({trained})", fontsize=10)
        ax.set_xlabel("step predicted (context: the steps before it)")
        ax.set_ylabel("L1 error (layer-normed)")
        ax.set_ylim(bottom=0)
        ax.set_xticks(steps)
    handles, labels = axes[0][0].get_legend_handles_labels()
    columns = min(len(labels), 5)
    rows = -(-len(labels) // columns)
    fig.set_figheight(3.6 + 0.22 * rows)
    fig.legend(handles, labels, loc="lower center", ncol=columns, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, (0.25 * rows + 0.1) / fig.get_figheight(), 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
