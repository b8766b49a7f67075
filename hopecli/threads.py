"""How many CPU threads torch uses: one policy for every command (`--threads`, HOPE_THREADS).

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
"""

from __future__ import annotations

import os

ENV = "HOPE_THREADS"


def default_threads() -> int:
    """Threads when none are asked for: 1 per process under torchrun, else every core."""
    if int(os.environ.get("LOCAL_WORLD_SIZE", "1")) > 1 or "OMP_NUM_THREADS" in os.environ:
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "1")))
    return os.cpu_count() or 1


def prepare_environment() -> None:
    """Before torch is imported: waiting OpenMP threads spin rather than sleep (module doc)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "ACTIVE")


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
