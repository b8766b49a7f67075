"""The compiled Titan chunk step: torch.compile where it helps, eager wherever it fails.

One process-wide setting, like the thread count (`--compile auto|on|off` on every
command that runs a model, or HOPE_COMPILE for scripts):

    auto  compile on CUDA (Triton kernels for the many small elementwise ops of a chunk);
          on the CPU compile only the gradient steps of a training run long enough to
          repay the compilation (training_run, CPU_TRAIN_STEPS), else stay eager
    on    compile on every device
    off   always eager

The compiled function is `chunked._step`, the whole of one chunk (reads, targets,
writes, the memory box's read), with a chunk that checkpoint_chunks recomputes in the
backward recomputed inside the graph, selectively (chunked.SAVE_INNER). Its inputs keep one shape per run: every chunk of a
sequence but the last has chunk_size tokens, so a run compiles once per (batch, chunk)
shape, and torch's automatic dynamic shapes make the second distinct shape (a shorter
last chunk, a smaller last batch) generic instead of compiling once more per shape.

Compiled code is cached on disk, in `inductor/` under the user's cache folder
(HOPE_CACHE_DIR, else $XDG_CACHE_HOME/hope, else ~/.cache/hope; TORCHINDUCTOR_CACHE_DIR,
set to another folder than torch's default, wins): inductor's FX graph and AOT autograd caches find the kernels of a shape
compiled before, so a second run of the same shapes compiles in seconds rather than
minutes (cold against warm measured in the README). Every compilation tells
`set_compile_notice`'s callback when it starts and ends, so that a command can say
"compiling" while it does.

Compilation must never break a run: if it fails (no C++ compiler, an op inductor does
not support, an error at the first call or in the first backward), the step falls back to eager for the rest of
the process with one warning that names the reason; the eager step computes the same
function, so the run's results do not depend on whether compilation worked.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
import torch.utils.checkpoint

MODES = ("auto", "on", "off")
ENV = "HOPE_COMPILE"
# Measured on the CPU, 1 thread: compiled, the 6-head H block's forward + backward at
# batch 1 x 8 frames took 3.00 s instead of 4.83 s (bench/blocks.py --compile), and the
# demo's hope_naive run (hope_tiny, 300 steps of batch 8) 448 s instead of 585 s, side by
# side: 7.0 instead of 4.3 clips/s after about 95 s of compilation in its first steps, so
# it pays off after about 130 steps. A process that only reads (eval, rollout, adapt) or
# trains briefly would pay the compilation for nothing; the training loop tells `auto`
# its length (training_run), and on the CPU `auto` compiles the gradient steps of a run
# of at least CPU_TRAIN_STEPS optimizer steps (about twice the break-even) and nothing else
COMPILE_ON_CPU = False
CPU_TRAIN_STEPS = 250

# how a non-reentrant checkpoint stops recomputing a chunk early: control flow, not a failure
_CONTROL_FLOW = tuple(
    e for e in (getattr(torch.utils.checkpoint, "_StopRecomputationError", None),) if e is not None
)

CACHE_ENV = "HOPE_CACHE_DIR"

_mode: str | None = None  # None: HOPE_COMPILE or "auto"
_notice: Callable[[str], None] | None = None  # told "compiling ..." / "compiled in ..."
_long_training = False  # inside training_run of a long run


def set_compile(mode: str | None) -> str:
    """Set the process-wide mode; None reads HOPE_COMPILE (default "auto"). Returns it."""
    if mode is None:
        mode = os.environ.get(ENV) or "auto"
    if mode not in MODES:
        raise ValueError(f"compile mode must be one of {MODES!r}, got {mode!r}")
    global _mode
    _mode = mode
    return mode


def cache_dir() -> Path:
    """The user's cache folder for hope: HOPE_CACHE_DIR, else $XDG_CACHE_HOME/hope, else ~/.cache/hope."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "hope"


def use_persistent_cache() -> str:
    """Point inductor's caches (FX graphs, AOT autograd, kernels) at cache_dir()/inductor
    unless TORCHINDUCTOR_CACHE_DIR names another folder; returns the folder in force. Called before the
    first compilation (inductor reads the variable when it first needs the folder)."""
    import torch._functorch.config
    import torch._inductor.config
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    # importing torch._dynamo already wrote torch's default there: that one is replaced
    found = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if not found or os.path.abspath(found) == os.path.abspath(default_cache_dir()):
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(cache_dir() / "inductor")
    torch._inductor.config.fx_graph_cache = True
    torch._functorch.config.enable_autograd_cache = True
    return os.environ["TORCHINDUCTOR_CACHE_DIR"]


def set_compile_notice(notice: Callable[[str], None] | None) -> None:
    """`notice(message)` is called when a compilation of the memory starts and ends."""
    global _notice
    _notice = notice


_compiling_since: list[float] = []


def _on_start(_args) -> None:
    _compiling_since.append(time.perf_counter())
    if _notice is not None and len(_compiling_since) == 1:
        _notice(f"compiling the Titan memory (torch.compile, cache {os.environ.get('TORCHINDUCTOR_CACHE_DIR')}) ...")


def _on_end(_args) -> None:
    if not _compiling_since:
        return
    started = _compiling_since.pop()
    if _notice is not None and not _compiling_since:
        _notice(f"compiled in {time.perf_counter() - started:.1f} s")


def _watch_compilations() -> None:
    """Tell the notice of every dynamo compilation in this process (once installed)."""
    try:
        from torch._dynamo.callback import callback_handler
    except ImportError:  # an older torch: compile without the notice
        return
    if _on_start not in callback_handler.start_callbacks:
        callback_handler.register_start_callback(_on_start)
        callback_handler.register_end_callback(_on_end)


def compile_mode() -> str:
    """The mode in force: the last set_compile, else HOPE_COMPILE, else "auto"."""
    return _mode if _mode is not None else set_compile(None)


@contextlib.contextmanager
def training_run(steps: int) -> Iterator[None]:
    """Inside, `auto` knows the training loop will take `steps` optimizer steps (a CPU
    run of at least CPU_TRAIN_STEPS compiles its gradient steps)."""
    global _long_training
    saved = _long_training
    _long_training = steps >= CPU_TRAIN_STEPS
    try:
        yield
    finally:
        _long_training = saved


def wants_compile(device: torch.device, training: bool | None = None) -> bool:
    """Whether the mode in force compiles on `device` a call that records gradients
    (training; None: whether the current call does)."""
    mode = compile_mode()
    if mode == "auto":
        if device.type != "cpu":
            return device.type == "cuda"
        training = torch.is_grad_enabled() if training is None else training
        return COMPILE_ON_CPU or (_long_training and training)
    return mode == "on"


@contextlib.contextmanager
def eager() -> Iterator[None]:
    """Everything inside runs eager whatever the mode (e.g. while hooks time the eager ops)."""
    global _mode
    saved = _mode
    _mode = "off"
    try:
        yield
    finally:
        _mode = saved


class CompileFallbackWarning(RuntimeWarning):
    """torch.compile failed and the memory runs eager from now on (`hope` prints it as one
    "warning:" line, like its other warnings)."""


def _reason(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0] if lines else 'no message'}"


def _tensors(tree) -> list[torch.Tensor]:
    """The tensors in nested tuples and lists."""
    if isinstance(tree, torch.Tensor):
        return [tree]
    if isinstance(tree, (tuple, list)):
        return [t for item in tree for t in _tensors(item)]
    return []


def _same_layout(t: torch.Tensor) -> torch.Tensor:
    """A detached copy with t's type, sizes, strides and requires_grad (the graph's guards)."""
    if 0 in t.stride():  # broadcast: a dense copy (at worst one more compilation)
        copy = t.detach().clone()
    else:
        copy = torch.empty_strided(t.size(), t.stride(), dtype=t.dtype, device=t.device).copy_(t)
    if isinstance(t, torch.nn.Parameter):  # the guards check the type too
        return torch.nn.Parameter(copy, requires_grad=t.requires_grad)
    return copy.requires_grad_(t.requires_grad)


class CompiledStep:
    """fn, compiled on first use where wants_compile says so, eager after any failure.

    The backward graph is compiled lazily, at the first backward; so that a failure there
    cannot break a run either, the first compiled call that records gradients first runs
    the compiled step forward and backward on copies of its inputs (checked), and only
    then uses it.
    """

    def __init__(self, fn: Callable, compiler: Callable[[Callable], Callable] | None = None) -> None:
        self.fn = fn
        self.compiler = compiler or torch.compile
        self.compiled: Callable | None = None
        self.backward_checked = False
        self.failure: str | None = None  # why compilation was given up, once it was

    def _check_backward(self, args: tuple, kwargs: dict) -> None:
        copies = [_same_layout(a) if isinstance(a, torch.Tensor) else a for a in args]
        inputs = [c for c in copies if isinstance(c, torch.Tensor) and c.requires_grad]
        # plain saved tensors here, whatever hooks an enclosing checkpoint has installed
        with torch.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: t):
            outputs = [t for t in _tensors(self.compiled(*copies, **kwargs)) if t.requires_grad]
            if outputs:
                torch.autograd.grad(sum(t.sum() for t in outputs), inputs, allow_unused=True)
        self.backward_checked = True

    def will_compile(self, device: torch.device) -> bool:
        """Whether a call on `device` now, recording gradients, would run compiled (the mode
        in force wants it and no compilation has failed)."""
        return self.failure is None and wants_compile(device, training=True)

    def __call__(self, first, *args, **kwargs):
        if self.failure is not None or not wants_compile(first.device):
            return self.fn(first, *args, **kwargs)
        try:
            if self.compiled is None:
                if first.device.type == "cpu":  # inductor's C++ build says so on every CPU-only machine
                    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
                # a selective recomputation (chunked.SAVE_INNER) under compile warns against
                # in-place ops, which the chunk step has none of
                logging.getLogger("torch._higher_order_ops.wrap").setLevel(logging.ERROR)
                use_persistent_cache()
                _watch_compilations()
                self.compiled = self.compiler(self.fn)
            if not self.backward_checked and torch.is_grad_enabled() and any(
                t.requires_grad for t in _tensors((first, *args))
            ):
                self._check_backward((first, *args), kwargs)
            return self.compiled(first, *args, **kwargs)
        except _CONTROL_FLOW:
            raise
        except Exception as exc:  # compilation must never break a run (module doc)
            self.failure = _reason(exc)
            warnings.warn(
                f"torch.compile of the Titan memory failed, running it eager from now on ({self.failure})",
                CompileFallbackWarning,
                stacklevel=2,
            )
            return self.fn(first, *args, **kwargs)
