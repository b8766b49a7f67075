"""Test-time adaptation on a new clip: the library behind `hope adapt`.

A clip is streamed step by step through the predictor, each step predicting the next
one (teacher forcing, one frame per call). The adapting model lets its Titan memories
write themselves as they read (in-context learning, HOPE's point) and, with CMS online,
its CMS levels learn from the next-step error: every step the L1 error of the step just
predicted is back-propagated to the CMS weights and the gradient accumulated; level l
takes a step every C^(l) frames (its period, the same counts as in training) along what
has accumulated, scaled per tensor to unit RMS so that cms_lr is the typical change per
weight, as an Adam step's size is (a plain gradient step would depend on the scale of
each tensor's gradient, which differs by orders of magnitude between levels and layers).
Nothing but weights and the pending gradients is kept, so the state stays small.
Beside it the same model runs with memory updates frozen and fixed CMS weights, and
optionally a ViT baseline run, on the same steps.

What adaptation changes is an `AdaptState` value (memory states, CMS weights, pending
CMS gradients, frames learned from); `save_state` / `load_state` carry it to a later
adapt or rollout. Each clip window starts a new stream for attention and frame positions
(KV caches and frame counts are per window); what carries is what was learned.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import safe_open, save_file
from torch import Tensor
from torch.func import functional_call

from hopecli.errors import CheckpointError, HopeError
from hopecli.model import Predictor, PredictorState
from hopecli.model.blocks import HopeBlock
from hopecli.model.memory import TitanState
from hopecli.rollout import Clip
from hopecli.train.losses import l1_per_clip

STATE_FORMAT = "hope-adapt-state/1"


@dataclass(frozen=True)
class AdaptConfig:
    """cms_online: the CMS levels learn online, each at its period, cms_lr per weight and step."""

    cms_online: bool = False
    cms_lr: float = 1e-4

    def __post_init__(self) -> None:
        if not self.cms_lr > 0:
            raise ValueError(f"cms_lr must be positive, got {self.cms_lr!r}")


@dataclass
class AdaptState:
    """What a stream has learned, per block and per CMS parameter (batch of one)."""

    memories: tuple[TitanState | None, ...]  # per block: Titan state (H, L) or None (T)
    cms: dict[str, Tensor]  # CMS parameter name -> current weights
    cms_grads: dict[str, Tensor]  # gradients accumulated since each level's last step
    frames: int = 0  # frames the CMS has learned from (the periods count these)

    def predictor_state(self) -> PredictorState:
        """The start of a new window's stream: these memories, empty KV caches, frame 0."""
        return PredictorState(self.memories, 0)  # type: ignore[arg-type]  # None = empty cache


def cms_periods(model: Predictor) -> dict[str, int]:
    """Name -> update period of every CMS parameter (from model.parameter_groups())."""
    period = {id(p): g.period for g in model.parameter_groups() if g.kind == "cms" for p in g.params}
    return {name: period[id(p)] for name, p in model.named_parameters() if id(p) in period}


def initial_state(model: Predictor) -> AdaptState:
    """The trained model as it is: meta-learned initial memories, trained CMS weights."""
    memories = []
    for block in model.blocks:
        m = block.memory.init_state(1).detach() if isinstance(block, HopeBlock) else None
        memories.append(None if m is None else TitanState(tuple(w.clone() for w in m.layers), m.step.clone()))
    params = dict(model.named_parameters())
    cms = {name: params[name].detach().clone() for name in cms_periods(model)}
    return AdaptState(tuple(memories), cms, {n: torch.zeros_like(w) for n, w in cms.items()}, 0)


def stream(
    model: Predictor,
    clip: Clip,
    start: AdaptState,
    *,
    update_memory: bool,
    learn_cms: bool = False,
    cms_lr: float = AdaptConfig.cms_lr,
    device: torch.device | str = "cpu",
) -> tuple[list[float], AdaptState]:
    """Next-step L1 errors of steps 1..T-1 of one clip window, and the state after it."""
    z, a, s = clip.tensors(torch.device(device))
    periods = cms_periods(model)
    cms = dict(start.cms)
    grads = dict(start.cms_grads)
    frames = start.frames
    state = start.predictor_state()
    errors: list[float] = []
    for t in range(z.shape[0] - 1):
        inputs = (z[None, t, None], a[None, t, None], s[None, t, None])  # one frame [1, 1, ...]
        kwargs = {"state": state, "update_memory": update_memory}
        if learn_cms and cms:
            params = {n: w.detach().requires_grad_(True) for n, w in cms.items()}
            with torch.enable_grad():
                out = functional_call(model, params, inputs, kwargs)
                error = l1_per_clip(out.pred[:, -1], z[None, t + 1])[0]
                step_grads = torch.autograd.grad(error, list(params.values()))
            frames += 1
            for (name, w), g in zip(params.items(), step_grads):
                grads[name] = grads[name] + g
                if frames % periods[name] == 0:  # level's own frequency, counted in frames
                    g_acc = grads[name]
                    step = g_acc / g_acc.pow(2).mean().sqrt().clamp_min(1e-12)  # unit RMS
                    cms[name] = (w - cms_lr * step).detach()
                    grads[name] = torch.zeros_like(g)
        else:
            with torch.no_grad():
                out = functional_call(model, cms, inputs, kwargs)
                error = l1_per_clip(out.pred[:, -1], z[None, t + 1])[0]
        errors.append(float(error.detach()))
        state = out.state.detach()
    memories = tuple(m if isinstance(m, TitanState) else None for m in state.blocks)
    return errors, AdaptState(memories, cms, grads, frames)


@dataclass
class StepError:
    clip: str  # clip window
    step: int  # the predicted step of that window
    adapting: float
    frozen: float
    baseline: float | None = None


@dataclass
class AdaptReport:
    clips: list[str]  # the clip files, in order
    cms_online: bool
    carry: bool
    has_memory: bool  # whether the model has any Titan memory or CMS to adapt
    steps: list[StepError] = field(default_factory=list)

    def mean(self, which: str) -> float | None:
        values = [getattr(s, which) for s in self.steps]
        return None if not values or values[0] is None else float(np.mean(values))

    @property
    def helped(self) -> bool:
        return self.mean("adapting") < self.mean("frozen")

    def verdict(self) -> str:
        """One plain sentence: did adaptation lower the mean next-step error?"""
        adapting, frozen = self.mean("adapting"), self.mean("frozen")
        change = (adapting - frozen) / frozen if frozen else 0.0
        numbers = f"mean next-step L1 {adapting:.5f} adapting vs {frozen:.5f} frozen ({100 * change:+.3g}%)"
        if not self.has_memory:
            return f"Nothing to adapt: the model has no Titan memory or CMS; {numbers}."
        if adapting == frozen:
            return f"Adaptation changed nothing: {numbers}."
        return f"Adaptation {'helped' if self.helped else 'did not help'}: {numbers}."

    def to_dict(self) -> dict:
        return {
            "clips": self.clips,
            "cms_online": self.cms_online,
            "carry": self.carry,
            "steps": [vars(s) for s in self.steps],
            "mean_adapting": self.mean("adapting"),
            "mean_frozen": self.mean("frozen"),
            "mean_baseline": self.mean("baseline"),
            "helped": self.helped,
            "verdict": self.verdict(),
        }


def adapt(
    model: Predictor,
    clips: Sequence[Sequence[Clip]],
    names: Sequence[str],
    cfg: AdaptConfig = AdaptConfig(),
    *,
    start: AdaptState | None = None,
    carry: bool = False,
    baseline: Predictor | None = None,
    device: torch.device | str = "cpu",
) -> tuple[AdaptReport, AdaptState]:
    """Stream clips (each a list of its windows, in time order) through the model.

    Every clip starts from `start` (default: initial_state) unless `carry`, which goes on
    from the state the previous clip left; the windows of one clip always carry. Returns
    the report and the adapted state after the last clip.
    """
    if len(clips) != len(names) or not clips:
        raise ValueError(f"need one name per clip and at least one clip, got {len(clips)} clips and "
                         f"{len(names)} names")
    start = start or initial_state(model)
    has_memory = any(m is not None for m in start.memories) or (cfg.cms_online and bool(start.cms))
    report = AdaptReport(list(names), cfg.cms_online, carry, has_memory)
    state = start
    for windows in clips:
        if not carry:
            state = start
        for clip in windows:
            adapting, state = stream(model, clip, state, update_memory=True, learn_cms=cfg.cms_online,
                                     cms_lr=cfg.cms_lr, device=device)
            frozen, _ = stream(model, clip, start, update_memory=False, device=device)
            base = [None] * len(adapting)
            if baseline is not None:
                base, _ = stream(baseline, clip, initial_state(baseline), update_memory=True, device=device)
            for t, (e_a, e_f, e_b) in enumerate(zip(adapting, frozen, base)):
                report.steps.append(StepError(clip.name, t + 1, e_a, e_f, e_b))
    return report, state


# -- saving and loading the adapted state ---------------------------------------------


def save_state(state: AdaptState, model: Predictor, path: str | Path, *, note: str = "") -> Path:
    """Write the state as safetensors, with the predictor config to check against on load."""
    path = Path(path)
    tensors: dict[str, Tensor] = {}
    for i, memory in enumerate(state.memories):
        if memory is not None:
            for j, w in enumerate(memory.layers):
                tensors[f"memory.{i}.layer{j}"] = w
            tensors[f"memory.{i}.step"] = memory.step
    tensors.update({f"cms.{n}": w for n, w in state.cms.items()})
    tensors.update({f"cms_grad.{n}": g for n, g in state.cms_grads.items()})
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    metadata = {"format": STATE_FORMAT, "frames": str(state.frames),
                "model": json.dumps(model.config.to_dict(), sort_keys=True), "note": note}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=metadata)
    return path


def load_state(path: str | Path, model: Predictor, device: torch.device | str = "cpu") -> AdaptState:
    """Read a state written by save_state for this model; CheckpointError if it does not fit."""
    path = Path(path)
    if not path.is_file():
        raise HopeError(f"{path}: no such adapted-state file")
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from e
    if metadata.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{path}: not an adapted state written by `hope adapt --save`")
    if json.loads(metadata["model"]) != json.loads(json.dumps(model.config.to_dict(), sort_keys=True)):
        raise CheckpointError(f"{path}: saved from a predictor with another configuration than this run's")
    reference = initial_state(model)
    memories = []
    try:
        for i, memory in enumerate(reference.memories):
            if memory is None:
                memories.append(None)
                continue
            layers = tuple(tensors[f"memory.{i}.layer{j}"] for j in range(len(memory.layers)))
            memories.append(TitanState(layers, tensors[f"memory.{i}.step"]))
        cms = {n: tensors[f"cms.{n}"] for n in reference.cms}
        grads = {n: tensors[f"cms_grad.{n}"] for n in reference.cms}
    except KeyError as e:
        raise CheckpointError(f"{path}: missing tensor {e.args[0]!r}") from e
    return AdaptState(tuple(memories), cms, grads, int(metadata["frames"]))


def with_state(model: Predictor, state: AdaptState) -> tuple[Predictor, PredictorState]:
    """A copy of the model carrying the state's CMS weights, and the state to stream from
    (for rollout and planning, which call the model directly)."""
    import copy

    adapted = copy.deepcopy(model)
    adapted.load_state_dict(state.cms, strict=False)
    return adapted, state.predictor_state()


def adapt_figure(report: AdaptReport, path: str | Path) -> Path:
    """PNG: next-step error per streamed step, adapting vs frozen (vs baseline)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    x = np.arange(1, len(report.steps) + 1)
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.plot(x, [s.adapting for s in report.steps], "o-", ms=3,
            label=f"adapting{' + CMS online' if report.cms_online else ''} ({report.mean('adapting'):.4f})")
    ax.plot(x, [s.frozen for s in report.steps], "s--", ms=3,
            label=f"memory frozen ({report.mean('frozen'):.4f})")
    if report.mean("baseline") is not None:
        ax.plot(x, [s.baseline for s in report.steps], "^:", ms=3,
                label=f"ViT baseline ({report.mean('baseline'):.4f})")
    for i in range(1, len(report.steps)):
        if report.steps[i].clip != report.steps[i - 1].clip:
            ax.axvline(i + 0.5, color="grey", lw=0.6, ls=":")
    ax.set_xlabel("streamed step (dotted lines: next clip window)")
    ax.set_ylabel("next-step L1 error")
    ax.set_title(report.verdict(), fontsize=8)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
