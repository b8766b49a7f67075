"""The step loop of one experience: batches in, optimizer steps out, everything logged.

A step reads its slice of the global batch, computes the weighted loss under bf16
autocast (GPU) or fp32 (CPU), backpropagates (DDP averages the gradients across ranks),
and steps the parameter groups that are due (optim.optimizer_step). The loss is summed
across ranks before it is checked, so every rank sees the same value and stops together:
a NaN or Inf loss or gradient norm ends the run with a TrainingDiverged naming the step,
before any parameter changes, and the checkpoints on disk stay as they were.
"""

from __future__ import annotations

import math
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

from hopecli.console import err, progress_bars
from hopecli.errors import HopeError
from hopecli.runs.folder import MetricsLog
from hopecli.train.config import TrainConfig
from hopecli.train.data import BatchPlan, prefetch
from hopecli.train.distributed import World, all_max, all_sum, autocast
from hopecli.train.interrupt import StopRequest, TrainingInterrupted
from hopecli.train.losses import jump_range
from hopecli.train.optim import lr_factor, optimizer_step


class TrainingDiverged(HopeError):
    """The loss or a gradient norm became NaN or Inf."""


class OutOfMemory(HopeError):
    """A training step ran out of device memory."""


_OOM = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


def memory_advice(model: torch.nn.Module) -> str:
    """What frees device memory in a training step of `model`, as options of `hope train`."""
    from hopecli.model.memory import SelfModifyingTitan

    memories = [m.cfg for m in model.modules() if isinstance(m, SelfModifyingTitan)]
    advice = ["a smaller --batch-size"]
    if any(not c.checkpoint_chunks for c in memories):
        advice.append("--checkpoint-chunks (the memories recompute each chunk in the backward instead of keeping it)")
    elif any(c.recompute == "selective" for c in memories):
        advice.append("--recompute whole (a compiled memory chunk keeps about 5x less for the backward)")
    return ", or ".join(advice)


@dataclass
class Experience:
    """One stage of the continual-learning sequence: what it trains on and for how long."""

    index: int
    name: str
    tasks: tuple[str, ...]
    plan: BatchPlan
    steps: int


class Reporter:
    """Progress on stderr (rank 0 only; live bars in a terminal, plain lines in a log) and
    the threshold warnings."""

    def __init__(self, cfg: TrainConfig, world: World) -> None:
        self.cfg = cfg
        self.enabled = world.is_main
        self.progress = progress_bars(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("{task.fields[speed]}"),
            TimeRemainingColumn(),
            console=err,
            disable=not self.enabled,
        )
        self._last_warned: dict[str, int] = {}

    def __enter__(self) -> Reporter:
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def print(self, message: str) -> None:
        if self.enabled:
            self.progress.console.print(message)

    def warn(self, key: str, step: int, message: str) -> None:
        """A warning, at most once per log interval for each key."""
        if step - self._last_warned.get(key, -10**9) >= self.cfg.log_every:
            self._last_warned[key] = step
            self.print(f"[yellow]warning:[/] {message}")


def step_seed(seed: int, step: int, rank: int) -> int:
    """The torch seed of one optimizer step on one rank (drop path and other model noise)."""
    return int(np.random.default_rng([seed, step, rank]).integers(2**62))


def train_experience(
    exp: Experience,
    *,
    objective: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    store,
    clip_steps: int,
    start_step: int,
    global_step: int,
    cfg: TrainConfig,
    world: World,
    log: MetricsLog | None,
    reporter: Reporter,
    checkpoint: Callable[[int, int], None],
    stop: StopRequest | None = None,
) -> int:
    """Run steps start_step .. exp.steps - 1 of `exp`; return the global step count after.

    clip_steps: T of the store. checkpoint(step_in_experience, global_step) is called every
    cfg.checkpoint_every global steps (not after the experience's last step: the caller
    checkpoints the finished experience itself). When `stop` holds a signal (on any rank)
    before a step, the steps done so far are checkpointed and TrainingInterrupted raised.
    """
    local = cfg.batch_size // world.size
    lo, hi = world.rank * local, (world.rank + 1) * local

    def my_clips():
        for s in range(start_step, exp.steps):
            yield exp.plan.clips(s)[lo:hi]

    task = reporter.progress.add_task(
        f"{exp.index + 1}. {exp.name}", total=exp.steps, completed=start_step, loss="-", speed=""
    )
    taus = jump_range(clip_steps, cfg.loss.jump_k)
    window_start, window_steps = time.perf_counter(), 0
    for s, batch in zip(range(start_step, exp.steps), prefetch(store, my_clips())):
        signum = int(all_max(torch.tensor([float(stop.signum or 0)]), world).item()) if stop else 0
        if signum:
            checkpoint(s, global_step)
            raise TrainingInterrupted(
                f"stopped by {signal.Signals(signum).name} after step {global_step} (experience "
                f"{exp.index + 1} '{exp.name}', step {s} of {exp.steps}); checkpoint step-{global_step:07d} saved",
                signum)
        batch = batch.to(world.device)
        tau = torch.tensor(exp.plan.jump_targets(s, taus)[lo:hi], device=world.device)
        torch.manual_seed(step_seed(cfg.seed, global_step, world.rank))
        try:
            with autocast(world.device):
                total, parts, diagnostics = objective(batch.features, batch.actions, batch.states, tau)
            names = ["loss", *parts]
            values = all_sum(torch.stack([total.detach().float(), *parts.values()]).float(), world) / world.size
            values = values.tolist()
            if not math.isfinite(values[0]):
                raise TrainingDiverged(
                    f"training stopped: the loss is {values[0]} at step {global_step + 1} "
                    f"(experience {exp.index + 1} '{exp.name}', step {s + 1} of {exp.steps})"
                )
            total.backward()
        except _OOM as e:
            raise OutOfMemory(
                f"training stopped: out of {world.device} memory in step {global_step + 1} (experience "
                f"{exp.index + 1} '{exp.name}', batch {cfg.batch_size}); try {memory_advice(objective)}"
            ) from e
        global_step += 1
        try:
            logs = optimizer_step(optimizer, global_step, lr_factor(s, exp.steps, cfg.optim), cfg.optim)
        except FloatingPointError as e:
            raise TrainingDiverged(
                f"training stopped: {e} at step {global_step} "
                f"(experience {exp.index + 1} '{exp.name}', step {s + 1} of {exp.steps})"
            ) from e
        record = {"kind": "step", "step": global_step, "experience": exp.index, "name": exp.name,
                  "exp_step": s + 1, **dict(zip(names, values)), **logs}
        grad_norm = logs.get("grad_norm/total", 0.0)
        if grad_norm > cfg.warn_grad_norm:
            reporter.warn("grad", global_step,
                          f"gradient norm {grad_norm:.3g} > {cfg.warn_grad_norm:g} at step {global_step}")
        window_steps += 1
        if global_step % cfg.log_every == 0 or s + 1 == exp.steps:
            elapsed = time.perf_counter() - window_start
            record["clips_per_s"] = window_steps * cfg.batch_size / max(elapsed, 1e-9)
            window_start, window_steps = time.perf_counter(), 0
            diag = {f"diag/{k}": float(v) for k, v in diagnostics.items()}
            record.update(diag)
            inner = {k: v for k, v in diag.items() if k.endswith("/inner_loss")}
            worst = max(inner, key=inner.get, default=None)
            if worst is not None and inner[worst] > cfg.warn_inner_loss:
                reporter.warn("inner", global_step,
                              f"{worst[5:]} = {inner[worst]:.3g} > {cfg.warn_inner_loss:g} at step {global_step}")
            reporter.progress.update(task, speed=f"{record['clips_per_s']:.1f} clips/s")
        if log is not None:
            log.write(record)
        reporter.progress.update(task, advance=1, loss=f"{values[0]:.4f}")
        if cfg.checkpoint_every and global_step % cfg.checkpoint_every == 0 and s + 1 < exp.steps:
            checkpoint(s + 1, global_step)
    return global_step
