"""What `hope eval` measures on a run's validation clips (the clips its training held out,
hopecli.runs.split): the error per rollout horizon of its final checkpoint, when asked
for again, and the copy-last and context-mean baselines. The probe and the in-context
curves are measurements of their own (probe.py, incontext.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hopecli.errors import HopeError
from hopecli.eval.metrics import ERROR_KINDS
from hopecli.runs.folder import json_safe
from hopecli.runs.split import run_split


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
        entry["horizon"] = with_mean({"steps": steps, "tasks": {t: per_task[t][name]["horizon"] for t in tasks}})
        out[name] = json_safe(entry)
    return out


def with_mean(horizon: dict | None) -> dict | None:
    """Per-horizon errors per partition with their mean over partitions ("mean")."""
    if horizon is None:
        return None
    rows = np.array([v for v in horizon["tasks"].values()], dtype=np.float64)
    return json_safe({**horizon, "mean": rows.mean(0).tolist()})
