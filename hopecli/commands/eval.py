"""`hope eval`: continual-learning metrics, per-horizon error and figures of training runs."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.table import Table

from hopecli.commands.help import HopeCommand
from hopecli.commands.options import compile_option, threads_option
from hopecli.console import err
from hopecli.runs.folder import dumps_report

STREAM_LABELS = {
    "stream_error": "Stream Error",
    "stream_forgetting": "Stream Forgetting",
    "backward_transfer": "BWT (+ = error grew)",
    "forward_transfer": "FWT (future error)",
}
LABELS = {
    "avg_error": "Avg Error",
    "forgetting": "Forgetting",
    "plasticity": "Plasticity",
    "backward_transfer": "BWT (+ = helped)",
    "forward_transfer": "FWT (+ = helped)",
    "gap_closed": "Gap Closed",
}


def _cell(value, percent: bool = False) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.1f}%" if percent else f"{value:.4f}"


def _print_r_table(run: dict, kind: str) -> None:
    """The error matrix of one run, under a heading line (never wrapped)."""
    base = f", base partition {run['base_task']}" if run["base_task"] is not None else ""
    err.print(f"\n{run['run']}: {kind.replace('_', '-')} error on each partition (column) after each "
              f"experience (row) ({run['strategy']}{base})", highlight=False)
    table = Table()
    table.add_column("after experience")
    for task in run["tasks"]:
        table.add_column(task or "(unlabelled)", justify="right")
    for name, row in zip(run["experiences"], run["R"][kind]):
        table.add_row(name, *(_cell(v) for v in row))
    from hopecli.baselines import LABELS as BASELINE_LABELS

    for name, base in (run["baselines"] or {}).items():
        table.add_row(BASELINE_LABELS[name], *(_cell(base[kind].get(t)) for t in run["tasks"]), style="dim")
    if run["baselines"]:
        table.caption = "copy-last, context-mean: baselines on the same validation clips"
    err.print(table)


def _baseline_rows(runs: list[dict]) -> list[tuple[str, dict]]:
    """(label, baseline entry) of every distinct set of validation clips among the runs:
    one copy-last and one context-mean row when the runs share their clips (the usual
    case), else one pair per run."""
    from hopecli.baselines import LABELS as BASELINE_LABELS

    distinct: dict[str, tuple[str, dict]] = {}
    for run in runs:
        if run["baselines"] is None:
            continue
        key = json.dumps(run["baselines"], sort_keys=True)
        distinct.setdefault(key, (_name(run), run["baselines"]))
    rows = []
    for source, baselines in distinct.values():
        suffix = f" ({source}'s clips)" if len(distinct) > 1 else ""
        rows += [(BASELINE_LABELS[name] + suffix, entry) for name, entry in baselines.items()]
    return rows


def _name(run: dict) -> str:
    """A run's name for table rows: the shortest end of its path that tells it from the
    other runs (the full path is in --json)."""
    return run.get("name") or Path(run["run"]).name


def _metrics_table(runs: list[dict], kind: str, with_gap: bool) -> Table:
    keys = [k for k in LABELS if with_gap or k != "gap_closed"]
    table = Table(title=f"continual-learning metrics, {kind.replace('_', '-')} error (lower is better, "
                        "transfer: higher is better)")
    table.add_column("run", no_wrap=True)
    for key in keys:
        table.add_column(LABELS[key], justify="right")
    table.add_column("vs copy", justify="right")
    for run in runs:
        m = run["metrics"][kind]
        if m is None:
            table.add_row(_name(run), *(["unfinished"] + ["-"] * len(keys)))
        else:
            table.add_row(_name(run), *(_cell(m.get(k), percent=k == "gap_closed") for k in keys),
                          _percent(m.get("vs_copy")))
    for label, entry in _baseline_rows(runs):
        # a baseline learns nothing: the same error after every experience, no forgetting or transfer
        avg = entry["avg_error"][kind]
        cells = {"avg_error": avg, "plasticity": avg}
        table.add_row(label, *(_cell(cells.get(k)) for k in keys), "", style="dim")
        table.caption = "vs copy: Avg Error relative to the copy-last baseline (dim rows) on the same clips"
    return table


# The summary table's columns after "run": (header, value of one run's report as text).
# Another column is one more entry here.
SUMMARY_COLUMNS: list[tuple[str, object]] = [
    ("Avg Error", lambda run: _metric(run, "teacher_forcing", "avg_error")),
    ("Forgetting", lambda run: _metric(run, "teacher_forcing", "forgetting")),
    ("Plasticity", lambda run: _metric(run, "teacher_forcing", "plasticity")),
    ("Gap Closed", lambda run: _metric(run, "teacher_forcing", "gap_closed", percent=True)),
    ("Jump Avg Error", lambda run: _metric(run, "jump", "avg_error")),
    ("vs copy", lambda run: "-" if run["metrics"]["teacher_forcing"] is None
     else _percent(run["metrics"]["teacher_forcing"].get("vs_copy"))),
]


def _metric(run: dict, kind: str, key: str, percent: bool = False) -> str:
    m = run["metrics"][kind]
    return "unfinished" if m is None else _cell(m.get(key), percent=percent)


def _summary_table(runs: list[dict]) -> Table:
    """One row per run: the numbers to compare runs by (teacher-forcing error unless named)."""
    table = Table(title="summary: teacher-forcing error, lower is better (Gap Closed: higher is better)")
    table.add_column("run", no_wrap=True)
    for header, _ in SUMMARY_COLUMNS:
        table.add_column(header, justify="right")
    for run in runs:
        table.add_row(_name(run), *(value(run) for _, value in SUMMARY_COLUMNS))
    for label, entry in _baseline_rows(runs):  # a baseline learns nothing: no forgetting or transfer
        cells = {"Avg Error": _cell(entry["avg_error"]["teacher_forcing"]),
                 "Plasticity": _cell(entry["avg_error"]["teacher_forcing"]),
                 "Jump Avg Error": _cell(entry["avg_error"]["jump"])}
        table.add_row(label, *(cells.get(header, "") for header, _ in SUMMARY_COLUMNS), style="dim")
    if any(run["baselines"] for run in runs):
        table.caption = "vs copy: Avg Error relative to the copy-last baseline (dim rows) on the same clips"
    return table


def _interval_cell(entry: dict | None, percent: bool = False) -> str:
    """0.0690 [0.0650, 0.0730]: a mean and its 95% interval (hopecli.eval.intervals)."""
    if entry is None:
        return "-"
    if entry["low"] is None:
        return _cell(entry["mean"], percent)
    return f"{_cell(entry['mean'], percent)} [{_cell(entry['low'], percent)}, {_cell(entry['high'], percent)}]"


def _groups_table(groups: list[dict]) -> Table:
    """One row per configuration: its runs' mean and 95% interval (seeds and clips resampled)."""
    with_gap = any(g["gap"] for g in groups)
    table = Table(title="over seeds: mean [95% interval], teacher-forcing error",
                  caption="runs that differ only by seed form one row; Avg Error and Gap Closed resample "
                          "seeds and held-out clips, Forgetting and Plasticity seeds only")
    table.add_column("configuration", no_wrap=True)
    table.add_column("seeds", justify="right")
    for header in ("Avg Error", "Forgetting", "Plasticity") + (("Gap Closed",) if with_gap else ()) + (
            "Jump Avg Error",):
        table.add_column(header, justify="right")
    for group in groups:
        tf, jump = (group["metrics"].get(k) for k in ("teacher_forcing", "jump"))
        if tf is None:
            table.add_row(group["name"], str(len(group["runs"])), "unfinished")
            continue
        gap = (group["gap"] or {}).get("teacher_forcing") or {}
        closed = _interval_cell(gap.get("gap_closed"), percent=True)
        if gap.get("gap_within_noise"):
            closed += " (gap within noise)"
        cells = [_interval_cell(tf[k]) for k in ("avg_error", "forgetting", "plasticity")]
        cells += [closed] if with_gap else []
        cells += [_interval_cell((jump or {}).get("avg_error"))]
        seeds = ",".join("?" if s is None else str(s) for s in group["seeds"])
        table.add_row(group["name"], seeds, *cells)
    return table


def _gap_warnings(groups: list[dict]) -> list[str]:
    """A warning per error kind whose naive - joint gap is within its own 95% interval."""
    out = []
    for kind in ("teacher_forcing", "jump"):
        entry = next((g["gap"][kind] for g in groups if g["gap"] and g["gap"].get(kind)), None)
        if entry is not None and entry["gap_within_noise"]:
            out.append(f"the naive - joint gap of Avg Error ({kind.replace('_', '-')}) is "
                       f"{_interval_cell(entry['naive_joint_gap'])}: its 95% interval holds 0, so Gap Closed "
                       "divides by noise; train more seeds or steps, or validate on more clips")
    return out


def _percent(rel: float | None) -> str:
    return "-" if rel is None else f"{100 * rel:+.1f}%"


def _stream_rows_table(run: dict, kind: str) -> Table | None:
    """The earlier pipeline's metrics of one run per experience (row of the error matrix)."""
    family = run["stream"][kind]
    if family is None:
        return None
    table = Table(title=f"{run['run']}: earlier pipeline's metrics per experience, {kind.replace('_', '-')} error")
    table.add_column("after experience")
    for key in STREAM_LABELS:
        table.add_column(STREAM_LABELS[key], justify="right")
    for i, name in enumerate(run["experiences"][: len(family["stream_error"])]):
        table.add_row(name, *(_cell(family[key][i]) for key in STREAM_LABELS))
    return table


def _stream_table(runs: list[dict], kind: str) -> Table:
    """The earlier pipeline's final metrics of every run."""
    table = Table(title=f"earlier pipeline's metric family, final, {kind.replace('_', '-')} error (lower is better; "
                        "FWT: mean over experiences)")
    table.add_column("run", no_wrap=True)
    for key in STREAM_LABELS:
        table.add_column(STREAM_LABELS[key], justify="right")
    for run in runs:
        final = (run["stream"][kind] or {}).get("final")
        if final is None:
            table.add_row(_name(run), *(["unfinished"] + ["-"] * (len(STREAM_LABELS) - 1)))
        else:
            table.add_row(_name(run), *(_cell(final[k]) for k in STREAM_LABELS))
    return table


def _horizon_table(runs: list[dict]) -> Table | None:
    with_h = [r for r in runs if r["horizon"] is not None]
    if not with_h:
        return None
    from hopecli.baselines import relative_to

    steps = max(r["horizon"]["steps"] for r in with_h)
    table = Table(title="validation error per rollout horizon (mean over tasks); vs copy: relative to the "
                        "copy-last baseline on the same clips")
    table.add_column("run", no_wrap=True)
    for h in range(1, steps + 1):
        table.add_column(f"{h}", justify="right")
    table.add_column("1 vs copy", justify="right")
    table.add_column("mean vs copy", justify="right")
    for run in with_h:
        mean = run["horizon"]["mean"]
        copy = ((run["baselines"] or {}).get("copy_last") or {}).get("horizon") or {}
        copy_mean = copy.get("mean") or []
        first = relative_to(mean[0], copy_mean[0]) if mean and copy_mean else None
        overall = (relative_to(sum(mean) / len(mean), sum(copy_mean) / len(copy_mean))
                   if mean and len(copy_mean) == len(mean) else None)
        table.add_row(_name(run), *(_cell(mean[h]) if h < len(mean) else "" for h in range(steps)),
                      _percent(first), _percent(overall))
    for label, entry in _baseline_rows(with_h):
        mean = entry["horizon"]["mean"]
        table.add_row(label, *(_cell(mean[h]) if h < len(mean) else "" for h in range(steps)), "", "",
                      style="dim")
    return table


def _probe_table(runs: list[dict]) -> Table | None:
    """Object position error per horizon, per partition and averaged: the probe on the true
    features (ceiling) and on copy-last (once per set of validation clips), then every run."""
    with_probe = [r for r in runs if r["probe"] is not None]
    if not with_probe:
        return None
    first = with_probe[0]["probe"]
    steps = max(r["probe"]["steps"] for r in with_probe)
    table = Table(title=f"probe: {first['quantity']} per rollout horizon, in {first['units']}; lower is better")
    table.add_column("features", no_wrap=True)
    table.add_column("partition", no_wrap=True)
    for h in range(1, steps + 1):
        table.add_column(f"{h}", justify="right")
    table.add_column("mean vs copy", justify="right")
    tasks = list(first["tasks"]) + ["mean"]

    def values(probe: dict, task: str, name: str) -> list[float]:
        return probe["mean"][name] if task == "mean" else probe["tasks"][task][name]

    seen: set[str] = set()
    for task in tasks:
        for run in with_probe:
            probe = run["probe"]
            if task != "mean" and task not in probe["tasks"]:
                continue
            copy = values(probe, task, "copy_last")
            key = json.dumps([task, probe["mean"]["copy_last"], probe["mean"]["true_features"]])
            if key not in seen:
                seen.add(key)
                table.add_row("true (probe ceiling)", task, *(_cell(v) for v in values(probe, task, "true_features")),
                              "", style="dim")
                table.add_row("copy-last", task, *(_cell(v) for v in copy), "", style="dim")
            model = values(probe, task, "model")
            rel = sum(model) / sum(copy) - 1 if sum(copy) > 0 else None
            table.add_row(_name(run), task, *(_cell(v) for v in model), _percent(rel))
        table.add_section()
    return table


def _in_context_table(runs: list[dict]) -> Table | None:
    """Error per step index on a hidden-dynamics store: ceilings once per family and set of
    clips, then every run with its memories writing and frozen."""
    from hopecli.eval.incontext import CEILINGS, LABELS, gap_closed, summary

    with_curves = [r for r in runs if r.get("in_context")]
    if not with_curves:
        return None
    steps = with_curves[0]["in_context"]["steps"]
    table = Table(title="in-context curve: error of step t predicted from steps < t (teacher forcing); "
                        "gap closed: share of the gap from the no-context map to in-context LS, from step 2 on")
    table.add_column("predictor", no_wrap=True)
    table.add_column("family", no_wrap=True)
    for t in steps:
        table.add_column(f"{t}", justify="right")
    table.add_column("mean 2+", justify="right")
    table.add_column("gap closed", justify="right")
    families = list(dict.fromkeys(f for r in with_curves for f in r["in_context"]["families"]))
    for family in families:
        seen: set[str] = set()
        for run in with_curves:
            entry = run["in_context"]["families"].get(family)
            if entry is None:
                continue
            means = summary(entry)
            key = json.dumps([entry["curves"][name] for name in CEILINGS])
            if key not in seen:
                seen.add(key)
                for name in CEILINGS:
                    table.add_row(LABELS[name], f"{family} ({entry['clips']})",
                                  *(_cell(v) for v in entry["curves"][name]), _cell(means[name]),
                                  _percent(gap_closed(entry, name)), style="dim")
            for name, suffix in (("model", ""), ("frozen", ", frozen")):
                if name not in entry["curves"]:
                    continue
                table.add_row(_name(run) + suffix, family, *(_cell(v) for v in entry["curves"][name]),
                              _cell(means[name]), _percent(gap_closed(entry, name)))
        table.add_section()
    return table


EXAMPLES = [
    ("one run: the summary, then its error matrices and both metric families",
     "hope eval runs/hope --details"),
    ("several runs in one summary table (a `train --seeds` folder as one row with intervals), Gap Closed "
     "against the ViT naive and joint runs",
     "hope eval runs/* --naive runs/vit_naive --joint runs/vit_joint --out-figure comparison.png"),
    ("everything as JSON for a notebook",
     "hope eval runs/hope runs/vit_naive --json > eval.json"),
]


# the --help panels, in order; every option belongs to one (tests/test_help.py checks)
PANELS = [
    ("Runs", ["--naive", "--joint"]),
    ("Measure", ["--horizon", "--store", "--probe"]),
    ("Output", ["--out-figure", "--details", "--json"]),
    ("Resources", ["--threads", "--compile", "--help"]),
]


@click.command(cls=HopeCommand, examples=EXAMPLES, see_also=["train", "adapt", "rollout"],
               option_panels=PANELS)
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--naive", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Run (or seeds folder) of the naive baseline (lower bound) for Gap Closed.")
@click.option("--joint", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Run (or seeds folder) of the joint baseline (upper bound) for Gap Closed.")
@click.option("--horizon", type=click.IntRange(min=1), default=None,
              help="Measure the error per rollout horizon again, up to this many steps, "
                   "from each run's final checkpoint.")
@click.option("--store", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Feature store for --horizon (default: the store each run was trained on).")
@click.option("--out-figure", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write one PNG comparing the runs on shared axes: Avg Error / Forgetting / "
                   "Plasticity bars against copy-last, error and probe error per horizon beside the "
                   "baselines, and every run's error matrix on one colour scale.")
@click.option("--probe/--no-probe", default=None,
              help="Score the object's position through a linear probe fitted on the training clips' "
                   "features (default: on when the store has object states).")
@click.option("--details", is_flag=True,
              help="After the summary, every run's error matrices, both metric families for both error "
                   "kinds and the error per rollout horizon.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON on stdout.")
@threads_option
@compile_option
def command(runs, naive, joint, horizon, store, out_figure, probe, details, as_json):
    """Error matrices and continual-learning metrics of one or more training RUNS.

    A run's error matrix has one row per experience (the state after training on it) and
    one column per partition (the base partition first), each cell the validation error
    on that partition then; there is one matrix for teacher-forcing error and one for
    jump error. Lower errors are better. From each matrix:

    Avg Error is the mean of the last row. Forgetting is how much the error on earlier
    partitions rose from its best value to the end (positive = forgot). Plasticity is
    the mean error on each partition right after learning it. Backward transfer (BWT) is
    how much later training lowered the error on earlier partitions, and forward
    transfer (FWT) how much earlier training lowered it on partitions not yet learned
    (both: positive = helped). Gap Closed = (naive - run) / (naive - joint) on Avg Error,
    given --naive and --joint runs of the ViT baseline: 0% is naive fine-tuning, 100% is
    as good as training on everything at once.

    The earlier pipeline's metric family (its names) follows with --details: Stream
    Error (mean error over the partitions trained so far), Stream Forgetting, their
    backward transfer "BWT (+ = error grew)" with the opposite sign (positive = the error
    grew), and "FWT (future error)", the error on partitions not trained yet.

    Seeds: runs that differ only by their seed (e.g. the seed0, seed1, ... of `hope train
    --seeds`, given as their folder) form one configuration, shown as the mean over seeds
    with a 95% interval (bootstrap over seeds and validation clips; one run's interval
    comes from its clips). eval warns when the naive-joint gap lies within its own
    interval (Gap Closed then divides by noise) and when the runs had different step
    budgets or validation clips.

    Baselines: every error stands beside copy-last (predict the last step seen) and
    context-mean (the mean of the steps seen) on the same validation clips, steps and
    horizons; "vs copy" is a run's error relative to copy-last.

    Probe (stores with object states, e.g. from `hope synth`): a ridge regression from
    a step's features to the object's state, fitted on the true features of the
    training clips, reads the object's position off the features of each horizon's
    target: true features (the probe's ceiling), copy-last, and each run's rollout.

    In-context curve (a store from `hope synth --dynamics`): every run's error against
    the step index, with its memories writing and frozen, beside copy, the best
    no-context map, in-context least squares and the oracle, for every family (the
    held-out one on all its clips); figure RUN/in_context.png (or beside --out-figure).

    Each run also gets RUN/eval.png: both heat maps, stream error and forgetting per
    experience, error vs rollout horizon. --json prints everything.
    """
    from hopecli.eval.evaluate import evaluate_runs
    from hopecli.eval.report import MIN_VAL_CLIPS, few_validation_clips

    report = evaluate_runs(runs, naive=naive, joint=joint, horizon=horizon, store=store, out_figure=out_figure,
                           probe=probe)
    err.print(_summary_table(report["runs"]))
    err.print(_groups_table(report["groups"]))
    for table in (_probe_table(report["runs"]), _in_context_table(report["runs"])):
        if table is not None:
            err.print(table)
    for run in report["runs"]:
        few = few_validation_clips(run)
        if few:
            counts = ", ".join(f"{task!r} {n}" for task, n in few.items())
            err.print(f"warning: {_name(run)}: fewer than {MIN_VAL_CLIPS} validation clips for {counts}; "
                      f"errors on so few clips are too noisy to compare runs (train with --val-clips "
                      f"{MIN_VAL_CLIPS} or a larger --val-fraction)", highlight=False)
    for kind in (report["baselines"] or {}).get("gap_undefined", []):
        err.print(f"warning: Gap Closed ({kind.replace('_', '-')}) is undefined: the joint baseline's Avg "
                  f"Error is not lower than the naive baseline's, so there is no gap to close")
    for warning in report["warnings"] + _gap_warnings(report["groups"]):
        err.print(f"warning: {warning}", soft_wrap=True, highlight=False)
    if details:
        _print_details(report)
    figures = [r["figure"] for r in report["runs"] if r["figure"]] + ([report["figure"]] if report["figure"] else [])
    figures += list(dict.fromkeys(r["in_context"]["figure"] for r in report["runs"]
                                  if r.get("in_context") and r["in_context"].get("figure")))
    err.print(("" if details else "per-run error matrices and both metric families: --details; ")
              + ("figures: " + ", ".join(figures) if figures else "no figures written"), highlight=False)
    if as_json:
        click.echo(dumps_report(report))


def _print_details(report: dict) -> None:
    from hopecli.eval.metrics import ERROR_KINDS

    for run in report["runs"]:
        for kind in ERROR_KINDS:
            _print_r_table(run, kind)
        for kind in ERROR_KINDS:
            table = _stream_rows_table(run, kind)
            if table is not None:
                err.print(table)
    for kind in ERROR_KINDS:
        err.print(_metrics_table(report["runs"], kind, report["baselines"] is not None))
    for kind in ERROR_KINDS:
        err.print(_stream_table(report["runs"], kind))
    table = _horizon_table(report["runs"])
    if table is not None:
        err.print(table)
