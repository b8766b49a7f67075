"""Where the H block's forward + backward goes: FLOPs and time per part of the memory.

One HOPE block (6-head MLP memories, rule dgd, one-frame chunks, the seeds' width and
tokens, as bench/blocks.py) at --batch x --frames. The memory's chunk step is cut into
its parts by wrapping the functions of hopecli/model/memory/chunked.py:

    read      the read-outs of x by M_k, M_v, M_q, M_eta, M_alpha at W_c (_read)
    targets   self-generated targets, inner errors, normalisers, keys (targets)
    write     the UT/WY solves and the new state of every layer (write_chunk)
    output    the memory box's output through the chunk (read_memory_box)

and the rest of the block (norms, projection, CMS, spatial mixing) is "other". FLOPs
are counted with FlopCounterMode in one forward (model FLOPs: 3 x forward). Times are
the forward of each part (perf_counter around the wrapped call, median over --repeats)
and, from torch.profiler, the whole forward + backward split into matrix products
(bmm, mm, addmm, triangular solves) and everything else, self time per op.

    .venv/bin/python bench/memory_parts.py --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from contextlib import ExitStack
from unittest import mock

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from blocks import CMS, N, WIDTH, block_case

from hopecli.model.blocks import HopeBlock
from hopecli.model.memory import TitanConfig, chunked
from hopecli.model.memory.compiled import set_compile

PARTS = {"read": "_read", "targets": "chunk_targets", "write": "write_chunk", "output": "read_memory_box"}
MATMUL_OPS = ("aten::bmm", "aten::mm", "aten::addmm", "aten::linalg_solve_triangular", "aten::matmul")


def patched(record):
    """Patches that route every part's call through record(part, fn, args, kwargs)."""
    stack = ExitStack()
    for part, attr in PARTS.items():
        original = getattr(chunked, attr)

        def wrapper(*args, _part=part, _fn=original, **kwargs):
            return record(_part, _fn, args, kwargs)

        stack.enter_context(mock.patch.object(chunked, attr, wrapper))
    return stack


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    set_compile("off")
    torch.manual_seed(0)
    cfg = TitanConfig(dim=WIDTH, heads=6, hidden_mult=4.0, update_rule="dgd")
    block = HopeBlock(WIDTH, cfg, *CMS, N, True, 0.0, 0)
    forward, step = block_case(block, args.batch, args.frames, False, torch.device("cpu"), False)

    flops: dict[str, int] = defaultdict(int)
    with torch.no_grad(), FlopCounterMode(display=False) as total:
        def count(part, fn, a, kw):
            with FlopCounterMode(display=False) as inner:
                out = fn(*a, **kw)
            flops[part] += inner.get_total_flops()
            return out

        with patched(count):
            forward()
    flops["other"] = total.get_total_flops() - sum(flops.values())

    seconds: dict[str, list[float]] = defaultdict(list)

    def timed(part, fn, a, kw):
        start = time.perf_counter()
        out = fn(*a, **kw)
        seconds[part].append(time.perf_counter() - start)
        return out

    forward_s, runs = [], defaultdict(list)
    for _ in range(args.repeats):
        seconds.clear()
        with patched(timed):
            start = time.perf_counter()
            forward()
            forward_s.append(time.perf_counter() - start)
        for part in PARTS:
            runs[part].append(sum(seconds[part]))
    fwd = statistics.median(forward_s)
    part_s = {p: statistics.median(runs[p]) for p in PARTS}
    part_s["other"] = fwd - sum(part_s.values())

    step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        step()
        step_s = time.perf_counter() - start
    self_us = {e.key: e.self_cpu_time_total for e in prof.key_averages()}
    matmul = sum(v for k, v in self_us.items() if k in MATMUL_OPS) / 1e6
    everything = sum(self_us.values()) / 1e6

    print(f"H block (6-head memories, dgd, one-frame chunks), batch {args.batch} x {args.frames} frames, "
          f"fp32, {torch.get_num_threads()} thread(s)", file=sys.stderr)
    print(f"{'part':8} {'GFLOP fwd+bwd':>14} {'share':>6} {'fwd ms':>8} {'share':>6} {'fwd GFLOP/s':>12}",
          file=sys.stderr)
    all_flops = sum(flops.values())
    for part in (*PARTS, "other"):
        f = flops[part]
        print(f"{part:8} {3 * f / 1e9:14.1f} {f / all_flops:6.1%} {part_s[part] * 1e3:8.0f} "
              f"{part_s[part] / fwd:6.1%} {f / part_s[part] / 1e9:12.1f}", file=sys.stderr)
    print(f"forward {fwd * 1e3:.0f} ms ({all_flops / fwd / 1e9:.1f} GFLOP/s); forward + backward "
          f"{step_s * 1e3:.0f} ms under the profiler: matrix products {matmul / everything:.0%} of op self "
          f"time, elementwise and the rest {1 - matmul / everything:.0%}", file=sys.stderr)


if __name__ == "__main__":
    main()
