"""Autoregressive prediction under given actions: the library behind `hope rollout`.

From k context steps the predictor predicts step k, then feeds its own (layer-normed)
prediction back with the next action, for as many steps as there are actions. The
predictor state (Titan memory states, KV caches, frames seen) is carried from call to
call, so each new step costs one frame's forward instead of recomputing the whole
context; it gives the same predictions as recomputing (tests/apply/test_rollout.py).

Also here, because planning rolls out too: the rule for the robot state under actions
that are not the clip's own, and a predictor state repeated for a batch of candidates.
The run comes from hopecli.runs.load, the clip from hopecli.clips.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from hopecli.clips import Clip
from hopecli.errors import InputError
from hopecli.model import Predictor, PredictorState
from hopecli.model.attention import KVCache
from hopecli.model.memory import TitanState
from hopecli.train.losses import l1_per_clip, normalize_features

# -- predictor state and robot state ------------------------------------------------------


def expand_state(state: PredictorState | None, n: int) -> PredictorState | None:
    """A batch-1 predictor state repeated for n samples (candidates of a plan)."""
    if state is None:
        return None

    def one(s):
        if s is None:
            return None
        if isinstance(s, KVCache):
            return KVCache(s.k.expand(n, *s.k.shape[1:]), s.v.expand(n, *s.v.shape[1:]))
        if isinstance(s, TitanState):
            return s.map(lambda t: t.expand(n, *t.shape[1:]))
        raise TypeError(f"unknown block state {type(s).__name__}")

    return PredictorState(tuple(one(s) for s in state.blocks), state.frames)


def next_states(states: Tensor, actions: Tensor, frames_per_step: int) -> Tensor:
    """Robot state after an action that is not the clip's own: [B, S], [B, A] -> [B, S].

    Actions are commanded displacements of the state (the planar-push sidecars, like
    V-JEPA 2-AC's end-effector deltas), recorded per video frame; a step stands for
    `frames_per_step` frames, so s_t+1 = s_t + frames_per_step * a_t. When the action and
    state dims differ there is no such relation and the state is held.
    """
    if states.shape[-1] != actions.shape[-1]:
        return states
    return states + frames_per_step * actions


# -- rollout ---------------------------------------------------------------------------


@torch.no_grad()
def rollout(
    model: Predictor,
    features: Tensor,
    actions: Tensor,
    states: Tensor,
    context: int,
    *,
    state: PredictorState | None = None,
) -> tuple[Tensor, PredictorState]:
    """Predict steps context .. context + H - 1 from the first `context` steps.

    features [B, >=context, P, D] (layer-normed; only the context is read), actions and
    states [B, context - 1 + H, .]: those of the context, then the ones the rollout steps
    through. Returns (predictions [B, H, P, D], predictor state after the last input).
    `state` continues an earlier stream (memory states from adaptation).
    """
    n_actions = actions.shape[1]
    steps = n_actions - context + 1
    if context < 1 or steps < 1 or features.shape[1] < context or states.shape[1] < n_actions:
        raise ValueError(
            f"need 1 <= context <= {features.shape[1]} and at least context actions and states, got "
            f"context {context}, {n_actions} actions, {states.shape[1]} states"
        )
    out = model(features[:, :context], actions[:, :context], states[:, :context], state=state)
    preds = [out.pred[:, -1]]  # step `context`
    state = out.state
    for n in range(context, context + steps - 1):
        z = normalize_features(preds[-1])[:, None]  # [B, 1, P, D]
        out = model(z, actions[:, n, None], states[:, n, None], state=state)
        preds.append(out.pred[:, -1])
        state = out.state
    return torch.stack(preds, 1), state


@dataclass
class RolloutResult:
    clip: str
    context: int
    pred: np.ndarray  # [H, P, D] predictions of steps context .. context + H - 1
    actions: np.ndarray  # [H, A] the action before each predicted step
    own_actions: bool  # the clip's own actions (so its later steps are ground truth)
    errors: list[float] | None  # L1 against the layer-normed true step, per horizon 1..H
    # the same L1 of copy-last / context-mean (hopecli.baselines) from the same context
    baselines: dict[str, list[float]] | None = None

    def to_dict(self) -> dict:
        from hopecli.baselines import relative_to

        copy = (self.baselines or {}).get("copy_last")
        return {
            "clip": self.clip,
            "context": self.context,
            "steps": int(self.pred.shape[0]),
            "predicted_steps": list(range(self.context, self.context + self.pred.shape[0])),
            "own_actions": self.own_actions,
            "actions": self.actions.tolist(),
            "l1_per_horizon": self.errors,
            "mean_l1": None if self.errors is None else float(np.mean(self.errors)),
            "baselines": self.baselines,
            "mean_l1_vs_copy": None if self.errors is None or copy is None
            else relative_to(float(np.mean(self.errors)), float(np.mean(copy))),
            "vs_best_baseline": None if self.errors is None or not self.baselines
            else self.versus_best_baseline().to_dict(),
        }

    def versus_best_baseline(self):
        """The rollout's per-horizon errors against the better baseline's (copy-last or
        context-mean, by mean), paired by horizon (hopecli.verdict)."""
        from hopecli.baselines import LABELS
        from hopecli.verdict import best_baseline, compare

        best = best_baseline(self.baselines)
        return compare(self.errors, self.baselines[best], LABELS[best])


def rollout_clip(
    model: Predictor,
    clip: Clip,
    context: int,
    *,
    actions: np.ndarray | None = None,
    frames_per_step: int = 1,
    state: PredictorState | None = None,
    device: torch.device | str = "cpu",
) -> RolloutResult:
    """Roll a clip out from `context` steps under its own actions or `actions` [H, A].

    With its own actions the rollout runs to the clip's last step, stepping through its
    recorded states, and is scored per horizon against the true steps. Given actions
    are taken from the last context step on (the first leads to step `context`); the
    robot state then follows next_states and there is no ground truth to score against.
    """
    device = torch.device(device)
    T = clip.features.shape[0]
    last = T - 1 if actions is None else T  # own actions: a true step must remain to predict
    if not 1 <= context <= last:
        raise InputError(
            f"{clip.name}: --context {context} must be in 1..{last} for a clip of {T} steps"
        )
    z, a, s = clip.tensors(device)
    if actions is None:
        steps_actions, steps_states = a[:-1], s[:-1]  # the last step's action leads nowhere
    else:
        given = torch.as_tensor(np.asarray(actions, np.float32), device=device)
        if given.dim() != 2 or given.shape[1] != a.shape[1] or given.shape[0] < 1:
            raise InputError(f"actions must have shape [steps, {a.shape[1]}], got {list(given.shape)}")
        steps_actions = torch.cat([a[: context - 1], given])  # [context - 1 + H, A]
        robot = [s[context - 1]]
        for act in given[:-1]:
            robot.append(next_states(robot[-1][None], act[None], frames_per_step)[0])
        steps_states = torch.cat([s[: context - 1], torch.stack(robot)])
    max_frames = model.config.max_frames
    needed = steps_actions.shape[0] + (state.frames if state is not None else 0)
    if needed > max_frames:
        raise InputError(
            f"{clip.name}: a rollout through {needed} steps exceeds the run's max_frames {max_frames}"
        )
    pred, _ = rollout(model, z[None], steps_actions[None], steps_states[None], context, state=state)
    pred = pred[0].float()  # [H, P, D]
    errors = baselines = None
    if actions is None:
        from hopecli.baselines import BASELINES, context_prediction

        truth = z[context : context + pred.shape[0]]
        errors = l1_per_clip(pred, truth).tolist()
        baselines = {name: l1_per_clip(context_prediction(z[None], context, name).expand_as(truth), truth).tolist()
                     for name in BASELINES}
    return RolloutResult(
        clip=clip.name,
        context=context,
        pred=pred.cpu().numpy(),
        actions=steps_actions[context - 1 :].cpu().numpy(),
        own_actions=actions is None,
        errors=errors,
        baselines=baselines,
    )


# -- figure ----------------------------------------------------------------------------


def pca_rgb(*arrays: np.ndarray) -> list[np.ndarray]:
    """Patch features [..., D] -> RGB in [0, 1] [..., 3] by one PCA fitted on all arrays.

    Each of the first three principal components is scaled to [0, 1] between its 1st and
    99th percentile, so the same colour means the same feature direction in every panel.
    """
    flat = np.concatenate([a.reshape(-1, a.shape[-1]) for a in arrays]).astype(np.float64)
    mean = flat.mean(0)
    _, _, vt = np.linalg.svd(flat - mean, full_matrices=False)
    basis = vt[:3].T  # [D, 3]
    proj = (flat - mean) @ basis
    lo, hi = np.percentile(proj, 1, axis=0), np.percentile(proj, 99, axis=0)
    scale = np.where(hi > lo, hi - lo, 1.0)
    out = []
    for a in arrays:
        rgb = ((a.reshape(-1, a.shape[-1]) - mean) @ basis - lo) / scale
        out.append(np.clip(rgb, 0, 1).reshape(*a.shape[:-1], 3))
    return out


def rollout_figure(clip: Clip, result: RolloutResult, grid: tuple[int, int], path: str | Path,
                   goal: np.ndarray | None = None, goal_image: np.ndarray | None = None) -> Path:
    """PNG: the clip's frames (when its video is at hand) over PCA renderings of the true
    and the predicted patch features, one column per step, with the L1 error per step.

    With `goal` [P, D] (a plan's), the clip's future is not what the planned actions
    produce: only the observed (context) steps are shown, then the rollout under the
    planned actions, and the goal in a last column (its video frame `goal_image` [H, W, 3]
    above its features, when given)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hopecli.data.video import read_frames

    path = Path(path)
    truth = normalize_features(torch.from_numpy(np.asarray(clip.features, np.float32))).numpy()  # [T, P, D]
    pred = normalize_features(torch.from_numpy(result.pred)).numpy()  # [H, P, D]
    T, H, k = truth.shape[0], pred.shape[0], result.context
    if goal is not None:
        truth = truth[:k]
        goal_n = normalize_features(torch.from_numpy(np.asarray(goal, np.float32))).numpy()[None]  # [1, P, D]
        true_rgb, pred_rgb, goal_rgb = pca_rgb(truth, pred, goal_n)
        true_rgb = np.concatenate([true_rgb, np.full((H, *true_rgb.shape[1:]), np.nan), goal_rgb])
        columns = k + H + 1
    else:
        true_rgb, pred_rgb = pca_rgb(truth, pred)
        columns = max(T, k + H)
    video = None
    if clip.video is not None and clip.frames is not None:
        try:
            video = read_frames(clip.video, clip.frames.tolist())
        except InputError:
            video = None
    if goal is not None and (video is not None or goal_image is not None):
        # the observed frames, nothing under the planned steps, the goal's frame last
        video = [*(video[:k] if video is not None else [None] * k), *[None] * H, goal_image]
    rows = [("video", video), ("observed, goal" if goal is not None else "true features", true_rgb),
            ("predicted", pred_rgb)]
    rows = [(label, data) for label, data in rows if data is not None]
    fig, axes = plt.subplots(len(rows), columns, figsize=(max(1.6 * columns, 8), 1.8 * len(rows)), squeeze=False)
    for r, (label, data) in enumerate(rows):
        for t in range(columns):
            ax = axes[r, t]
            ax.set_xticks([])
            ax.set_yticks([])
            index = t - k if label == "predicted" else t
            item = data[index] if 0 <= index < len(data) else None
            if item is not None and not (np.issubdtype(np.asarray(item).dtype, np.floating) and np.isnan(item).any()):
                image = data[index] if label == "video" else data[index].reshape(*grid, 3)
                ax.imshow(image, interpolation="nearest")
            else:  # no panel, but keep the axes so the row label shows
                for spine in ax.spines.values():
                    spine.set_visible(False)
            if r == 0:
                last = goal is not None and t == columns - 1
                ax.set_title("goal" if last else f"step {t}" + (" (ctx)" if t < k else ""), fontsize=8)
            if label == "predicted" and 0 <= index < H and result.errors is not None:
                ax.set_xlabel(f"L1 {result.errors[index]:.3f}", fontsize=7)
            if t == 0:
                ax.set_ylabel(label, fontsize=8)
    how = "own actions" if result.own_actions else "planned actions" if goal is not None else "given actions"
    fig.suptitle(f"{clip.name}: rollout from {k} context step(s), {how}; PCA of patch features as RGB",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# -- output ----------------------------------------------------------------------------


def write_prediction(result: RolloutResult, path: str | Path) -> Path:
    """Predictions as .npy ([H, P, D] float32) or .zarr (pred, actions, l1 per horizon, attrs)."""
    import zarr

    path = Path(path)
    if path.suffix == ".npy":
        np.save(path, result.pred.astype(np.float32))
    elif path.suffix == ".zarr":
        group = zarr.open_group(str(path), mode="w", attributes=result.to_dict())
        group.create_array("pred", data=result.pred.astype(np.float32))
        group.create_array("actions", data=result.actions.astype(np.float32))
        if result.errors is not None:
            group.create_array("l1_per_horizon", data=np.asarray(result.errors, np.float32))
    else:
        raise InputError(f"{path}: predictions are written as .npy or .zarr")
    return path
