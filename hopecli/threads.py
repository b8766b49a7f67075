"""How many CPU threads torch uses: one policy for every command (`--threads`, HOPE_THREADS);
and how the C allocator hands memory to torch's CPU tensors (HOPE_MALLOC).

Measured with bench/threads.py on a 2-core machine (hope_tiny training step, median of
5; "busy" = one other process computing), relative to 1 thread on a quiet machine:

    policy                                        quiet   busy
    1 thread                                      1.00    1.02
    all cores, OpenMP's default waits (torch's)   0.58   31.66
    all cores, spinning waits (ACTIVE)            0.58    2.27
    all cores, passive waits (PASSIVE)            1.57    1.24
    all cores, bounded spins (GOMP_SPINCOUNT=1e4) 0.59    3.45

OpenMP's default, spinning for a while and then sleeping, stalls every parallel region
once another process holds a core; waiting threads that always spin keep the quiet
speed and lose 2.3x instead of 32x; sleeping threads make the many small parallel
regions of these models slow even on a quiet machine. So the default is every core with
spinning waits, and --threads 1 (or HOPE_THREADS=1) for a machine shared with other
jobs; under `torchrun` each process gets one thread, as torchrun sets (OMP_NUM_THREADS=1).

OMP_WAIT_POLICY is read once, when OpenMP starts, so `hope` sets it before torch is
imported (cli.main); a Python caller sets it in the environment before importing torch.

The allocator. torch takes a CPU tensor's memory from malloc; glibc maps every block
above its threshold (128 KiB at first, raised to a freed block's size up to 32 MiB) freshly
from the kernel and gives freed memory at the top of its heap back (above twice that
threshold), so the next tensor of that size faults its pages in one by one. Eager code that
makes many short-lived tensors of tens of MiB paid for that on every step. With the
threshold fixed at 32 MiB (glibc's largest) and freed memory kept up to 1 GiB
(`tune_allocator`), side by side on 1 thread (bench/malloc.py): a planning iteration of
hope_tiny (100 candidates x 2 steps) went from 93,000-156,000 minor page faults, 0.16-0.28 s
of system time and 1.04-1.24 s to 500 faults and 0.90 s; a hope_tiny training step (batch 8
x 8 frames) and the 6-head memory's forward + backward changed within the noise (1.11-1.13
vs 1.10-1.23 s, 4.23-4.26 vs 3.94-4.16 s) at the same peak memory. A 360-step `hope train`
of hope_tiny peaked at 2.39 GB instead of 2.26 GB. `hope` sets it at start-up;
HOPE_MALLOC=system leaves glibc's own policy.
"""

from __future__ import annotations

import ctypes
import os

ENV = "HOPE_THREADS"
MALLOC_ENV = "HOPE_MALLOC"
# glibc's mallopt parameters and the values tune_allocator sets (module doc)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 32 << 20  # glibc's largest (DEFAULT_MMAP_THRESHOLD_MAX on 64-bit)
TRIM_THRESHOLD = 1 << 30  # free memory kept at the top of the heap before returning it


def default_threads() -> int:
    """Threads when none are asked for: 1 per process under torchrun, else every core."""
    if int(os.environ.get("LOCAL_WORLD_SIZE", "1")) > 1 or "OMP_NUM_THREADS" in os.environ:
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "1")))
    return os.cpu_count() or 1


def prepare_environment() -> None:
    """Before torch is imported: waiting OpenMP threads spin rather than sleep, and the
    allocator keeps its memory (module doc)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "ACTIVE")
    tune_allocator()


def tune_allocator() -> bool:
    """Fix glibc's mmap threshold at 32 MiB and keep up to 1 GiB of freed heap (module doc).

    True if set; False where HOPE_MALLOC=system or the C library is not glibc (macOS,
    musl), which keep their own policy. Affects the whole process from the next allocation.
    """
    if os.environ.get(MALLOC_ENV, "").lower() == "system":
        return False
    try:
        libc = ctypes.CDLL(None)
    except (OSError, TypeError):  # TypeError: no CDLL(None) (Windows)
        return False
    # glibc's own symbol: another C library's mallopt, if any, takes other parameters
    if not hasattr(libc, "gnu_get_libc_version"):
        return False
    mallopt = libc.mallopt
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def apply_threads(threads: int | None) -> int:
    """Set torch's intra-op (and, once, inter-op) pools; None: HOPE_THREADS or the default."""
    import torch

    if threads is None:
        threads = int(os.environ[ENV]) if os.environ.get(ENV) else default_threads()
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads!r}")
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(threads)
    except RuntimeError:  # only possible before the first inter-op work; keep what is set
        pass
    return threads
