"""Training losses and the error measures behind evaluation (V-JEPA 2-AC style).

Features enter the predictor layer-normed without affine parameters, and predictions are
compared by L1 with layer-normed targets (as `app/vjepa_droid/train.py`). Three losses:

- teacher forcing: from steps 0..T-2 (all at once, block-causal) predict steps 1..T-1;
- rollout: autoregressive from step 0 for k steps, each prediction (layer-normed) fed back
  as the next input frame, against steps 1..k;
- jump: from step 0 alone predict step tau (per sample), told by `target_step` (the
  predictor's target_pos_embed); tau is drawn from `jump_range`: every step 1..T-1, or
  the last `jump_k` steps of the clip (the seeds' jump_k: 3 of 8 steps, tau in 5..7).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def normalize_features(x: Tensor) -> Tensor:
    """Layer norm over the feature dim, no affine, in fp32: [..., D] -> [..., D]."""
    return F.layer_norm(x.float(), (x.shape[-1],))


def l1_per_clip(pred: Tensor, target: Tensor) -> Tensor:
    """Mean |pred - target| per clip: [B, ...] x [B, ...] -> [B] (fp32)."""
    return (pred.float() - target.float()).abs().flatten(1).mean(1)


def jump_range(T: int, jump_k: int | None) -> range:
    """The jump targets tau of a clip of T steps: the last jump_k steps, or all of 1..T-1."""
    if T < 2:
        raise ValueError(f"jump prediction needs clips of >= 2 steps, got T={T}")
    if jump_k is not None and jump_k > T - 1:
        raise ValueError(f"jump_k {jump_k} needs clips of more than {jump_k} steps, got T={T}")
    return range(T - (jump_k or T - 1), T)


@dataclass
class LossConfig:
    """Weights of the three losses, the rollout length (V-JEPA 2-AC: 2 steps) and the
    jump targets (None: every step after the first; k: the last k steps of the clip)."""

    teacher_weight: float = 1.0
    rollout_weight: float = 1.0
    rollout_steps: int = 2
    jump_weight: float = 1.0
    jump_k: int | None = None

    def __post_init__(self) -> None:
        for name in ("teacher_weight", "rollout_weight", "jump_weight"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.rollout_steps < 1:
            raise ValueError(f"rollout_steps must be >= 1, got {self.rollout_steps!r}")
        if self.jump_k is not None and self.jump_k < 1:
            raise ValueError(f"jump_k must be >= 1, got {self.jump_k!r}")
        if self.teacher_weight + self.rollout_weight + self.jump_weight == 0:
            raise ValueError("at least one of teacher_weight, rollout_weight, jump_weight must be > 0")

    def to_dict(self) -> dict:
        return asdict(self)


def teacher_forcing(model: nn.Module, features: Tensor, actions: Tensor, states: Tensor):
    """Predict steps 1..T-1 from steps 0..T-2 in one pass.

    features [B, T, P, D] (layer-normed), actions [B, T, A], states [B, T, S]
    -> (pred [B, T-1, P, D], model output for its diagnostics).
    """
    out = model(features[:, :-1], actions[:, :-1], states[:, :-1])
    return out.pred, out


def rollout(
    model: nn.Module, features: Tensor, actions: Tensor, states: Tensor, steps: int,
    first: Tensor | None = None,
) -> Tensor:
    """Autoregressive prediction of steps 1..`steps` from step 0 under the given actions.

    features [B, >=1, P, D] (only step 0 is read), actions/states [B, >=steps, .]
    -> pred [B, steps, P, D]. Each step re-runs the predictor on the real step 0 and the
    layer-normed predictions so far (block-causal, as V-JEPA 2-AC), so it works for every
    block type. `first` [B, P, D] reuses an already computed prediction of step 1 (the
    teacher-forcing one, identical by causality).
    """
    frames = [features[:, 0]]
    preds = []
    for n in range(steps):
        if n == 0 and first is not None:
            nxt = first
        else:
            ctx = torch.stack(frames, 1)  # [B, n+1, P, D]
            nxt = model(ctx, actions[:, : n + 1], states[:, : n + 1]).pred[:, -1]
        preds.append(nxt)
        frames.append(normalize_features(nxt).to(features.dtype))
    return torch.stack(preds, 1)


def jump(model: nn.Module, features: Tensor, actions: Tensor, states: Tensor, tau: Tensor) -> Tensor:
    """From step 0 alone predict step tau [B] (long): -> pred [B, P, D]."""
    out = model(features[:, :1], actions[:, :1], states[:, :1], target_step=tau)
    return out.pred[:, -1]


class WorldModelObjective(nn.Module):
    """The weighted training loss as one module, so DDP sees one forward per backward.

    forward(features, actions, states, tau) with raw (un-normalised) features [B, T, P, D]
    and jump targets tau [B] -> (total loss, {"loss/teacher", "loss/rollout", "loss/jump"}
    detached, the model's diagnostics from the teacher-forcing pass, or from the jump pass
    when only the jump loss is on).
    """

    def __init__(self, model: nn.Module, cfg: LossConfig) -> None:
        super().__init__()
        self.model = model
        self.cfg = cfg

    def forward(self, features: Tensor, actions: Tensor, states: Tensor, tau: Tensor):
        cfg = self.cfg
        z = normalize_features(features)  # [B, T, P, D] fp32
        T = z.shape[1]
        if T < 2:
            raise ValueError(f"training needs clips of >= 2 steps, got T={T}")
        parts: dict[str, Tensor] = {}
        total = z.new_zeros(())
        diagnostics: dict[str, Tensor] = {}
        pred_tf = None
        if cfg.teacher_weight > 0 or cfg.rollout_weight > 0:
            pred_tf, out = teacher_forcing(self.model, z, actions, states)
            diagnostics = out.diagnostics
        if cfg.teacher_weight > 0:
            parts["loss/teacher"] = l1_per_clip(pred_tf, z[:, 1:]).mean()
            total = total + cfg.teacher_weight * parts["loss/teacher"]
        if cfg.rollout_weight > 0:
            k = min(cfg.rollout_steps, T - 1)
            pred_ar = rollout(self.model, z, actions, states, k, first=pred_tf[:, 0])
            parts["loss/rollout"] = l1_per_clip(pred_ar, z[:, 1 : k + 1]).mean()
            total = total + cfg.rollout_weight * parts["loss/rollout"]
        if cfg.jump_weight > 0:
            out = self.model(z[:, :1], actions[:, :1], states[:, :1], target_step=tau)
            pred_j = out.pred[:, -1]
            diagnostics = diagnostics or out.diagnostics
            target = z[torch.arange(z.shape[0], device=z.device), tau]  # [B, P, D]
            parts["loss/jump"] = l1_per_clip(pred_j, target).mean()
            total = total + cfg.jump_weight * parts["loss/jump"]
        return total, {k: v.detach() for k, v in parts.items()}, diagnostics
