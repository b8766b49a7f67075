"""Predictors that learn nothing: copy-last-step and context-mean.

A world model that does not beat copying the current step has learned nothing (on the
sample data most patches are static table, so copying is already right on most of the
image). Both baselines are scored exactly as the models are (hopecli.train.validate):
L1 against layer-normed targets, per clip, on the same clips, steps and horizons.

- copy-last: the prediction of step t + 1 is the last step seen, z_t.
- context-mean: the prediction of step t + 1 is the mean of the steps seen, z_0 .. z_t.

Teacher forcing sees steps 0..t before predicting t + 1, so the two differ there. Jump
prediction and the per-horizon rollout of evaluation start from step 0 alone, so both
baselines predict z_0 for every target and coincide; they differ again in `hope rollout`
and `hope adapt`, whose context holds more than one step.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from hopecli.train.losses import jump_range, l1_per_clip, normalize_features

BASELINES = ("copy_last", "context_mean")
LABELS = {"copy_last": "copy-last", "context_mean": "context-mean"}


def running_mean(z: Tensor, dim: int = 1) -> Tensor:
    """Mean of steps 0..t for every t along `dim`: [B, T, ...] -> [B, T, ...]."""
    counts = torch.arange(1, z.shape[dim] + 1, device=z.device, dtype=z.dtype)
    shape = [1] * z.dim()
    shape[dim] = -1
    return z.cumsum(dim) / counts.view(shape)


def next_step_predictions(z: Tensor, name: str) -> Tensor:
    """The baseline's prediction of steps 1..T-1 from steps 0..T-2: [B, T, P, D] -> [B, T-1, P, D]."""
    if name == "copy_last":
        return z[:, :-1]
    if name == "context_mean":
        return running_mean(z[:, :-1])
    raise ValueError(f"unknown baseline {name!r}; choose one of {BASELINES}")


def context_prediction(z: Tensor, context: int, name: str) -> Tensor:
    """The baseline's prediction of every later step from the first `context` steps:
    [B, >=context, P, D] -> [B, P, D] (a baseline does not move)."""
    if name == "copy_last":
        return z[:, context - 1]
    if name == "context_mean":
        return z[:, :context].mean(1)
    raise ValueError(f"unknown baseline {name!r}; choose one of {BASELINES}")


@torch.no_grad()
def baseline_clip_errors(features: Tensor, name: str, horizon: int = 0, jump_k: int | None = None) -> Tensor:
    """Per-clip errors [B, 2 + horizon] laid out as validate.clip_errors: teacher forcing,
    jump (mean over the jump targets), then horizons 1..horizon of a rollout from step 0.

    features [B, T, P, D] raw (normalised here).
    """
    z = normalize_features(features)
    T = z.shape[1]
    if horizon > T - 1:
        raise ValueError(f"horizon {horizon} needs clips of more than {horizon} steps, got T={T}")
    cols = [l1_per_clip(next_step_predictions(z, name), z[:, 1:])]
    start = context_prediction(z, 1, name)  # [B, P, D]
    taus = jump_range(T, jump_k)
    cols.append(torch.stack([l1_per_clip(start, z[:, tau]) for tau in taus], 1).mean(1))
    cols += [l1_per_clip(start, z[:, h]) for h in range(1, horizon + 1)]
    return torch.stack(cols, 1)


def evaluate_baselines(store, indices: Sequence[int], *, horizon: int = 0, jump_k: int | None = None,
                       batch_size: int = 16) -> dict[str, dict]:
    """Mean baseline errors over the clips `indices` of `store`, in validate.evaluate_clips'
    layout: {name: {"teacher_forcing", "jump", "horizon": [H], "clips"}}."""
    from hopecli.train.data import read_batch

    sums = {name: torch.zeros(2 + horizon, dtype=torch.float64) for name in BASELINES}
    indices = list(indices)
    for start in range(0, len(indices), batch_size):
        batch = read_batch(store, indices[start : start + batch_size])
        for name in BASELINES:
            sums[name] += baseline_clip_errors(batch.features, name, horizon, jump_k).double().sum(0)
    n = max(len(indices), 1)
    out = {}
    for name, total in sums.items():
        means = (total / n).tolist()
        out[name] = {"teacher_forcing": means[0], "jump": means[1], "horizon": means[2:], "clips": len(indices)}
    return out


def relative_to(value: float | None, reference: float | None) -> float | None:
    """(value - reference) / reference: -0.31 reads "31% below the reference"."""
    if value is None or reference is None or not np.isfinite(value) or not reference > 0:
        return None
    return (value - reference) / reference


def vs_copy(value: float | None, copy: float | None) -> str:
    """"-31% vs copy" (or "-" when either is missing)."""
    rel = relative_to(value, copy)
    return "-" if rel is None else f"{100 * rel:+.1f}% vs copy"
