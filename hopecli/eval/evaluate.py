"""`hope eval` on a list of runs: each run's metrics (metrics.py) and measurements
(measure.py, probe.py, incontext.py), Gap Closed against baseline runs, means with
intervals over seeds (intervals.py) and the figures (figures.py), as one dict: what
`hope eval --json` prints.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hopecli.errors import HopeError
from hopecli.eval.figures import save_comparison, save_figure, save_in_context_figure
from hopecli.eval.measure import measure_baselines, measure_horizon, with_mean
from hopecli.eval.metrics import ERROR_KINDS, gap_closed, mean_avg_error, run_metrics, run_stream_metrics
from hopecli.eval.report import RunReport
from hopecli.runs.files import load_results
from hopecli.runs.folder import json_safe


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
            horizon=with_mean(per_horizon), complete=bool(results.get("complete")),
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
            baselines[name] = {"run": str(path), "avg_error": mean_avg_error(base_results[name])}
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
        path = (Path(out_figure).with_name(Path(out_figure).stem + "_in_context.png") if out_figure is not None
                else Path(with_curves[0].run) / "in_context.png")
        save_in_context_figure([r.to_dict() for r in with_curves], path)
        for r in with_curves:
            r.in_context["figure"] = str(path)
    return {"runs": [r.to_dict() for r in reports], "baselines": baselines or None, "groups": groups,
            "figure": str(out_figure) if out_figure is not None else None, "warnings": warnings}
