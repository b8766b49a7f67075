"""Data-parallel training across processes (torchrun): who am I, and summing across ranks.

Under `torchrun --nproc_per_node N hope train ...` every process gets RANK, LOCAL_RANK
and WORLD_SIZE in its environment; `init_from_env` joins the process group (nccl on GPUs,
gloo on CPUs). A caller that set up a process group itself (tests use a file:// store)
is used as it is. Rank 0 writes the run folder; all ranks train.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from hopecli.errors import HopeError


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def resolve_device(device: str) -> torch.device:
    """"auto" -> this rank's GPU when there is one, else the CPU; otherwise as given.

    HopeError (one line) for a name torch does not know or a CUDA device this machine does
    not have, so that a command can refuse before it writes anything.
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise HopeError(f"--device {device}: not a device; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise HopeError(f"--device {device}: no CUDA device is available on this machine")
        if dev.index is None:
            dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        if dev.index >= torch.cuda.device_count():
            raise HopeError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return dev


def init_from_env(device: str = "auto") -> World:
    """Join the torchrun process group when launched by torchrun; a single World otherwise."""
    dev = resolve_device(device)
    if not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    if dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), dev)
    return World(0, 1, dev)


def all_sum(t: torch.Tensor, world: World) -> torch.Tensor:
    """Sum of `t` over all ranks (in place; a no-op for one process)."""
    if world.distributed:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_max(t: torch.Tensor, world: World) -> torch.Tensor:
    """Elementwise maximum of a CPU tensor `t` over all ranks (a no-op for one process)."""
    if world.distributed:
        moved = t.to(world.device)
        dist.all_reduce(moved, op=dist.ReduceOp.MAX)
        t = moved.cpu()
    return t


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def autocast(device: torch.device):
    """bf16 autocast on GPUs; fp32 (a no-op context) on the CPU."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def shutdown(world: World) -> None:
    """Leave the process group (after training under torchrun)."""
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()
