"""The in-context curve: error against the step index, beside the ceilings a store's law allows.

On a hidden-dynamics store (hopecli.data.dynamics) every clip's next step is a map of its
current step and action that only the clip's own earlier steps reveal. Predicting step
t + 1 from steps 0..t, every predictor is scored like `hope eval` scores a model (L1
against layer-normed targets, per clip, then over clips) at each t, and bounded by:

- copy: z_t (the last step seen);
- no-context map: one linear map [z_t, a_t, 1] -> z_t+1 fitted by least squares on the
  run's training clips, the best a predictor can do that ignores which clip it is in;
- in-context LS: the same map refitted on the clip's own transitions 0..t-1, by ridge
  toward the no-context map (so it is that map at t = 0 and the clip's own fit soon
  after): what a linear learner of the context reaches;
- oracle: the true law applied to the stored step (only the noise remains).

The maps work on the layer-normed features the models read. A run is measured twice,
with its memories writing and frozen (update_memory=False): the gap between the two is
what its memories learn from the clip.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

CEILINGS = ("copy", "no_context", "in_context_ls", "oracle")
LABELS = {"copy": "copy", "no_context": "no-context map", "in_context_ls": "in-context LS",
          "oracle": "oracle", "model": "run", "frozen": "run, memories frozen"}
RIDGE = 1.0  # pull of the in-context fit toward the no-context map (36 x 16 equations a step)
LN_EPS = 1e-5  # torch.nn.functional.layer_norm's default, as normalize_features


def layer_norm(z: np.ndarray) -> np.ndarray:
    """Layer norm over the last dim without affine parameters (normalize_features in numpy)."""
    z = z.astype(np.float64)
    mean = z.mean(-1, keepdims=True)
    var = z.var(-1, keepdims=True)
    return (z - mean) / np.sqrt(var + LN_EPS)


def _inputs(z: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """[z_t, a_t, 1] per patch: z [..., T, P, D], actions [..., T, A] -> [..., T, P, D + A + 1]."""
    a = np.broadcast_to(actions[..., None, :], (*z.shape[:-1], actions.shape[-1]))
    return np.concatenate([z, a, np.ones((*z.shape[:-1], 1))], axis=-1)


def fit_no_context(features: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """Least-squares map W [D, D + A + 1] with z_t+1 ~ W x_t over every clip, step and
    patch: features [N, T, P, D] layer-normed, actions [N, T, A]."""
    x = _inputs(features[:, :-1], actions[:, :-1]).reshape(-1, features.shape[-1] + actions.shape[-1] + 1)
    y = features[:, 1:].reshape(-1, features.shape[-1])
    return np.linalg.lstsq(x, y, rcond=None)[0].T


def in_context_predictions(z: np.ndarray, actions: np.ndarray, prior: np.ndarray,
                           ridge: float = RIDGE) -> np.ndarray:
    """Predictions of steps 1..T-1 of one clip, each from a map refitted on the clip's
    transitions before it: W_t = argmin sum_{s<t} |z_s+1 - W x_s|^2 + ridge |W - prior|^2.
    z [T, P, D] layer-normed, actions [T, A] -> [T-1, P, D]."""
    x = _inputs(z, actions)  # [T, P, E]
    width = x.shape[-1]
    gram = ridge * np.eye(width)
    cross = ridge * prior  # [D, E]
    out = []
    for t in range(z.shape[0] - 1):
        w = np.linalg.solve(gram, cross.T).T  # cross gram^-1 (gram is symmetric)
        out.append(x[t] @ w.T)
        gram = gram + x[t].T @ x[t]
        cross = cross + z[t + 1].T @ x[t]
    return np.stack(out)


def step_errors(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Mean |pred - target| per step: [N, T-1, P, D] each -> [N, T-1]."""
    return np.abs(pred - target).mean(axis=(-1, -2))


def ceiling_curves(store, train: Sequence[int], clips: Sequence[int]) -> dict[str, np.ndarray]:
    """Per-clip, per-step errors [len(clips), T-1] of every ceiling (module docstring)."""
    from hopecli.data.dynamics import oracle_next, store_dynamics

    cfg = store_dynamics(store)
    if cfg is None:
        raise ValueError(f"{store.path}: not a hidden-dynamics store (no 'dynamics' attribute)")
    fit = store.read_batch(sorted(train))
    prior = fit_no_context(layer_norm(fit.features), fit.actions.astype(np.float64))
    data = store.read_batch(list(clips))
    raw = data.features.astype(np.float64)
    acts = data.actions.astype(np.float64)
    z = layer_norm(raw)
    target = z[:, 1:]
    names = store.clips
    oracle = np.stack([layer_norm(oracle_next(cfg, names[i], raw[k], acts[k])) for k, i in enumerate(clips)])
    no_context = _inputs(z[:, :-1], acts[:, :-1]) @ prior.T
    in_context = np.stack([in_context_predictions(z[k], acts[k], prior) for k in range(len(clips))])
    preds = {"copy": z[:, :-1], "no_context": no_context, "in_context_ls": in_context, "oracle": oracle}
    return {name: step_errors(preds[name], target) for name in CEILINGS}


def model_curves(model, store, clips: Sequence[int], *, batch_size: int = 16,
                 device: str = "cpu") -> dict[str, np.ndarray]:
    """Per-clip, per-step teacher-forcing errors [len(clips), T-1] of `model`, with its
    memories writing ("model") and, when it has any, frozen ("frozen")."""
    import torch

    from hopecli.model.blocks import HopeBlock
    from hopecli.train.data import read_batch
    from hopecli.train.losses import normalize_features

    was_training = model.training
    model.eval()
    out: dict[str, list[np.ndarray]] = {"model": []}
    if any(isinstance(block, HopeBlock) for block in model.blocks):
        out["frozen"] = []
    try:
        with torch.no_grad():
            for start in range(0, len(clips), batch_size):
                batch = read_batch(store, list(clips[start : start + batch_size])).to(device)
                z = normalize_features(batch.features)
                for name, update in (("model", True), ("frozen", False))[: len(out)]:
                    pred = model(z[:, :-1], batch.actions[:, :-1], batch.states[:, :-1],
                                 update_memory=update).pred
                    out[name].append((pred.float() - z[:, 1:]).abs().mean(dim=(-1, -2)).cpu().numpy())
    finally:
        model.train(was_training)
    return {name: np.concatenate(parts) for name, parts in out.items()}


def in_context_report(run_dir: Path, store_path: Path | None = None, device: str = "cpu") -> dict | None:
    """The in-context curves of a run on its store, per family (None if the store is not a
    hidden-dynamics store). Families the run trained on are scored on its validation
    clips, the others (the held-out family) on all their clips."""
    from hopecli.data.dynamics import store_dynamics
    from hopecli.runs.checkpoint import load_model
    from hopecli.runs.split import run_split
    from hopecli.train.distributed import resolve_device

    store, cfg, tasks, split = run_split(run_dir, store_path)
    if store_dynamics(store) is None:
        return None
    dev = resolve_device(device)
    model, _ = load_model(run_dir, device=dev)
    train = [i for t in tasks for i in split.train[t]]
    families = {}
    for family in store.task_names():
        clips = split.val[family] if family in tasks else store.indices([family])
        if not clips:
            continue
        curves = ceiling_curves(store, train, clips)
        curves.update(model_curves(model, store, clips, device=str(dev)))
        families[family] = {
            "clips": len(clips),
            "trained": family in tasks,
            "curves": {name: values.mean(0).tolist() for name, values in curves.items()},
            "per_clip_from_step_2": {name: values[:, 1:].mean(1).tolist() for name, values in curves.items()},
        }
    return {"steps": list(range(1, store.group["features"].shape[1])), "families": families}


def summary(family: dict) -> dict[str, float]:
    """Mean error from step 2 on (where the context holds a transition) of every curve."""
    return {name: float(np.mean(curve[1:])) for name, curve in family["curves"].items()}


def gap_closed(family: dict, name: str) -> float | None:
    """Share of the gap from the no-context map to in-context LS that curve `name` closes,
    on the mean error from step 2 on; None when there is no gap."""
    s = summary(family)
    gap = s["no_context"] - s["in_context_ls"]
    return None if gap <= 0 else (s["no_context"] - s[name]) / gap
