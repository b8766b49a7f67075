"""`hope eval`: continual-learning metrics, per-horizon error and figures of training runs."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.table import Table

from hopecli.console import err

LABELS = {
    "avg_error": "Avg Error",
    "forgetting": "Forgetting",
    "plasticity": "Plasticity",
    "backward_transfer": "BWT",
    "forward_transfer": "FWT",
    "gap_closed": "Gap Closed",
}


def _cell(value, percent: bool = False) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.1f}%" if percent else f"{value:.4f}"


def _r_table(run: dict, kind: str) -> Table:
    table = Table(title=f"{run['run']}: {kind.replace('_', '-')} error R[i][j] ({run['strategy']})")
    table.add_column("after experience")
    for task in run["tasks"]:
        table.add_column(task or "(unlabelled)", justify="right")
    for name, row in zip(run["experiences"], run["R"][kind]):
        table.add_row(name, *(_cell(v) for v in row))
    return table


def _metrics_table(runs: list[dict], kind: str, with_gap: bool) -> Table:
    keys = [k for k in LABELS if with_gap or k != "gap_closed"]
    table = Table(title=f"continual-learning metrics, {kind.replace('_', '-')} error (lower is better, "
                        "transfer: higher is better)")
    table.add_column("run")
    for key in keys:
        table.add_column(LABELS[key], justify="right")
    for run in runs:
        m = run["metrics"][kind]
        if m is None:
            table.add_row(run["run"], *(["unfinished"] + ["-"] * (len(keys) - 1)))
        else:
            table.add_row(run["run"], *(_cell(m.get(k), percent=k == "gap_closed") for k in keys))
    return table


def _horizon_table(runs: list[dict]) -> Table | None:
    with_h = [r for r in runs if r["horizon"] is not None]
    if not with_h:
        return None
    steps = max(r["horizon"]["steps"] for r in with_h)
    table = Table(title="validation error per rollout horizon (mean over tasks)")
    table.add_column("run")
    for h in range(1, steps + 1):
        table.add_column(f"{h}", justify="right")
    for run in with_h:
        mean = run["horizon"]["mean"]
        table.add_row(run["run"], *(_cell(mean[h]) if h < len(mean) else "" for h in range(steps)))
    return table


@click.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--naive", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Run of the naive baseline (lower bound) for Gap Closed.")
@click.option("--joint", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Run of the joint baseline (upper bound) for Gap Closed.")
@click.option("--horizon", type=click.IntRange(min=1), default=None,
              help="Measure the error per rollout horizon again, up to this many steps, "
                   "from each run's final checkpoint.")
@click.option("--store", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Feature store for --horizon (default: the store each run was trained on).")
@click.option("--out-figure", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write one PNG with every run.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON on stdout.")
def command(runs, naive, joint, horizon, store, out_figure, as_json):
    """Error matrices and continual-learning metrics of one or more training RUNS.

    \b
    R[i][j] is the error on task j after experience i (teacher-forcing and jump error).
    Avg Error: mean of the last row. Forgetting: mean over earlier tasks of final error
    minus best earlier error. Plasticity: mean of R[j][j]. BWT / FWT: backward and
    forward transfer. Gap Closed = (naive - run) / (naive - joint) on Avg Error, with
    --naive and --joint baseline runs. Each run also gets RUN/eval.png (R heat maps and
    error vs rollout horizon).
    """
    from hopecli.evaluate import ERROR_KINDS, evaluate_runs

    report = evaluate_runs(runs, naive=naive, joint=joint, horizon=horizon, store=store, out_figure=out_figure)
    for run in report["runs"]:
        for kind in ERROR_KINDS:
            err.print(_r_table(run, kind))
    for kind in ERROR_KINDS:
        err.print(_metrics_table(report["runs"], kind, report["baselines"] is not None))
    table = _horizon_table(report["runs"])
    if table is not None:
        err.print(table)
    figures = [r["figure"] for r in report["runs"]] + ([report["figure"]] if report["figure"] else [])
    err.print("figures: " + ", ".join(figures))
    if as_json:
        click.echo(json.dumps(report, indent=2))
