"""Timing helpers shared by the bench scripts: device sync, repeated timings, matmul peak,
hope's allocator policy (set on import, as `hope` sets it),
and (from hopecli.profile, which `hope profile` counts with) the FLOP formulas torch's
counter lacks."""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable

import torch

from hopecli.profile import extra_flops  # noqa: F401  (re-exported for the bench scripts)
from hopecli.threads import tune_allocator

# the allocator policy `hope` sets at start-up, so that these scripts time what its commands
# run (HOPE_MALLOC=system measures glibc's own; bench/malloc.py compares the two)
tune_allocator()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager:
    if bf16:
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def timings(fn: Callable[[], object], device: torch.device, warmup: int, repeats: int) -> list[float]:
    """Seconds of each of `repeats` calls after `warmup` calls, the device synchronised around each."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return times


def matmul_peak(device: torch.device, dtype: torch.dtype) -> float:
    """Measured dense matmul throughput in TFLOP/s (8192^3 on a GPU, 1024^3 on the CPU)."""
    n = 8192 if device.type == "cuda" else 1024
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    times = timings(lambda: a @ b, device, warmup=3, repeats=10)
    return 2 * n**3 / statistics.median(times) / 1e12
