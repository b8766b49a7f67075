"""Validation errors of a predictor on held-out clips: teacher forcing, jump, per horizon.

Each error is an L1 against layer-normed targets (the training losses' measure), averaged
per clip and then over clips, so every clip counts once whatever its batch:

- teacher forcing: steps 1..T-1 predicted from the real steps before them;
- jump: from step 0 to every tau of the training range (losses.jump_range: 1..T-1, or
  the last jump_k steps), averaged over tau (deterministic, unlike the random tau of
  training; the seeds' per-timestep jump evaluation);
- horizon h = 1..H: the h-th prediction of an autoregressive rollout from step 0.

Memory updates stay on (HOPE adapts in context at test time too). Under DDP each rank
evaluates every world-size-th clip and the sums are added across ranks.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from hopecli.train.data import read_batch
from hopecli.train.distributed import World, all_sum, autocast
from hopecli.train.losses import jump, jump_range, l1_per_clip, normalize_features, rollout, teacher_forcing


@torch.no_grad()
def clip_errors(model: nn.Module, features, actions, states, horizon: int = 0,
                jump_k: int | None = None) -> torch.Tensor:
    """Per-clip errors [B, 2 + horizon]: teacher forcing, jump, then horizons 1..horizon.

    features [B, T, P, D] raw (normalised here), actions [B, T, A], states [B, T, S].
    """
    z = normalize_features(features)
    B, T = z.shape[:2]
    if horizon > T - 1:
        raise ValueError(f"horizon {horizon} needs clips of more than {horizon} steps, got T={T}")
    pred, _ = teacher_forcing(model, z, actions, states)
    cols = [l1_per_clip(pred, z[:, 1:])]
    jump_err = torch.zeros(B, device=z.device)
    taus = jump_range(T, jump_k)
    for tau in taus:
        target_step = torch.full((B,), tau, dtype=torch.long, device=z.device)
        jump_err += l1_per_clip(jump(model, z, actions, states, target_step), z[:, tau])
    cols.append(jump_err / len(taus))
    if horizon:
        ar = rollout(model, z, actions, states, horizon, first=pred[:, 0])  # [B, H, P, D]
        cols += [l1_per_clip(ar[:, h], z[:, h + 1]) for h in range(horizon)]
    return torch.stack(cols, 1)


def evaluate_clips(
    model: nn.Module,
    store,
    indices: Sequence[int],
    *,
    world: World,
    batch_size: int,
    horizon: int = 0,
    jump_k: int | None = None,
) -> dict:
    """Mean errors over the clips `indices` of `store`.

    Returns {"teacher_forcing": float, "jump": float, "horizon": [H floats], "clips": n,
    "per_clip": {"teacher_forcing": [n floats], "jump": [n floats]}} (per_clip in the order
    of `indices`: what `hope eval` resamples for its intervals). All ranks must call it
    (the sums are all-reduced).
    """
    was_training = model.training
    model.eval()
    sums = torch.zeros(3 + horizon, dtype=torch.float64, device=world.device)  # errors..., count
    indices = list(indices)
    per_clip = torch.zeros(len(indices), 2, dtype=torch.float64, device=world.device)  # [n, tf/jump]
    positions = list(range(len(indices)))[world.rank :: world.size]
    try:
        for start in range(0, len(positions), batch_size):
            rows = positions[start : start + batch_size]
            batch = read_batch(store, [indices[i] for i in rows]).to(world.device)
            with autocast(world.device):
                err = clip_errors(model, batch.features, batch.actions, batch.states, horizon, jump_k)
            sums[:-1] += err.double().sum(0)
            sums[-1] += err.shape[0]
            per_clip[rows] = err[:, :2].double()
    finally:
        model.train(was_training)
    all_sum(sums, world)
    all_sum(per_clip, world)
    n = int(sums[-1].item())
    means = (sums[:-1] / max(n, 1)).tolist()
    return {"teacher_forcing": means[0], "jump": means[1], "horizon": means[2:], "clips": n,
            "per_clip": {"teacher_forcing": per_clip[:, 0].tolist(), "jump": per_clip[:, 1].tolist()}}
