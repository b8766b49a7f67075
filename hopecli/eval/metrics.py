"""Continual-learning metrics from a run's error matrices: what `hope eval` reports.

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

import numpy as np

from hopecli.runs.folder import json_safe

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


def mean_avg_error(runs: list[dict]) -> dict[str, float | None]:
    """Avg Error per error kind, averaged over a baseline's seed runs (results.json dicts)."""
    out = {}
    for kind in ERROR_KINDS:
        values = [(run_metrics(r)[kind] or {}).get("avg_error") for r in runs]
        out[kind] = None if any(v is None for v in values) else float(np.mean(values))
    return out
