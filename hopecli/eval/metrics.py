"""Continual-learning metrics, per-horizon errors and figures: the library behind `hope eval`.

A run's results.json holds error matrices R (rows: after experience i, columns: partition
j, the base partition first when the run has one; lower is better) for teacher-forcing and
jump error, the errors of the untrained model, and the validation error per rollout
horizon. Two metric families come from the same R; first_trained[j] is the row of the
experience that first trains partition j (j for one partition per experience, 0 for every
partition of a joint run).

Ours (`continual_metrics`, one number each):

- Avg Error: mean of the last row (every partition after all training).
- Plasticity: mean over partitions of the error right after the experience that first
  trained it (R[j][j] for one partition per experience).
- Forgetting: mean over partitions learned before the last experience of the final error
  minus the best (lowest) error from the experience that learned the partition up to the
  one before the last.
- Backward transfer: mean over the same partitions of (error right after learning - final
  error); positive when later experiences lowered the error of earlier partitions.
- Forward transfer: mean over partitions first trained after experience 0 of (error of
  the untrained model - error just before the partition's own experience); positive when
  earlier experiences already helped.
- Gap Closed = (naive - model) / (naive - joint) on Avg Error, against baseline runs.

The seeds' (`stream_metrics`; their pipeline's src/utils/cl_metrics.py, whose R is square
with experience 0 = base training): per row i, "seen" partitions are those with
first_trained[j] <= i, "future" ones the rest.

- Stream error (their Top1_L1_Stream): mean of R[i][j] over the seen j.
- Experience forgetting EF[i][j], for j learned before row i: R[i][j] minus the lowest
  R[k][j] over every earlier row k < i, rows before j's own training included (theirs;
  ours counts only rows from j's training on).
- Stream forgetting: mean of EF[i][j] over the j learned before row i; 0 on a row with
  none (their value after base training).
- Backward transfer (theirs, after Lopez-Paz & Ranzato): mean over the j learned before
  row i of R[i][j] - R[first_trained[j]][j]: positive means the error grew, the opposite
  sign of ours.
- Forward transfer (theirs): mean of R[i][j] over the future j, the zero-shot error on
  partitions not trained yet (an error, lower is better; not a difference); none on the
  last row.

They are reported per row and as final values: the last row's stream error, stream
forgetting and backward transfer, and (ours, as their last row has none) the mean over
rows of the forward transfer. As in their code, a missing (NaN) error makes a row's stream
error and forward transfer missing, while forgetting and backward transfer skip it.

Metrics with nothing to average (forgetting of a joint run, which learns everything in its
only experience) are None, shown as "-".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from hopecli.errors import HopeError
from hopecli.runs.files import load_results
from hopecli.runs.folder import atomic_write, json_safe
from hopecli.runs.split import run_split

ERROR_KINDS = ("teacher_forcing", "jump")
METRIC_KEYS = ("avg_error", "forgetting", "plasticity", "backward_transfer", "forward_transfer")
STREAM_KEYS = ("stream_error", "stream_forgetting", "backward_transfer", "forward_transfer")


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def continual_metrics(
    R: Sequence[Sequence[float]],
    first_trained: Sequence[int] | None = None,
    initial: Sequence[float] | None = None,
) -> dict[str, float | None]:
    """The metrics of the module docstring from an error matrix R [experiences, tasks].

    first_trained[j] is the row of the experience that first trained task j (default j: one
    task per experience, in column order). `initial` is the error of the untrained model on
    every task, needed for forward transfer only.
    """
    R = np.asarray(R, dtype=np.float64)
    if R.ndim != 2 or R.size == 0:
        raise ValueError(f"R must be a non-empty [experiences, tasks] matrix, got shape {R.shape}")
    n_rows, n_tasks = R.shape
    first = list(range(n_tasks)) if first_trained is None else [int(f) for f in first_trained]
    if len(first) != n_tasks or any(not 0 <= f < n_rows for f in first):
        raise ValueError(f"first_trained must give a row < {n_rows} for each of {n_tasks} tasks, got {first!r}")
    last = n_rows - 1
    learned_earlier = [j for j in range(n_tasks) if first[j] < last]
    metrics = {
        "avg_error": float(R[last].mean()),
        "plasticity": float(np.mean([R[first[j], j] for j in range(n_tasks)])),
        "forgetting": _mean([R[last, j] - R[first[j]:last, j].min() for j in learned_earlier]),
        "backward_transfer": _mean([R[first[j], j] - R[last, j] for j in learned_earlier]),
        "forward_transfer": None,
    }
    if initial is not None:
        initial = np.asarray(initial, dtype=np.float64)
        if initial.shape != (n_tasks,):
            raise ValueError(f"initial must hold one error per task ({n_tasks}), got shape {initial.shape}")
        metrics["forward_transfer"] = _mean(
            [initial[j] - R[first[j] - 1, j] for j in range(n_tasks) if first[j] > 0]
        )
    return metrics


def _nan_mean(values: list[float]) -> float | None:
    """Mean of the finite values (None when there are none)."""
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else None


def _strict_mean(values: list[float]) -> float | None:
    """Mean, None when there is nothing to average or a value is missing (NaN)."""
    return float(np.mean(values)) if values and np.all(np.isfinite(values)) else None


def stream_metrics(R: Sequence[Sequence[float | None]], first_trained: Sequence[int] | None = None) -> dict:
    """The seeds' metric family of the module docstring from R [rows, columns].

    R may hold None / NaN for missing errors and fewer rows than experiences (a run not
    finished: future rows are simply absent). Returns per-row lists "stream_error",
    "stream_forgetting", "backward_transfer", "forward_transfer" and the matrix
    "experience_forgetting" [rows][columns] (None where j was not learned before row i).
    """
    R = np.array([[np.nan if v is None else v for v in row] for row in R], dtype=np.float64)
    if R.ndim != 2 or R.size == 0:
        raise ValueError(f"R must be a non-empty [experiences, partitions] matrix, got shape {R.shape}")
    n_rows, n_cols = R.shape
    first = list(range(n_cols)) if first_trained is None else [int(f) for f in first_trained]
    if len(first) != n_cols or any(f < 0 for f in first):
        raise ValueError(f"first_trained must give a row >= 0 for each of {n_cols} partitions, got {first!r}")
    out: dict[str, list] = {k: [] for k in (*STREAM_KEYS, "experience_forgetting")}
    for i in range(n_rows):
        seen = [j for j in range(n_cols) if first[j] <= i]
        learned = [j for j in range(n_cols) if first[j] < i]
        future = [j for j in range(n_cols) if first[j] > i]
        ef: list[float | None] = [None] * n_cols
        for j in learned:
            past = R[:i, j]
            if np.isfinite(R[i, j]) and np.isfinite(past).any():
                ef[j] = float(R[i, j] - np.nanmin(past))
        out["experience_forgetting"].append(ef)
        out["stream_error"].append(_strict_mean([R[i, j] for j in seen]))
        out["stream_forgetting"].append(
            _nan_mean([np.nan if ef[j] is None else ef[j] for j in learned]) if learned else 0.0)
        out["backward_transfer"].append(_nan_mean([R[i, j] - R[first[j], j] for j in learned]))
        out["forward_transfer"].append(_strict_mean([R[i, j] for j in future]))
    return out


def final_stream_metrics(per_row: dict) -> dict[str, float | None]:
    """The final values: last row of stream error, stream forgetting and backward transfer;
    forward transfer averaged over the rows that have one."""
    final = {k: per_row[k][-1] for k in ("stream_error", "stream_forgetting", "backward_transfer")}
    final["forward_transfer"] = _mean([v for v in per_row["forward_transfer"] if v is not None])
    return final


def gap_closed(model: float, naive: float, joint: float) -> float | None:
    """(naive - model) / (naive - joint): 0 at the naive baseline, 1 at the joint one.

    None when the joint baseline is not better than the naive one (naive <= joint): the
    ratio then has no meaning (its sign flips), so no number is given for it.
    """
    if naive <= joint:
        return None
    return (naive - model) / (naive - joint)


def run_metrics(results: dict) -> dict[str, dict | None]:
    """Our continual metrics of a run's results.json for each error kind.

    None for a kind when the run has not finished every experience.
    """
    n_exp = len(results["experiences"])
    out: dict[str, dict | None] = {}
    for kind in ERROR_KINDS:
        R = results["R"][kind]
        if len(R) < n_exp:
            out[kind] = None
            continue
        initial = results.get("initial") or {}
        out[kind] = json_safe(continual_metrics(
            np.array(R, dtype=np.float64), results["first_trained"],
            np.array(initial[kind], dtype=np.float64) if initial.get(kind) is not None else None,
        ))
    return out


def run_stream_metrics(results: dict) -> dict[str, dict | None]:
    """The seeds' metric family of a run's results.json for each error kind: the per-row
    values of the rows there are, and "final" (None until every experience is done)."""
    n_exp = len(results["experiences"])
    out: dict[str, dict | None] = {}
    for kind in ERROR_KINDS:
        R = results["R"][kind]
        if not R:
            out[kind] = None
            continue
        per_row = stream_metrics(R, results["first_trained"])
        out[kind] = json_safe({**per_row, "final": final_stream_metrics(per_row) if len(R) == n_exp else None})
    return out


@dataclass
class RunReport:
    """What `hope eval` shows for one run."""

    run: str
    strategy: str
    base_task: str | None
    tasks: list[str]  # the R columns (the base partition first, when there is one)
    experiences: list[str]
    R: dict[str, list[list[float | None]]]
    metrics: dict[str, dict | None]  # ours, per error kind
    stream: dict[str, dict | None]  # the seeds' family, per error kind
    horizon: dict | None  # {"steps": H, "tasks": {task: [H errors]}, "mean": [H errors]}
    complete: bool
    figure: str | None = None
    val_clips: dict[str, int] | None = None  # validation clips per partition (None: older runs)
    name: str | None = None  # the shortest trailing part of `run` that tells it from the others
    # copy-last / context-mean on the run's validation clips (hopecli.baselines), None
    # when the run's store is not at hand: {name: {"teacher_forcing": {task: e}, "jump":
    # {task: e}, "avg_error": {kind: e}, "horizon": {"steps", "tasks", "mean"}}}
    baselines: dict | None = None
    probe: dict | None = None  # hopecli.eval.probe.probe_report, when the store has object states
    in_context: dict | None = None  # hopecli.eval.incontext.in_context_report, on a hidden-dynamics store

    def to_dict(self) -> dict:
        return asdict(self)


MIN_VAL_CLIPS = 3  # fewer validation clips per partition than this make its errors noisy


def few_validation_clips(report: dict) -> dict[str, int]:
    """Partitions of a run (RunReport.to_dict()) validated on fewer than MIN_VAL_CLIPS clips."""
    return {t: n for t, n in (report.get("val_clips") or {}).items() if n < MIN_VAL_CLIPS}


def measure_horizon(run_dir: Path, horizon: int | None = None, store_path: Path | None = None,
                    device: str = "auto") -> dict:
    """Error per rollout horizon of a run's final checkpoint on its validation clips.

    The validation clips are those of training (same partitions, seed and split), read from
    `store_path` (default: the store recorded in config.json), whose encoder must match.
    """
    from hopecli.runs.checkpoint import load_model
    from hopecli.train.data import clip_shape
    from hopecli.train.distributed import World, resolve_device
    from hopecli.train.validate import evaluate_clips

    dev = resolve_device(device)
    model, _ = load_model(run_dir, device=dev)
    store, cfg, tasks, split = run_split(run_dir, store_path)
    T = clip_shape(store)[0]
    steps = horizon or cfg.horizon or T - 1
    if steps > T - 1:
        raise HopeError(f"{store.path}: clips of {T} steps allow a horizon of at most {T - 1}, asked {steps}")
    world = World(device=dev)
    per_task = {t: evaluate_clips(model, store, split.val[t], world=world, batch_size=cfg.eval_batch_size,
                                  horizon=steps, jump_k=cfg.loss.jump_k)["horizon"] for t in tasks}
    return {"steps": steps, "tasks": per_task}


def measure_baselines(run_dir: Path, steps: int, store_path: Path | None = None) -> dict:
    """Copy-last and context-mean errors on a run's validation clips, per partition, for
    teacher forcing, jump and horizons 1..steps (RunReport.baselines' layout)."""
    from hopecli.baselines import BASELINES, evaluate_baselines

    store, cfg, tasks, split = run_split(run_dir, store_path)
    per_task = {t: evaluate_baselines(store, split.val[t], horizon=steps, jump_k=cfg.loss.jump_k) for t in tasks}
    out = {}
    for name in BASELINES:
        entry = {kind: {t: per_task[t][name][kind] for t in tasks} for kind in ERROR_KINDS}
        entry["avg_error"] = {kind: float(np.mean(list(entry[kind].values()))) for kind in ERROR_KINDS}
        entry["horizon"] = _with_mean({"steps": steps, "tasks": {t: per_task[t][name]["horizon"] for t in tasks}})
        out[name] = json_safe(entry)
    return out


def _with_mean(horizon: dict | None) -> dict | None:
    if horizon is None:
        return None
    rows = np.array([v for v in horizon["tasks"].values()], dtype=np.float64)
    return json_safe({**horizon, "mean": rows.mean(0).tolist()})


def evaluate_runs(
    runs: Sequence[Path],
    *,
    naive: Path | None = None,
    joint: Path | None = None,
    horizon: int | None = None,
    store: Path | None = None,
    figures: bool = True,
    out_figure: Path | None = None,
    probe: bool | None = None,
) -> dict:
    """Metrics of every run (plus Gap Closed against the naive and joint baselines).

    The per-horizon errors come from results.json, or are measured again from the final
    checkpoint when `horizon` or `store` is given. With `figures`, each run gets
    RUN/eval.png; `out_figure` gets all runs in one figure. The copy-last and
    context-mean baselines are measured on every run's validation clips; `probe` (None:
    whenever the store has object states) scores the object's position through a linear
    probe (hopecli.eval.probe).

    A seeds folder (`hope train --seeds`) stands for its seed runs, in runs and as a
    baseline (whose Avg Error is then the mean over its seeds). "groups" holds one entry
    per configuration (runs that differ only by seed): every metric and Gap Closed as a
    mean with a 95% interval (hopecli.eval.intervals); "warnings" names unequal step budgets
    or validation clips among the compared runs.
    """
    if (naive is None) != (joint is None):
        raise HopeError("Gap Closed needs both baselines: give --naive and --joint together")
    from hopecli.baselines import relative_to
    from hopecli.eval import intervals
    from hopecli.runs.seeds import expand_runs

    runs = expand_runs(runs)
    names = intervals.short_names(runs)
    reports = []
    warnings: list[str] = []
    all_results = []
    for run, name in zip(runs, names):
        results = load_results(run)
        all_results.append(results)
        per_horizon = results.get("horizon")
        if horizon is not None or store is not None:
            per_horizon = measure_horizon(run, horizon, store)
        reports.append(RunReport(
            run=str(run), strategy=results.get("strategy", "?"), base_task=results.get("base_task"),
            tasks=list(results["tasks"]), experiences=[e["name"] for e in results["experiences"]],
            R=json_safe(results["R"]), metrics=run_metrics(results), stream=run_stream_metrics(results),
            horizon=_with_mean(per_horizon), complete=bool(results.get("complete")),
            val_clips=results.get("val_clips"), name=name,
        ))
        report = reports[-1]
        steps = (per_horizon or {}).get("steps") or 1
        try:
            report.baselines = measure_baselines(run, steps, store)
            if probe is not False:
                from hopecli.eval.probe import probe_report

                report.probe = probe_report(run, steps, store)
            from hopecli.eval.incontext import in_context_report

            report.in_context = in_context_report(run, store)
        except HopeError as e:  # the store moved or is gone: the run's own numbers still stand
            if probe:
                raise
            warnings.append(f"{run}: no baselines or probe ({e})")
        if probe and report.probe is None:
            raise HopeError(f"{run}: --probe needs object states, and the run's store has none "
                            "(its sidecars had no object_states)")
        if report.baselines is not None:
            copy = report.baselines["copy_last"]["avg_error"]
            for kind in ERROR_KINDS:
                if report.metrics[kind] is not None:
                    report.metrics[kind]["vs_copy"] = relative_to(report.metrics[kind]["avg_error"], copy[kind])
    baselines = {}
    base_results: dict[str, list[dict]] = {}
    if naive is not None:
        for name, path in (("naive", naive), ("joint", joint)):
            base_results[name] = [load_results(p) for p in expand_runs([path])]
            baselines[name] = {"run": str(path), "avg_error": _mean_avg_error(base_results[name])}
        pairs = {k: (baselines["naive"]["avg_error"][k], baselines["joint"]["avg_error"][k]) for k in ERROR_KINDS}
        baselines["gap_undefined"] = [k for k, (nv, jt) in pairs.items() if None not in (nv, jt) and nv <= jt]
        for report in reports:
            for kind in ERROR_KINDS:
                m = report.metrics[kind]
                nv, jt = baselines["naive"]["avg_error"][kind], baselines["joint"]["avg_error"][kind]
                if m is None or None in (m["avg_error"], nv, jt):
                    continue
                m["gap_closed"] = gap_closed(m["avg_error"], nv, jt)
    groups = intervals.seed_groups(runs, names, all_results, [r.metrics for r in reports],
                                   base_results.get("naive"), base_results.get("joint"))
    compared = dict(zip(names, all_results))
    splits = {name: intervals.validation_names(run) for name, run in zip(names, runs)}
    for name, path in (("naive", naive), ("joint", joint)):
        if path is not None:
            first = expand_runs([path])[0]
            compared.setdefault(f"--{name} {path}", base_results[name][0])
            splits.setdefault(f"--{name} {path}", intervals.validation_names(first))
    known = {k: v for k, v in splits.items() if v is not None}
    warnings += intervals.budget_differences(compared, known if len(known) == len(splits) else None)
    if figures:
        for report in reports:
            path = Path(report.run) / "eval.png"
            try:
                save_figure([report], path)
            except OSError as e:  # a read-only or full run folder: the metrics are still shown
                from hopecli.errors import describe_os_error

                warnings.append(f"{describe_os_error(e)}: its figure is not written")
                continue
            report.figure = str(path)
    if out_figure is not None:
        save_comparison(reports, Path(out_figure))
    with_curves = [r for r in reports if r.in_context is not None]
    if with_curves and (figures or out_figure is not None):
        from hopecli.eval.incontext import save_in_context_figure

        path = (Path(out_figure).with_name(Path(out_figure).stem + "_in_context.png") if out_figure is not None
                else Path(with_curves[0].run) / "in_context.png")
        save_in_context_figure([r.to_dict() for r in with_curves], path)
        for r in with_curves:
            r.in_context["figure"] = str(path)
    return {"runs": [r.to_dict() for r in reports], "baselines": baselines or None, "groups": groups,
            "figure": str(out_figure) if out_figure is not None else None, "warnings": warnings}


def _mean_avg_error(runs: list[dict]) -> dict[str, float | None]:
    """Avg Error per error kind, averaged over a baseline's seed runs (results.json dicts)."""
    out = {}
    for kind in ERROR_KINDS:
        values = [(run_metrics(r)[kind] or {}).get("avg_error") for r in runs]
        out[kind] = None if any(v is None for v in values) else float(np.mean(values))
    return out


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
