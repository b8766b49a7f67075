"""Where a predictor spends its time: the library behind `hope profile`.

For each model: the latency of an inference forward, of a training step (forward +
L1 loss + backward) and of one streaming rollout step (one new frame with the state of
the frames before carried in), each the median over repeats after warm-up, with tokens
per second and, on a GPU, peak memory. The inference forward is also cut into
components by timing points that forward hooks set on the model's own modules (no
change to the model code): the embedding (everything before the first block), per
block the Titan memory, the CMS, the spatial mixing (H, L) or the attention and the MLP
(T), and the decoder (everything after the last block). The points are contiguous, so
the components add up to the hooked forward.

The Titan memory is split further into read and update. Read is reading every memory at
its current state (the readouts of M_k, M_v, M_q, M_eta, M_alpha and the output
M_memory(q)), plus the block's norm and output projection; update is the rest of the
memory's work: self-generated targets, the explicit inner gradients and the state
write. The read time is measured by timing every call of the memory's readout function
(`hopecli.model.memory.chunked._read`) while profiling, as the fast path calls it twice
per chunk.

A planning step is timed too: `hope rollout --plan`'s CEM (plan_samples candidates x
plan_iterations iterations over plan_horizon steps, the context of frames - 1 steps encoded
once and its state shared by the candidates), beside the time its FLOPs take at the
matmul peak measured in the same process (the bound a planning step can approach).

Timing points are CUDA events on a GPU (no synchronisation inside the forward) and
perf_counter on the CPU.
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from unittest import mock

import torch
import torch.nn.functional as F
from torch import nn

from hopecli.model import Predictor
from hopecli.model.blocks import HopeBlock, TransformerBlock
from hopecli.model.memory import chunked, compiled

DTYPES = ("auto", "float32", "bfloat16")


@dataclass(frozen=True)
class ProfileConfig:
    """Input shapes (batch, frames; the model fixes P, D_in, A, S), repeats, device and dtype.

    dtype "auto": bf16 autocast on a GPU, float32 on the CPU.
    """

    batch_size: int = 4
    frames: int = 8
    warmup: int = 2
    repeats: int = 5
    device: str = "auto"
    dtype: str = "auto"
    plan_samples: int = 100  # 0: no planning step
    plan_iterations: int = 5
    plan_horizon: int = 2

    def __post_init__(self) -> None:
        for name in ("batch_size", "repeats"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.frames < 2:
            raise ValueError(f"frames must be >= 2 (a rollout step needs a frame before it), got {self.frames!r}")
        if self.warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {self.warmup!r}")
        if self.plan_samples == 1 or self.plan_samples < 0:
            raise ValueError(f"plan_samples must be 0 (no planning) or >= 2, got {self.plan_samples!r}")
        for name in ("plan_iterations", "plan_horizon"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")


@dataclass
class ModelProfile:
    name: str
    pattern: str
    parameters: int
    frames: int
    tokens: int  # tokens of one forward: batch x frames x (P + 2)
    forward_ms: float
    train_step_ms: float
    rollout_step_ms: float
    components_ms: dict[str, float]  # name -> median ms, in forward order
    peak_memory_mib: dict[str, float | None] = field(default_factory=dict)
    plan_step_s: float | None = None  # one CEM planning step
    plan_gflop: float | None = None  # its model FLOPs
    plan_bound_s: float | None = None  # plan_gflop at the measured matmul peak

    @property
    def tokens_per_s(self) -> dict[str, float]:
        per_frame = self.tokens / self.frames  # a rollout step feeds one frame
        return {
            "forward": self.tokens / (self.forward_ms / 1e3),
            "train_step": self.tokens / (self.train_step_ms / 1e3),
            "rollout_step": per_frame / (self.rollout_step_ms / 1e3),
        }

    def by_kind(self) -> dict[str, float]:
        """Component times summed over blocks: embedding, titan_read, ..., decoder."""
        total: dict[str, float] = defaultdict(float)
        for name, ms in self.components_ms.items():
            total[name.rpartition("/")[2]] += ms
        return dict(total)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "pattern": self.pattern,
            "parameters": self.parameters,
            "frames": self.frames,
            "tokens": self.tokens,
            "forward_ms": self.forward_ms,
            "train_step_ms": self.train_step_ms,
            "rollout_step_ms": self.rollout_step_ms,
            "tokens_per_s": self.tokens_per_s,
            "peak_memory_mib": self.peak_memory_mib,
            "components_ms": self.components_ms,
            "components_by_kind_ms": self.by_kind(),
            "plan_step_s": self.plan_step_s,
            "plan_gflop": self.plan_gflop,
            "plan_bound_s": self.plan_bound_s,
        }


@dataclass
class ProfileReport:
    device: str
    dtype: str
    batch_size: int
    frames: int
    repeats: int
    models: list[ModelProfile]

    def to_dict(self) -> dict:
        return {
            "device": self.device,
            "dtype": self.dtype,
            "batch_size": self.batch_size,
            "frames": self.frames,
            "repeats": self.repeats,
            "models": [m.to_dict() for m in self.models],
        }


# -- timing ------------------------------------------------------------------------------


class _Clock:
    """Timing points: CUDA events on a GPU, perf_counter on the CPU; read after sync."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.device = device

    def mark(self):
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def ms(self, start, end) -> float:
        return start.elapsed_time(end) if self.cuda else (end - start) * 1e3


def _median_ms(fn: Callable[[], object], clock: _Clock, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        fn()
    clock.sync()
    times = []
    for _ in range(repeats):
        start = clock.mark()
        fn()
        end = clock.mark()
        clock.sync()
        times.append(clock.ms(start, end))
    return statistics.median(times)


@contextmanager
def _hooks(model: Predictor, clock: _Clock) -> Iterator[dict]:
    """Timing points at the model's and its blocks' module boundaries, and around every
    memory readout (attributed to the block running). Yields the dict of points."""
    points: dict = {}
    reads: dict[int, list] = defaultdict(list)
    points["reads"] = reads
    current = [None]
    handles = []

    def at(name: str, pre: bool):
        if pre:
            return lambda module, args: points.__setitem__(name, clock.mark())
        return lambda module, args, output: points.__setitem__(name, clock.mark())

    def enter_block(i: int):
        def hook(module, args):
            current[0] = i
            points[f"block{i}/start"] = clock.mark()
        return hook

    handles.append(model.register_forward_pre_hook(at("start", True)))
    handles.append(model.register_forward_hook(at("end", False)))
    for i, block in enumerate(model.blocks):
        handles.append(block.register_forward_pre_hook(enter_block(i)))
        handles.append(block.register_forward_hook(at(f"block{i}/end", False)))
        if isinstance(block, HopeBlock):
            handles.append(block.memory.register_forward_pre_hook(at(f"block{i}/memory_start", True)))
            handles.append(block.memory.register_forward_hook(at(f"block{i}/memory_end", False)))
            handles.append(block.cms.register_forward_pre_hook(at(f"block{i}/cms_start", True)))
            handles.append(block.cms.register_forward_hook(at(f"block{i}/cms_end", False)))
        elif isinstance(block, TransformerBlock):
            handles.append(block.norm2.register_forward_pre_hook(at(f"block{i}/mlp_start", True)))

    original = chunked._read

    def timed_read(*args, **kwargs):
        start = clock.mark()
        result = original(*args, **kwargs)
        reads[current[0]].append((start, clock.mark()))
        return result

    try:
        # eager while hooked: a compiled step would not call the patched _read
        with mock.patch.object(chunked, "_read", timed_read), compiled.eager():
            yield points
    finally:
        for h in handles:
            h.remove()


def _components(model: Predictor, points: dict, clock: _Clock) -> dict[str, float]:
    """Component times (ms) of one hooked forward, in forward order."""
    ms = lambda a, b: clock.ms(points[a], points[b])  # noqa: E731
    out = {"embedding": ms("start", "block0/start")}
    for i, block in enumerate(model.blocks):
        b = f"block{i}"
        if isinstance(block, HopeBlock):
            memory = ms(f"{b}/memory_start", f"{b}/memory_end")
            reads = sum(clock.ms(s, e) for s, e in points["reads"][i])
            update = memory - reads
            out[f"{b}/titan_read"] = ms(f"{b}/start", f"{b}/cms_start") - update
            out[f"{b}/titan_update"] = update
            out[f"{b}/cms"] = ms(f"{b}/cms_start", f"{b}/cms_end")
            if block.mixing is not None:
                out[f"{b}/spatial_mixing"] = ms(f"{b}/cms_end", f"{b}/end")
        else:
            out[f"{b}/attention"] = ms(f"{b}/start", f"{b}/mlp_start")
            out[f"{b}/mlp"] = ms(f"{b}/mlp_start", f"{b}/end")
    out["decoder"] = ms(f"block{len(model.blocks) - 1}/end", "end")
    return out


# -- profiling ---------------------------------------------------------------------------


def resolve(cfg: ProfileConfig) -> tuple[torch.device, bool]:
    """(device, bf16 autocast on?)"""
    if cfg.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(cfg.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("device cuda requested but no CUDA device is available")
    bf16 = cfg.dtype == "bfloat16" or (cfg.dtype == "auto" and device.type == "cuda")
    return device, bf16


def _peak_mib(fn: Callable[[], object], device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) / 2**20


def profile_model(name: str, model: Predictor, cfg: ProfileConfig) -> ModelProfile:
    """Latencies, components, throughput and peak memory of one predictor on random inputs."""
    device, bf16 = resolve(cfg)
    c = model.config
    if cfg.frames > c.max_frames:
        raise ValueError(f"frames {cfg.frames} exceed the model's max_frames {c.max_frames}")
    model = model.to(device)
    B, T = cfg.batch_size, cfg.frames
    gen = torch.Generator(device="cpu").manual_seed(0)
    features = torch.randn(B, T, c.patches_per_step, c.input_dim, generator=gen).to(device)
    features = F.layer_norm(features, (c.input_dim,))
    actions = torch.randn(B, T, c.action_dim, generator=gen).to(device)
    states = torch.randn(B, T, c.state_dim, generator=gen).to(device)
    target = torch.randn(B, T, c.patches_per_step, c.input_dim, generator=gen).to(device)
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext)
    clock = _Clock(device)

    def forward():
        with torch.no_grad(), autocast():
            return model(features, actions, states)

    def train_step():
        with autocast():
            pred = model(features, actions, states).pred
            loss = (pred.float() - target).abs().mean()
        loss.backward()

    with torch.no_grad(), autocast():
        context = model(features[:, :-1], actions[:, :-1], states[:, :-1]).state

    def rollout_step():
        with torch.no_grad(), autocast():
            return model(features[:, -1:], actions[:, -1:], states[:, -1:], state=context)

    was_training = model.training
    try:
        model.eval()
        forward_ms = _median_ms(forward, clock, cfg.warmup, cfg.repeats)
        rollout_ms = _median_ms(rollout_step, clock, cfg.warmup, cfg.repeats)
        runs: list[dict[str, float]] = []
        for _ in range(cfg.repeats):
            with _hooks(model, clock) as points:
                forward()
            clock.sync()
            runs.append(_components(model, points, clock))
        components = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        peak_forward = _peak_mib(forward, device)
        model.train()
        train_ms = _median_ms(train_step, clock, cfg.warmup, cfg.repeats)
        peak_train = _peak_mib(train_step, device)
        model.zero_grad(set_to_none=True)
    finally:
        model.train(was_training)
    plan = _plan_step(model, features[0], actions[0], states[0], cfg, clock, autocast, bf16)
    return ModelProfile(
        name=name,
        pattern=c.pattern,
        parameters=model.num_parameters(),
        frames=T,
        tokens=B * T * c.tokens_per_frame,
        forward_ms=forward_ms,
        train_step_ms=train_ms,
        rollout_step_ms=rollout_ms,
        components_ms=components,
        peak_memory_mib={"forward": peak_forward, "train_step": peak_train},
        **plan,
    )


def matmul_peak_tflops(device: torch.device, dtype: torch.dtype) -> float:
    """Measured dense matmul throughput (8192^3 on a GPU, 1024^3 on the CPU), median of 5."""
    n = 8192 if device.type == "cuda" else 1024
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    clock = _Clock(device)
    return 2 * n**3 / (_median_ms(lambda: a @ b, clock, warmup=2, repeats=5) / 1e3) / 1e12


def _solve_flops(a, b, *args, out_shape=None, **kwargs) -> int:
    """A triangular solve: n^2 / 2 multiply-adds per right-hand column."""
    return a[-1] * out_shape.numel()


def _cpu_attention_flops(q, k, v, *args, out_shape=None, **kwargs) -> int:
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(q, k, v)


def extra_flops() -> dict:
    """custom_mapping for FlopCounterMode: the ops torch's counter gives 0 FLOPs (the
    memories' triangular solves, the CPU attention kernel), though they do the work."""
    mapping = {torch.ops.aten.linalg_solve_triangular: _solve_flops}
    if hasattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu"):
        mapping[torch.ops.aten._scaled_dot_product_flash_attention_for_cpu] = _cpu_attention_flops
    return mapping


def _plan_step(model: Predictor, features, actions, states, cfg: ProfileConfig, clock: _Clock,
               autocast, bf16: bool) -> dict[str, float | None]:
    """Seconds of one CEM planning step from features [T, P, D] (the last step is the current
    one), its FLOPs (FlopCounterMode over the candidates' forwards) and their time at peak.

    torch's counter has no formula for the CPU's attention kernel nor for triangular
    solves (the memories' chunk writes): both are added here, or a CPU planning step of
    vit_tiny would be held to its linear layers alone (11.8 of its 17.4 GFLOP at 64
    patches, 100 candidates, 5 iterations, horizon 2). The step is the median of up to
    three after a warm-up.
    """
    from torch.utils.flop_counter import FlopCounterMode

    from hopecli.plan import CEMConfig, plan_to_goal, rollout_energy

    if not cfg.plan_samples:
        return {}
    plan_cfg = CEMConfig(samples=cfg.plan_samples, top_k=min(10, cfg.plan_samples),
                         iterations=cfg.plan_iterations, horizon=cfg.plan_horizon)
    c = model.config
    if features.shape[0] - 1 + cfg.plan_horizon > c.max_frames:
        raise ValueError(f"planning {cfg.plan_horizon} steps after {features.shape[0]} frames exceeds the "
                         f"model's max_frames {c.max_frames}")
    low, high = -torch.ones(c.action_dim), torch.ones(c.action_dim)
    goal = features[0]
    was_training = model.training
    model.eval()

    def step():
        with torch.no_grad(), autocast():
            return plan_to_goal(model, features, actions, states, goal, low, high, cfg=plan_cfg,
                                generator=torch.Generator().manual_seed(0))

    seconds = _median_ms(step, clock, warmup=min(cfg.warmup, 1), repeats=min(cfg.repeats, 3)) / 1e3
    with torch.no_grad(), autocast():
        state = model(features[None, :-1], actions[None, :-1], states[None, :-1]).state
        energy = rollout_energy(model, state, features[-1], states[-1], goal, 1)
        candidates = torch.zeros(plan_cfg.samples, plan_cfg.horizon, c.action_dim, device=features.device)
        with FlopCounterMode(display=False, custom_mapping=extra_flops()) as counter:
            energy(candidates)
    model.train(was_training)
    flops = counter.get_total_flops() * plan_cfg.iterations
    peak = matmul_peak_tflops(features.device, torch.bfloat16 if bf16 else torch.float32)
    return {"plan_step_s": seconds, "plan_gflop": flops / 1e9, "plan_bound_s": flops / (peak * 1e12)}


def profile_models(models: Sequence[tuple[str, nn.Module]], cfg: ProfileConfig = ProfileConfig(),
                   on_model: Callable[[str], None] | None = None) -> ProfileReport:
    """Profile each (name, predictor) on the same shapes."""
    device, bf16 = resolve(cfg)
    profiles = []
    for name, model in models:
        if on_model is not None:
            on_model(name)
        profiles.append(profile_model(name, model, cfg))
    return ProfileReport(str(device), "bfloat16 autocast" if bf16 else "float32", cfg.batch_size, cfg.frames,
                         cfg.repeats, profiles)
