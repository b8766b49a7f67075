"""Means with 95% intervals over seeds and validation clips: how far `hope eval`'s numbers can be trusted.

Runs whose config.json agree in everything but the seed (and the device) are one
configuration trained under several seeds (`hope train --seeds`): a *group*. Every
metric of a group is reported as the mean over its seeds with a 95% percentile bootstrap
interval (B = 2,000 resamples, seeded, so the same runs give the same interval):

- Avg Error: resample the seeds, and within each drawn seed the validation clips of every
  partition (the final model's per-clip errors, results.json `clip_errors`); Avg Error of
  a draw is the mean over partitions of its clip means, averaged over the drawn seeds.
  A group of one run still gets an interval, from its clips alone.
- Gap Closed = (naive - model) / (naive - joint): the three Avg Errors drawn as above,
  the seeds of each independently, the clips paired (one resample of clip positions per
  draw for all three: runs validated on the same clips, as --val-clips gives, then differ
  by the models, not by which clips were drawn); the ratio per draw. The naive-joint gap
  gets its own interval; when it holds 0, the gap is within noise and Gap Closed means
  nothing.
- Forgetting, Plasticity and the transfers need the whole error matrix, which has no
  per-clip errors: their interval resamples the seeds only (none for one seed).

Runs without `clip_errors` (trained before it was recorded) resample seeds only.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hopecli.runs.folder import CONFIG, read_json

DRAWS = 2000
LEVEL = 0.95
KINDS = ("teacher_forcing", "jump")
SEED_ONLY = ("forgetting", "plasticity", "backward_transfer", "forward_transfer")
IGNORED = {"train": ("seed", "device")}  # config fields that do not make another configuration
NOT_CONFIG = ("hope_version", "numerics")  # config.json sections that say how a run ran, not what


def config_key(run: Path) -> str:
    """What identifies a run's configuration: its config.json without the seed, the device,
    the versions and the compile decision (a missing config.json: the folder itself)."""
    path = Path(run) / CONFIG
    if not path.is_file():
        return str(Path(run).resolve())
    config = {k: v for k, v in read_json(path).items() if k not in NOT_CONFIG}
    for section, fields in IGNORED.items():
        config[section] = {k: v for k, v in (config.get(section) or {}).items() if k not in fields}
    return json.dumps(config, sort_keys=True)


def group_runs(runs: Sequence[Path]) -> list[list[int]]:
    """Indices of `runs` grouped by configuration, in order of first appearance."""
    groups: dict[str, list[int]] = {}
    for i, run in enumerate(runs):
        groups.setdefault(config_key(run), []).append(i)
    return list(groups.values())


def short_names(runs: Sequence[str | Path]) -> list[str]:
    """The shortest trailing parts of each path that tell the runs apart: a/vit_naive and
    b/vit_naive print as such, not as two vit_naive rows. A seed run of a seeds folder is
    named by that folder (told apart the same way) and its own name: vit/seed0."""
    from hopecli.runs.seeds import SEEDS

    paths = [Path(r).resolve() for r in runs]
    seeded = [(p.parent / SEEDS).is_file() for p in paths]
    folders = [p.parent if s else p for p, s in zip(paths, seeded)]
    unique = list(dict.fromkeys(folders))
    names = dict(zip(unique, _trailing(unique)))
    return [f"{names[f]}/{p.name}" if s else names[f] for p, s, f in zip(paths, seeded, folders)]


def _trailing(paths: Sequence[Path]) -> list[str]:
    """The shortest trailing parts that tell distinct paths apart."""
    parts = [p.parts for p in paths]
    depth = [1] * len(parts)
    while True:
        names = ["/".join(p[-d:]) for p, d in zip(parts, depth)]
        clashes = {n for n in names if names.count(n) > 1}
        grow = [i for i, n in enumerate(names) if n in clashes and depth[i] < len(parts[i])]
        if not grow:
            return names
        for i in grow:
            depth[i] += 1


def _clip_errors(results: dict, kind: str) -> list[np.ndarray] | None:
    """Per partition, the final model's per-clip errors (None when not recorded or missing)."""
    per_task = (results.get("clip_errors") or {}).get(kind)
    if not per_task:
        return None
    arrays = [np.array([np.nan if v is None else v for v in per_task[t]], dtype=np.float64)
              for t in results["tasks"] if t in per_task]
    if len(arrays) != len(results["tasks"]) or any(a.size == 0 or not np.isfinite(a).all() for a in arrays):
        return None
    return arrays


class ClipDraws:
    """Resampled clip positions shared by every run drawn with it: runs validated on the
    same clips (--val-clips) are then compared on the same resampled clips in each draw, a
    paired bootstrap, so the clips' common difficulty cancels out of a difference."""

    def __init__(self, rng: np.random.Generator, draws: int = DRAWS) -> None:
        self.rng, self.draws, self._cache = rng, draws, {}

    def __call__(self, task: int, n: int) -> np.ndarray:  # [draws, n] positions in 0..n-1
        if (task, n) not in self._cache:
            self._cache[task, n] = self.rng.integers(0, n, size=(self.draws, n))
        return self._cache[task, n]


def avg_error_draws(runs: Sequence[dict], kind: str, rng: np.random.Generator,
                    clip_draws: ClipDraws | None = None) -> np.ndarray:
    """[draws] Avg Errors of a group, seeds and clips resampled (module doc); `runs` are
    results.json dicts. Seeds only when a run has no per-clip errors."""
    clip_draws = clip_draws or ClipDraws(rng)
    draws = clip_draws.draws
    values = np.array([_last_row_mean(r, kind) for r in runs], dtype=np.float64)
    clips = [_clip_errors(r, kind) for r in runs]
    picks = rng.integers(0, len(runs), size=(draws, len(runs)))  # [draws, seeds]
    if any(c is None for c in clips):
        return values[picks].mean(1)
    per_run = np.empty((len(runs), draws))  # each run's Avg Error under resampled clips
    for i, tasks in enumerate(clips):
        per_run[i] = np.mean([a[clip_draws(j, a.size)].mean(1) for j, a in enumerate(tasks)], axis=0)
    return per_run[picks, np.arange(draws)[:, None]].mean(1)


def seed_draws(values: Sequence[float | None], rng: np.random.Generator, draws: int = DRAWS) -> np.ndarray | None:
    """[draws] means of the values over resampled seeds (None with one seed or a missing value)."""
    if len(values) < 2 or any(v is None for v in values):
        return None
    v = np.asarray(values, dtype=np.float64)
    return v[rng.integers(0, len(v), size=(draws, len(v)))].mean(1)


def interval(draws: np.ndarray | None, mean: float | None) -> dict | None:
    """{"mean", "low", "high"}: the point value and the percentile interval of the draws."""
    if mean is None:
        return None
    if draws is None:
        return {"mean": float(mean), "low": None, "high": None}
    finite = draws[np.isfinite(draws)]
    if finite.size < draws.size * 0.9:  # e.g. a ratio whose denominator crosses 0
        return {"mean": float(mean), "low": None, "high": None}
    low, high = np.percentile(finite, [100 * (1 - LEVEL) / 2, 100 * (1 + LEVEL) / 2])
    return {"mean": float(mean), "low": float(low), "high": float(high)}


def _last_row_mean(results: dict, kind: str) -> float | None:
    R = results["R"][kind]
    if len(R) < len(results["experiences"]) or any(v is None for v in R[-1]):
        return None
    return float(np.mean(R[-1]))


def group_intervals(results: Sequence[dict], metrics: Sequence[dict], seed: int = 0) -> dict:
    """Mean and 95% interval of every metric of one group: `results` its runs' results.json,
    `metrics` their evaluate.run_metrics (one per run, same order)."""
    rng = np.random.default_rng(seed)
    out: dict = {}
    for kind in KINDS:
        per_run = [m[kind] for m in metrics]
        if any(m is None for m in per_run):
            out[kind] = None
            continue
        avg = float(np.mean([m["avg_error"] for m in per_run]))
        entry = {"avg_error": interval(avg_error_draws(results, kind, rng), avg)}
        for key in SEED_ONLY:
            values = [m.get(key) for m in per_run]
            mean = None if any(v is None for v in values) else float(np.mean(values))
            entry[key] = interval(seed_draws(values, rng), mean)
        out[kind] = entry
    return out


def gap_intervals(model: Sequence[dict], naive: Sequence[dict], joint: Sequence[dict], seed: int = 0) -> dict:
    """Per error kind: Gap Closed of the model group against the naive and joint groups
    (results.json dicts) and the naive - joint gap, each with its 95% interval, and
    whether that gap's interval holds 0 ("gap_within_noise")."""
    rng = np.random.default_rng(seed)
    out: dict = {}
    for kind in KINDS:
        means = [[_last_row_mean(r, kind) for r in g] for g in (model, naive, joint)]
        if any(v is None for g in means for v in g):
            out[kind] = None
            continue
        m, nv, jt = (float(np.mean(g)) for g in means)
        clip_draws = ClipDraws(rng)  # the same resampled clips for all three (paired)
        dm, dn, dj = (avg_error_draws(g, kind, rng, clip_draws) for g in (model, naive, joint))
        gap = interval(dn - dj, nv - jt)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = (dn - dm) / (dn - dj)
        closed = interval(np.where(dn - dj > 0, ratio, np.nan), (nv - m) / (nv - jt) if nv > jt else None)
        within = gap["low"] is not None and gap["low"] <= 0 <= gap["high"]
        out[kind] = {"gap_closed": closed, "naive_joint_gap": gap, "gap_within_noise": bool(within)}
    return out


def budget_differences(results: dict[str, dict], val_names: dict[str, dict] | None = None) -> list[str]:
    """Warnings when runs (name -> results.json) had other step budgets or validation clips
    (their number, or, given `val_names` (name -> split.json's "val"), which clips)."""
    warnings = []
    budgets = {name: sum(e["steps"] for e in r["experiences"]) for name, r in results.items()}
    if len(set(budgets.values())) > 1:
        listed = ", ".join(f"{n} {s}" for n, s in budgets.items())
        warnings.append(f"the runs trained for different numbers of steps ({listed}); their metrics "
                        "compare budgets as much as models")
    clips = {name: json.dumps(r.get("val_clips"), sort_keys=True) for name, r in results.items()}
    if len(set(clips.values())) > 1:
        listed = ", ".join(f"{n} {sum((r.get('val_clips') or {}).values())}" for n, r in results.items())
        warnings.append(f"the runs were validated on different numbers of clips ({listed} in all); "
                        "their errors are not on the same clips")
    elif val_names and len({json.dumps(v, sort_keys=True) for v in val_names.values()}) > 1:
        warnings.append(f"the runs were validated on different clips ({', '.join(val_names)}; e.g. "
                        "--val-fraction draws them with the seed); train with --val-clips to compare "
                        "them on the same clips")
    return warnings


def validation_names(run: Path) -> dict | None:
    """The validation clips of a run by partition (split.json), None when it has none."""
    from hopecli.runs.folder import SPLIT

    path = Path(run) / SPLIT
    return read_json(path).get("val") if path.is_file() else None


def seed_groups(runs: Sequence[Path], names: Sequence[str], results: Sequence[dict], metrics: Sequence[dict],
                naive: Sequence[dict] | None = None, joint: Sequence[dict] | None = None) -> list[dict]:
    """`hope eval`'s groups: {"name", "runs" (names), "seeds", "metrics" (group_intervals),
    "gap" (gap_intervals, given the naive and joint runs' results)} per configuration."""
    out = []
    for members in group_runs(runs):
        group_results = [results[i] for i in members]
        seeds = []
        for i in members:
            path = Path(runs[i]) / CONFIG
            seeds.append(read_json(path)["train"].get("seed") if path.is_file() else None)
        out.append({
            "name": _group_name([names[i] for i in members]),
            "runs": [names[i] for i in members],
            "seeds": seeds,
            "metrics": group_intervals(group_results, [metrics[i] for i in members]),
            "gap": gap_intervals(group_results, naive, joint) if naive and joint else None,
        })
    return out


def _group_name(names: list[str]) -> str:
    """seed0, seed1 of runs/vit -> runs/vit; one run -> its name; else the names joined."""
    if len(names) == 1:
        return names[0]
    parents = {str(Path(n).parent) for n in names}
    if len(parents) == 1 and parents != {"."}:
        return parents.pop()
    return ", ".join(names)
