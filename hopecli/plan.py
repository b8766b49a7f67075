"""Planning with the world model: the cross-entropy method over action sequences (MPC).

As V-JEPA 2-AC plans (`notebooks/utils/mpc_utils.py`): a Gaussian over action sequences
of `horizon` steps starts at the middle of the action bounds with a standard deviation of
half their range; every iteration draws `samples` sequences, clips them to the bounds,
scores each with an energy (lower is better), keeps the `top_k` elites and moves the mean
and standard deviation toward the elites' with momentum (new = (1 - m) elite + m old).
The plan is the final mean. With the world model the energy of a sequence is the mean
L1 distance between the last predicted step and the goal's features, both layer-normed;
all candidates are rolled out at once as one batch, from the predictor state of the
context (memory states / KV caches) expanded over the candidates. MPC takes the plan's
first action, advances the model one step with it and plans again from there.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from hopecli.errors import InputError
from hopecli.model import Predictor, PredictorState
from hopecli.rollout import expand_state, next_states
from hopecli.train.losses import normalize_features

Energy = Callable[[Tensor], Tensor]  # actions [N, H, A] -> energy [N]


@dataclass(frozen=True)
class CEMConfig:
    """Search settings; the defaults are V-JEPA 2-AC's (momentum of the std: its notebooks')."""

    samples: int = 400
    top_k: int = 10
    iterations: int = 10
    horizon: int = 2
    momentum_mean: float = 0.15
    momentum_std: float = 0.75

    def __post_init__(self) -> None:
        for name in ("samples", "iterations", "horizon"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.top_k, int) or not 2 <= self.top_k <= self.samples:
            raise ValueError(f"top_k must be an integer in [2, samples={self.samples}], got {self.top_k!r}")
        for name in ("momentum_mean", "momentum_std"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)!r}")


@dataclass
class CEMResult:
    actions: Tensor  # [H, A], the final mean
    energy: float  # energy of the best sample of the last iteration
    best_per_iteration: list[float] = field(default_factory=list)


def cem(
    energy: Energy,
    low: Tensor,
    high: Tensor,
    cfg: CEMConfig = CEMConfig(),
    *,
    generator: torch.Generator | None = None,
) -> CEMResult:
    """Minimise energy(actions [N, H, A]) -> [N] over sequences within [low, high] ([A] each)."""
    low = torch.as_tensor(low, dtype=torch.float32)
    high = torch.as_tensor(high, dtype=torch.float32).to(low.device)
    if low.dim() != 1 or low.shape != high.shape or not bool((high > low).all()):
        raise ValueError(
            f"action bounds need low < high per dim, got low {low.tolist()!r}, high {high.tolist()!r}"
        )
    A = low.shape[0]
    mean = ((low + high) / 2).expand(cfg.horizon, A).clone()  # [H, A]
    std = ((high - low) / 2).expand(cfg.horizon, A).clone()
    best: list[float] = []
    for _ in range(cfg.iterations):
        noise = torch.randn(cfg.samples, cfg.horizon, A, generator=generator,
                            device=generator.device if generator is not None else low.device).to(low.device)
        samples = torch.clamp(mean + std * noise, low, high)  # [N, H, A]
        scores = energy(samples).float()  # [N]
        if scores.shape != (cfg.samples,):
            raise ValueError(f"energy must return [{cfg.samples}], got {tuple(scores.shape)!r}")
        top = torch.topk(scores, cfg.top_k, largest=False)
        elites = samples[top.indices]  # [k, H, A]
        mean = (1 - cfg.momentum_mean) * elites.mean(0) + cfg.momentum_mean * mean
        std = (1 - cfg.momentum_std) * elites.std(0) + cfg.momentum_std * std
        best.append(float(top.values[0]))
    return CEMResult(actions=mean, energy=best[-1], best_per_iteration=best)


def goal_energy(pred: Tensor, goal: Tensor) -> Tensor:
    """Mean L1 between layer-normed predictions [N, P, D] and the layer-normed goal [P, D] -> [N]."""
    return (normalize_features(pred) - normalize_features(goal)).abs().flatten(1).mean(1)


@torch.no_grad()
def rollout_energy(
    model: Predictor,
    state: PredictorState | None,
    frame: Tensor,
    robot_state: Tensor,
    goal: Tensor,
    frames_per_step: int,
) -> Energy:
    """Energy of action sequences rolled out from the current step.

    state: the predictor state after the steps before the current one (None at the start);
    frame [P, D_in]: the current step's features (layer-normed); robot_state [S]; goal [P, D_in].
    """

    def energy(actions: Tensor) -> Tensor:  # [N, H, A] -> [N]
        return goal_energy(roll_out_last(model, state, frame, robot_state, actions, frames_per_step), goal)

    return energy


def roll_out_last(model: Predictor, state: PredictorState | None, frame: Tensor, robot_state: Tensor,
                  actions: Tensor, frames_per_step: int) -> Tensor:
    """The last predicted step [N, P, D_in] (layer-normed) of N action sequences [N, H, A]
    rolled out in one batch from the current step (rollout_energy's arguments)."""
    n, horizon, _ = actions.shape
    st = expand_state(state, n)
    z = frame.expand(n, *frame.shape)  # [N, P, D]
    s = robot_state.expand(n, *robot_state.shape)  # [N, S]
    for h in range(horizon):
        # the last step's state is dropped: its memories make only the writes its output reads
        out = model(z[:, None], actions[:, h, None], s[:, None], state=st, keep_state=h + 1 < horizon)
        z = normalize_features(out.pred[:, -1])
        s = next_states(s, actions[:, h], frames_per_step)
        st = out.state
    return z


@dataclass
class PlanStep:
    actions: list[list[float]]  # [H, A] planned sequence; actions[0] is executed
    energy: float
    seconds: float


@dataclass
class PlanResult:
    steps: list[PlanStep]

    @property
    def executed(self) -> list[list[float]]:
        return [s.actions[0] for s in self.steps]

    def to_dict(self) -> dict:
        return {
            "executed_actions": self.executed,
            "steps": [{"actions": s.actions, "energy": s.energy, "seconds": s.seconds} for s in self.steps],
            "mean_seconds_per_step": sum(s.seconds for s in self.steps) / len(self.steps),
        }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def plan_to_goal(
    model: Predictor,
    features: Tensor,
    actions: Tensor,
    states: Tensor,
    goal: Tensor,
    low: Tensor,
    high: Tensor,
    *,
    mpc_steps: int = 1,
    frames_per_step: int = 1,
    cfg: CEMConfig = CEMConfig(),
    generator: torch.Generator | None = None,
    state: PredictorState | None = None,
    on_step: Callable[[int, PlanStep], None] | None = None,
) -> PlanResult:
    """MPC toward `goal` [P, D_in] from the context features [k, P, D_in] (layer-normed).

    actions [k, A] and states [k, S] of the context: the actions before the last context
    step are the ones that led to it; the last step's action is what is planned. Each of
    `mpc_steps` steps runs CEM, executes the first action in the model (its prediction
    becomes the current step) and plans again. `state` continues an earlier stream.
    """
    if mpc_steps < 1:
        raise ValueError(f"mpc_steps must be >= 1, got {mpc_steps!r}")
    k = features.shape[0]
    device = features.device
    frames = k - 2 + mpc_steps + cfg.horizon + (state.frames if state is not None else 0)
    if frames > model.config.max_frames:
        raise InputError(
            f"planning through {frames} steps ({k} context, {mpc_steps} MPC steps, horizon {cfg.horizon}) "
            f"exceeds the predictor's max_frames {model.config.max_frames}"
        )
    if k > 1:
        state = model(features[None, :-1], actions[None, :-1], states[None, :-1], state=state).state
    frame, s = features[-1], states[-1]
    low, high = low.to(device), high.to(device)
    steps: list[PlanStep] = []
    for i in range(mpc_steps):
        _sync(device)
        started = time.perf_counter()
        energy = rollout_energy(model, state, frame, s, goal, frames_per_step)
        result = cem(energy, low, high, cfg, generator=generator)
        first = result.actions[0]  # [A]
        out = model(frame[None, None], first[None, None], s[None, None], state=state)
        _sync(device)
        step = PlanStep(result.actions.tolist(), result.energy, time.perf_counter() - started)
        steps.append(step)
        if on_step is not None:
            on_step(i, step)
        state = out.state
        frame = normalize_features(out.pred[0, -1])
        s = next_states(s[None], first[None], frames_per_step)[0]
    return PlanResult(steps)


@torch.no_grad()
def score_sequences(
    model: Predictor,
    features: Tensor,
    actions: Tensor,
    states: Tensor,
    goal: Tensor,
    sequences: dict[str, Tensor],
    *,
    frames_per_step: int = 1,
    state: PredictorState | None = None,
) -> tuple[dict[str, float], dict[str, Tensor]]:
    """The energy (as CEM scores it) of named action sequences [H, A] from the last context
    step, and the same per patch: did the planned actions get closer to the goal than, say,
    the clip's own or none? One rollout of the context and of every sequence gives both.

    features [k, P, D_in] (layer-normed), actions [k, A], states [k, S] of the context, as
    plan_to_goal takes them; every sequence must have the same length H. Returns
    ({name: energy}, {name: [P]}), the second the mean L1 of each patch of the last
    predicted step to the goal's; the patches pair two sequences for the plan's verdict.
    """
    if features.shape[0] > 1:
        state = model(features[None, :-1], actions[None, :-1], states[None, :-1], state=state).state
    seqs = torch.stack([seq.to(features.device, torch.float32) for seq in sequences.values()])  # [N, H, A]
    z = roll_out_last(model, state, features[-1], states[-1], seqs, frames_per_step)
    per_patch = (normalize_features(z) - normalize_features(goal)).abs().mean(-1)  # [N, P]
    return dict(zip(sequences, goal_energy(z, goal).tolist())), dict(zip(sequences, per_patch.cpu()))


def sequence_energies(model: Predictor, features: Tensor, actions: Tensor, states: Tensor, goal: Tensor,
                      sequences: dict[str, Tensor], **kwargs) -> dict[str, float]:
    """score_sequences' energies alone: {name: energy}."""
    return score_sequences(model, features, actions, states, goal, sequences, **kwargs)[0]
