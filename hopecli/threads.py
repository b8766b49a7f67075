"""How many CPU threads torch uses: one policy for every command (`--threads`, HOPE_THREADS).

Measured on 2-core machines (bench/threads.py): torch's default, all cores with OpenMP's
threads spinning while they wait, is fastest on a quiet machine but collapses as soon as
another process competes for a core (a spinning thread holds a core the other process
needs, and every parallel region then waits for the slowest thread). With waiting threads
asleep (OMP_WAIT_POLICY=PASSIVE) all cores keep most of their speed on a quiet machine and
no longer collapse on a busy one. So the default is all cores with passive waiting; under
`torchrun` each process gets one thread, as torchrun's own default (OMP_NUM_THREADS=1).

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
    """Before torch is imported: waiting OpenMP threads sleep instead of spinning."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


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
