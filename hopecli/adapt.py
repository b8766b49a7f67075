"""Test-time adaptation on a new clip: the library behind `hope adapt`.

A clip is streamed step by step through the predictor, each step predicting the next
one (teacher forcing, one frame per call), and the next-step L1 error of every step is
recorded. Methods of adaptation, compared with the same model frozen (memory updates
off, weights fixed) on the same steps:

- `memory`: HOPE's in-context learning. The Titan memories write themselves as they
  read and, with CMS online, the CMS levels learn from the next-step error: the error
  of every step is back-propagated to the CMS weights and the gradient accumulated;
  level l takes a step every C^(l) frames (its period, the same counts as in training)
  along what has accumulated, scaled per tensor to unit RMS so that cms_lr is the
  typical change per weight, as an Adam step's size is (a plain gradient step would
  depend on the scale of each tensor's gradient, which differs by orders of magnitude
  between levels and layers).
- `layernorm`: TENT-style test-time adaptation (Wang et al., ICLR 2021), as the seeds'
  earlier pipeline did it, with memory updates frozen: only the weight and bias of
  every LayerNorm learn, by Adam (tta_lr) on the same self-supervised next-step error,
  one step every tta_every frames with the gradients summed in between.
- `both`: the memory updates (and CMS online, if asked) together with TENT; the
  LayerNorms inside the CMS levels then learn by TENT, the rest of the CMS by its own rule.

Prediction first, then learning: the error of step t+1 is scored with the weights
learned from the steps before, and only then does its gradient reach any weight, so no
step is ever scored by a model that has seen its target. A ViT baseline run can stream
beside, adapted by TENT when a requested method includes layernorm, so both models are
compared on equal terms; the baseline also streams frozen, and its adaptation is judged
against that, not against the frozen HOPE model. The copy-last and context-mean
baselines (hopecli.baselines) are scored on the same steps from the same window's steps.

A method "helped" (or "hurt") only when its change beats the step-to-step spread: the
per-step differences from the same model frozen agree (a paired sign-flip test,
hopecli.verdict.sign_flip_p, p < SIGNIFICANCE) and their mean is larger than the standard error of the
frozen model's mean error; anything less is "no clear change".

What adaptation changes is an `AdaptState` value (memory states, learned weights,
pending gradients, Adam moments, frames learned from); each clip starts afresh from the
start state unless carried, and `save_state` / `load_state` carry it to a later adapt or
rollout. Each clip window starts a new stream for attention and frame positions (KV
caches and frame counts are per window); what carries is what was learned.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import safe_open, save_file
from torch import Tensor, nn
from torch.func import functional_call

from hopecli.baselines import BASELINES, LABELS as BASELINE_LABELS, next_step_predictions
from hopecli.clips import Clip
from hopecli.errors import CheckpointError, HopeError
from hopecli.model import Predictor, PredictorState
from hopecli.model.blocks import HopeBlock
from hopecli.model.memory import TitanState
from hopecli.runs.folder import atomic_write
from hopecli.train.losses import l1_per_clip
from hopecli.verdict import SIGNIFICANCE, sign_flip_p

STATE_FORMAT = "hope-adapt-state/2"
FROZEN = "frozen"
METHODS = ("memory", "layernorm", "both")
BASELINE = "baseline"
BASELINE_FROZEN = "baseline_frozen"  # the baseline run, frozen: what its adaptation is compared with
# what learns under each way of streaming: (Titan memories write, CMS may learn online, LayerNorms learn)
LEARNING = {
    FROZEN: (False, False, False),
    "memory": (True, True, False),
    "layernorm": (False, False, True),
    "both": (True, True, True),
}
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


@dataclass(frozen=True)
class AdaptConfig:
    """methods: the adaptations compared with the frozen model (any of METHODS, in order).
    cms_online: under memory / both, the CMS levels also learn, each at its period, cms_lr
    per weight and step. tta_lr, tta_every: Adam learning rate of the LayerNorm (TENT)
    updates and the frames per Adam step."""

    methods: tuple[str, ...] = ("memory",)
    cms_online: bool = False
    cms_lr: float = 1e-4
    tta_lr: float = 1e-4
    tta_every: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "methods", tuple(self.methods))
        if not self.methods:
            raise ValueError("methods must name at least one of memory, layernorm, both")
        for m in self.methods:
            if m not in METHODS:
                raise ValueError(f"unknown adaptation method {m!r}; use memory, layernorm or both")
        if len(set(self.methods)) != len(self.methods):
            raise ValueError(f"methods must not repeat, got {self.methods!r}")
        if self.cms_online and not any(LEARNING[m][1] for m in self.methods):
            raise ValueError(f"cms_online needs the memory or both method, got methods {self.methods!r}")
        if not self.cms_lr > 0:
            raise ValueError(f"cms_lr must be positive, got {self.cms_lr!r}")
        if not self.tta_lr > 0:
            raise ValueError(f"tta_lr must be positive, got {self.tta_lr!r}")
        if not (isinstance(self.tta_every, int) and self.tta_every >= 1):
            raise ValueError(f"tta_every must be an integer >= 1, got {self.tta_every!r}")

    @property
    def layernorm(self) -> bool:
        """Whether any requested method lets the LayerNorms learn."""
        return any(LEARNING[m][2] for m in self.methods)


@dataclass
class AdaptState:
    """What a stream has learned (batch of one).

    weights holds the current value of every parameter adaptation may change (CMS and
    LayerNorm parameters, by name); grads the gradients summed since each one's last step.
    """

    memories: tuple[TitanState | None, ...]  # per block: Titan state (H, L) or None (T)
    weights: dict[str, Tensor]  # parameter name -> current value
    grads: dict[str, Tensor]  # parameter name -> gradient pending since its last step
    adam_m: dict[str, Tensor]  # LayerNorm parameter name -> Adam first moment
    adam_v: dict[str, Tensor]  # LayerNorm parameter name -> Adam second moment
    frames: int = 0  # frames learned from (the CMS periods and tta_every count these)
    adam_steps: int = 0  # LayerNorm Adam steps taken (for Adam's bias correction)

    def predictor_state(self) -> PredictorState:
        """The start of a new window's stream: these memories, empty KV caches, frame 0."""
        return PredictorState(self.memories, 0)  # type: ignore[arg-type]  # None = empty cache


def cms_periods(model: Predictor) -> dict[str, int]:
    """Name -> update period of every CMS parameter (from model.parameter_groups())."""
    period = {id(p): g.period for g in model.parameter_groups() if g.kind == "cms" for p in g.params}
    return {name: period[id(p)] for name, p in model.named_parameters() if id(p) in period}


def layernorm_names(model: nn.Module) -> list[str]:
    """Names of the weight and bias of every LayerNorm in the model (TENT's parameters)."""
    return [name for module_name, m in model.named_modules() if isinstance(m, nn.LayerNorm)
            for name, _ in m.named_parameters(prefix=module_name, recurse=False)]


def initial_state(model: Predictor) -> AdaptState:
    """The trained model as it is: meta-learned initial memories, trained weights, no moments."""
    memories = []
    for block in model.blocks:
        m = block.memory.init_state(1).detach() if isinstance(block, HopeBlock) else None
        memories.append(None if m is None else m.map(torch.clone))
    params = dict(model.named_parameters())
    norms = layernorm_names(model)
    names = list(dict.fromkeys([*cms_periods(model), *norms]))
    weights = {n: params[n].detach().clone() for n in names}
    zeros = {n: torch.zeros_like(weights[n]) for n in names}
    return AdaptState(tuple(memories), weights, zeros, {n: zeros[n].clone() for n in norms},
                      {n: zeros[n].clone() for n in norms})


def adam_step(w: Tensor, g: Tensor, m: Tensor, v: Tensor, step: int, lr: float) -> tuple[Tensor, Tensor, Tensor]:
    """One Adam step with bias correction (betas 0.9 / 0.999, eps 1e-8), as values:
    weight, gradient, moments, the step's number (from 1) -> (weight, m, v)."""
    b1, b2 = ADAM_BETAS
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    denom = (v / (1 - b2**step)).sqrt() + ADAM_EPS
    return w - lr * (m / (1 - b1**step)) / denom, m, v


def stream(
    model: Predictor,
    clip: Clip,
    start: AdaptState,
    method: str = FROZEN,
    cfg: AdaptConfig = AdaptConfig(),
    *,
    device: torch.device | str = "cpu",
) -> tuple[list[float], AdaptState]:
    """Next-step L1 errors of steps 1..T-1 of one clip window under `method` (FROZEN or
    one of METHODS, with cfg's rates), and the state after it.

    Every step is scored before it is learned from: the error of step t+1 is recorded
    from the prediction made with what was learned up to step t, then its gradient is
    taken and the weights step.
    """
    if method not in LEARNING:
        raise ValueError(f"unknown method {method!r}; use {FROZEN}, memory, layernorm or both")
    update_memory, cms_rule, tent = LEARNING[method]
    z, a, s = clip.tensors(torch.device(device))
    norms = layernorm_names(model) if tent else []
    cms_online = cms_rule and cfg.cms_online
    periods = {n: p for n, p in cms_periods(model).items() if n not in norms} if cms_online else {}
    learned = [*periods, *norms]
    weights, grads = dict(start.weights), dict(start.grads)
    adam_m, adam_v = dict(start.adam_m), dict(start.adam_v)
    frames, adam_steps = start.frames, start.adam_steps
    state = start.predictor_state()
    errors: list[float] = []
    for t in range(z.shape[0] - 1):
        inputs = (z[None, t, None], a[None, t, None], s[None, t, None])  # one frame [1, 1, ...]
        params = {**weights, **{n: weights[n].detach().requires_grad_(True) for n in learned}}
        with torch.set_grad_enabled(bool(learned)):
            out = functional_call(model, params, inputs, {"state": state, "update_memory": update_memory})
            error = l1_per_clip(out.pred[:, -1], z[None, t + 1])[0]
        errors.append(float(error.detach()))  # scored; only now is step t+1 learned from
        state = out.state.detach()
        if not learned:
            continue
        frames += 1
        for name, g in zip(learned, torch.autograd.grad(error, [params[n] for n in learned])):
            grads[name] = grads[name] + g
        for name, period in periods.items():
            if frames % period == 0:  # level's own frequency, counted in frames
                g = grads[name]
                weights[name] = weights[name] - cfg.cms_lr * g / g.pow(2).mean().sqrt().clamp_min(1e-12)
                grads[name] = torch.zeros_like(g)
        if norms and frames % cfg.tta_every == 0:
            adam_steps += 1
            for name in norms:
                weights[name], adam_m[name], adam_v[name] = adam_step(
                    weights[name], grads[name], adam_m[name], adam_v[name], adam_steps, cfg.tta_lr)
                grads[name] = torch.zeros_like(grads[name])
    memories = tuple(m if isinstance(m, TitanState) else None for m in state.blocks)
    return errors, AdaptState(memories, weights, grads, adam_m, adam_v, frames, adam_steps)


@dataclass
class StepError:
    clip: str  # clip window
    step: int  # the predicted step of that window
    # column (FROZEN, each method, BASELINE, copy_last, context_mean) -> next-step L1 error
    errors: dict[str, float]


@dataclass
class AdaptReport:
    clips: list[str]  # the clip files, in order
    config: AdaptConfig
    carry: bool
    has_memory: bool  # whether the model has any Titan memory or online CMS to adapt
    baseline: bool  # whether a baseline run streamed beside
    steps: list[StepError] = field(default_factory=list)

    @property
    def columns(self) -> list[str]:
        return [FROZEN, *self.config.methods, *([BASELINE_FROZEN, BASELINE] if self.baseline else []), *BASELINES]

    @property
    def compared(self) -> list[str]:
        """The adapted columns, each judged against its own model frozen (reference())."""
        return [*self.config.methods, *([BASELINE] if self.baseline else [])]

    def reference(self, column: str) -> str:
        """The frozen column a column is compared with: the baseline's own for the baseline."""
        return BASELINE_FROZEN if column == BASELINE else FROZEN

    def label(self, column: str) -> str:
        """The column's name in tables and figures."""
        if column == BASELINE_FROZEN:
            return "ViT baseline frozen"
        if column == BASELINE:
            return "ViT baseline" + (" + layernorm" if self.config.layernorm else "")
        if column in BASELINE_LABELS:
            return BASELINE_LABELS[column]
        if column == "memory" and self.config.cms_online:
            return "memory + CMS online"
        if column == "both" and self.config.cms_online:
            return "both (+ CMS online)"
        return column

    def mean(self, column: str) -> float:
        return float(np.mean([s.errors[column] for s in self.steps]))

    def change(self, column: str) -> float:
        """Mean error relative to its frozen reference's: (column - frozen) / frozen."""
        frozen = self.mean(self.reference(column))
        return (self.mean(column) - frozen) / frozen if frozen else 0.0

    def p_value(self, column: str) -> float:
        """Paired sign-flip test of the per-step differences from its frozen reference."""
        ref = self.reference(column)
        return sign_flip_p([s.errors[column] - s.errors[ref] for s in self.steps])

    def spread(self, column: str) -> float:
        """Standard error of the frozen reference's mean: its step-to-step spread / sqrt(steps)."""
        errors = [s.errors[self.reference(column)] for s in self.steps]
        return float(np.std(errors, ddof=1) / np.sqrt(len(errors))) if len(errors) > 1 else float("inf")

    def outcome(self, column: str) -> str:
        """"helped" / "hurt" when the change beats the step-to-step spread: consistent over
        the steps (paired sign-flip test, p < SIGNIFICANCE) and larger than the standard
        error of the frozen mean; "no clear change" otherwise, "changed nothing" at 0."""
        delta = self.mean(column) - self.mean(self.reference(column))
        if delta == 0:
            return "changed nothing"
        if self.p_value(column) >= SIGNIFICANCE or abs(delta) <= self.spread(column):
            return "no clear change"
        return "helped" if delta < 0 else "hurt"

    def helped(self, method: str) -> bool:
        return self.outcome(method) == "helped"

    def rule(self) -> str:
        """How helped / hurt is decided, in one sentence."""
        return (f"helped / hurt: the change beats the step-to-step spread: the {len(self.steps)} per-step "
                f"differences from the same model frozen agree (paired sign-flip test, p < {SIGNIFICANCE:g}) "
                f"and their mean exceeds the standard error of the frozen mean error")

    def verdict(self) -> str:
        """One plain sentence: which methods lowered the mean next-step error beyond noise?"""
        parts = []
        for m in self.compared:
            numbers = f"{self.label(m)} {self.mean(m):.5f}"
            if m == "memory" and not self.has_memory:
                parts.append(f"{numbers} (nothing to adapt: no Titan memory or CMS)")
            elif self.outcome(m) == "changed nothing":
                parts.append(f"{numbers} (changed nothing)")
            else:
                parts.append(f"{numbers} ({100 * self.change(m):+.3g}%, {self.outcome(m)}, "
                             f"p = {self.p_value(m):.2g})")
            if m == BASELINE:
                parts[-1] = f"ViT baseline {self.mean(BASELINE_FROZEN):.5f} frozen, " + parts[-1]
        return f"Mean next-step L1 {self.mean(FROZEN):.5f} frozen; {'; '.join(parts)}."

    def to_dict(self) -> dict:
        cfg = self.config
        return {
            "clips": self.clips,
            "methods": list(cfg.methods),
            "cms_online": cfg.cms_online,
            "cms_lr": cfg.cms_lr,
            "tta_lr": cfg.tta_lr,
            "tta_every": cfg.tta_every,
            "carry": self.carry,
            "baseline_layernorm": self.baseline and cfg.layernorm,
            "columns": self.columns,
            "steps": [{"clip": s.clip, "step": s.step, **s.errors} for s in self.steps],
            "mean": {c: self.mean(c) for c in self.columns},
            "change_vs_frozen": {m: self.change(m) for m in cfg.methods},
            "change_vs_copy": {c: self.mean(c) / self.mean("copy_last") - 1 for c in self.columns
                               if c not in BASELINES and self.mean("copy_last") > 0},
            "helped": {m: self.helped(m) for m in cfg.methods},
            "p_value": {c: self.p_value(c) for c in self.compared},
            "outcome": {c: self.outcome(c) for c in self.compared},
            "baseline_change_vs_its_frozen": self.change(BASELINE) if self.baseline else None,
            "verdict": self.verdict(),
            "rule": self.rule(),
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
) -> tuple[AdaptReport, dict[str, AdaptState]]:
    """Stream clips (each a list of its windows, in time order) through the model, frozen
    and under every method of cfg (and the baseline, if given).

    Every clip starts from `start` (default: initial_state) unless `carry`, which goes on
    from the state the previous clip left; the windows of one clip always carry. The
    baseline follows the same rule from its own initial state; its memories (if any)
    write as they read, and its LayerNorms learn when a requested method has them learn.
    Returns the report and, per method, the adapted state after the last clip.
    """
    if len(clips) != len(names) or not clips:
        raise ValueError(f"need one name per clip and at least one clip, got {len(clips)} clips and "
                         f"{len(names)} names")
    start = start or initial_state(model)
    has_memory = any(m is not None for m in start.memories) or (cfg.cms_online and bool(cms_periods(model)))
    report = AdaptReport(list(names), cfg, carry, has_memory, baseline is not None)
    base_method = "both" if cfg.layernorm else "memory"
    base_cfg = replace(cfg, methods=(base_method,), cms_online=False)
    base_start = initial_state(baseline) if baseline is not None else None
    states, base_state = {}, base_start
    for windows in clips:
        if not carry or not states:
            states, base_state = {m: start for m in cfg.methods}, base_start
        for clip in windows:
            columns = {FROZEN: stream(model, clip, start, FROZEN, cfg, device=device)[0]}
            for m in cfg.methods:
                columns[m], states[m] = stream(model, clip, states[m], m, cfg, device=device)
            if baseline is not None:
                columns[BASELINE_FROZEN] = stream(baseline, clip, base_start, FROZEN, base_cfg, device=device)[0]
                columns[BASELINE], base_state = stream(baseline, clip, base_state, base_method, base_cfg,
                                                       device=device)
            z = clip.tensors(torch.device("cpu"))[0][None]  # [1, T, P, D] layer-normed
            for name in BASELINES:  # from the window's own steps 0..t, as the model sees them
                columns[name] = l1_per_clip(next_step_predictions(z, name)[0], z[0, 1:]).tolist()
            for t in range(len(columns[FROZEN])):
                report.steps.append(StepError(clip.name, t + 1, {c: e[t] for c, e in columns.items()}))
    return report, states


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
            if memory.conv is not None:
                tensors[f"memory.{i}.conv"] = memory.conv
    for prefix, values in (("weight", state.weights), ("grad", state.grads), ("adam_m", state.adam_m),
                           ("adam_v", state.adam_v)):
        tensors.update({f"{prefix}.{n}": w for n, w in values.items()})
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    metadata = {"format": STATE_FORMAT, "frames": str(state.frames), "adam_steps": str(state.adam_steps),
                "model": json.dumps(model.config.to_dict(), sort_keys=True), "note": note}
    def write(tmp: Path) -> None:
        try:
            save_file(tensors, str(tmp), metadata=metadata)
        except SafetensorError as e:  # a full disk, as safetensors reports it
            raise HopeError(f"{path}: cannot write the adapted state ({e})") from None

    atomic_write(path, write)  # a read-only folder: an OSError naming the path
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
        raise CheckpointError(f"{path}: not an adapted state written by this version of `hope adapt --save`")
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
            conv = None if memory.conv is None else tensors[f"memory.{i}.conv"]
            memories.append(TitanState(layers, tensors[f"memory.{i}.step"], conv))
        weights = {n: tensors[f"weight.{n}"] for n in reference.weights}
        grads = {n: tensors[f"grad.{n}"] for n in reference.grads}
        adam_m = {n: tensors[f"adam_m.{n}"] for n in reference.adam_m}
        adam_v = {n: tensors[f"adam_v.{n}"] for n in reference.adam_v}
    except KeyError as e:
        raise CheckpointError(f"{path}: missing tensor {e.args[0]!r}") from e
    return AdaptState(tuple(memories), weights, grads, adam_m, adam_v, int(metadata["frames"]),
                      int(metadata["adam_steps"]))


def with_state(model: Predictor, state: AdaptState) -> tuple[Predictor, PredictorState]:
    """A copy of the model carrying the state's learned weights (CMS, LayerNorms), and the
    state to stream from (for rollout and planning, which call the model directly)."""
    adapted = copy.deepcopy(model)
    adapted.load_state_dict(state.weights, strict=False)
    return adapted, state.predictor_state()


def adapt_figure(report: AdaptReport, path: str | Path) -> Path:
    """PNG in two panels over the streamed steps: the next-step error of every column
    (frozen, each method, the ViT baseline, copy-last and context-mean), and each
    method's change against the frozen model in percent, so that methods differing by
    0.1% can be told apart. The title names the clip(s)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    x = np.arange(1, len(report.steps) + 1)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 2]})
    styles = {FROZEN: "s--", "memory": "o-", "layernorm": "D-", "both": "v-", BASELINE_FROZEN: "^--",
              BASELINE: "^:", "copy_last": "-", "context_mean": "-"}
    colors = {FROZEN: "C0", "memory": "C1", "layernorm": "C2", "both": "C3", BASELINE_FROZEN: "C5",
              BASELINE: "C4", "copy_last": "0.25", "context_mean": "0.6"}
    for column in report.columns:
        top.plot(x, [s.errors[column] for s in report.steps], styles[column], ms=3, color=colors[column],
                 lw=2.0 if column in BASELINES else 1.2,
                 label=f"{report.label(column)} (mean {report.mean(column):.4f})")
    bottom.axhline(0, color=colors[FROZEN], lw=0.8, ls="--", label="frozen")
    for column in report.compared:  # each against its own model frozen
        frozen = np.array([s.errors[report.reference(column)] for s in report.steps])
        change = 100 * (np.array([s.errors[column] for s in report.steps]) / frozen - 1)
        bottom.plot(x, change, styles[column], ms=3, color=colors[column],
                    label=f"{report.label(column)} (mean {100 * report.change(column):+.3g}%)")
    for ax in (top, bottom):
        for i in range(1, len(report.steps)):
            if report.steps[i].clip != report.steps[i - 1].clip:
                ax.axvline(i + 0.5, color="grey", lw=0.6, ls=":")
        ax.legend(fontsize=7)
    top.set_ylabel("next-step L1 error")
    top.set_title(f"Test-time adaptation on {', '.join(Path(c).name for c in report.clips)}: "
                  "next-step error per streamed step", fontsize=9)
    bottom.set_ylabel("change vs frozen (%)")
    bottom.set_xlabel("streamed step (dotted lines: next clip window)")
    bottom.set_title("Change of each method against the frozen model (below 0: adaptation helped)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
