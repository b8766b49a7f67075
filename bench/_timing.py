"""Timing helpers shared by the bench scripts: device sync, repeated timings, matmul peak,
and the FLOP formulas torch's counter lacks."""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable

import torch


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
