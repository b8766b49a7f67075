"""Where the H memory's forward + backward goes: FLOPs and time per part of the chunk step.

One SelfModifyingTitan as bench/peers.py times it (hope_multihead's memory: 6 heads of 64,
hidden 224, rule gd, the memory box storing v, short convolutions over time; --memory
seeds: hidden 256, rule dgd, self targets, no convolution), one-frame chunks of 258
tokens, width 384, at --batch x --frames. The chunk step is cut into its parts by
wrapping the functions of hopecli/model/memory/chunked.py:

    read      the read-outs of x by M_k, M_v, M_q, M_eta, M_alpha at W_c (_read)
    conv      the short convolutions of q, k, v (causal_conv)
    targets   self-generated targets, inner errors, normalisers, keys (chunk_targets)
    write     the UT/WY solves and the new state of every layer (write_chunk)
    output    the memory box's output through the chunk (read_memory_box)
    guard     the safeguard of the MLP writes (guard_write)

and the rest of the step (norms, rates, the loop) is "rest". FLOPs are counted with
FlopCounterMode in one forward (triangular solves included). Times come from
torch.profiler over --repeats forward + backward passes (median): every op's self time
goes to the part it ran in, forward, recomputed (checkpoint_chunks recomputes a chunk in
the backward) or backward (an autograd node belongs to the part whose forward op made
it), and is split into matrix products (bmm, mm, addmm, triangular solves) and
everything else.

    .venv/bin/python bench/memory_parts.py --threads 1
    .venv/bin/python bench/memory_parts.py --threads 1 --before main   # the parts of main beside
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from contextlib import ExitStack, nullcontext
from pathlib import Path
from unittest import mock

import torch
from torch.profiler import ProfilerActivity, profile, record_function
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).parent))
from _before import chunked_impl, load_module  # noqa: E402
from _timing import extra_flops  # noqa: E402

from hopecli.model import preset_config  # noqa: E402
from hopecli.model.memory import SelfModifyingTitan, TitanConfig, chunked  # noqa: E402
from hopecli.model.memory.compiled import set_compile  # noqa: E402

WIDTH, N = 384, 258
PARTS = {"read": "_read", "conv": "causal_conv", "targets": "chunk_targets", "write": "write_chunk",
         "output": "read_memory_box", "guard": "guard_write"}
MATMUL_OPS = ("aten::bmm", "aten::mm", "aten::addmm", "aten::linalg_solve_triangular", "aten::matmul",
              "aten::baddbmm")
PHASES = ("forward", "recompute", "backward")


def memory_config(which: str) -> TitanConfig:
    if which == "preset":
        return preset_config("hope_multihead").memory_config("H")
    return TitanConfig(dim=WIDTH, heads=6, hidden_mult=4.0, update_rule="dgd")


def patched(module, wrap):
    """Patches that route every part's call in `module` through wrap(part, fn)."""
    stack = ExitStack()
    for part, attr in PARTS.items():
        if hasattr(module, attr):
            stack.enter_context(mock.patch.object(module, attr, wrap(part, getattr(module, attr))))
    return stack


def labelled(part, fn):
    def run(*args, **kwargs):
        with record_function(f"part:{part}"):
            return fn(*args, **kwargs)

    return run


def split(events) -> dict[tuple[str, str, bool], float]:
    """Self time (s) per (phase, part, is a matrix product) of one profiled forward + backward."""
    seq_part: dict[int, str] = {}
    out: dict[tuple[str, str, bool], float] = defaultdict(float)
    for e in events:  # events come in start order: a forward op precedes its backward node
        part, phase, node = None, "forward", None
        p = e.cpu_parent
        while p is not None:
            if p.name.startswith("part:") and part is None and node is None:
                part = p.name[5:]
            if p.name.startswith("autograd::engine::evaluate_function"):
                node = p
                break
            p = p.cpu_parent
        if e.name.startswith("autograd::engine::evaluate_function"):
            node = e
        if node is not None:
            phase = "recompute" if part is not None else "backward"
            if part is None:
                part = seq_part.get(node.sequence_nr, "rest")
        elif e.sequence_nr >= 0:
            seq_part.setdefault(e.sequence_nr, part or "rest")
        if e.name.startswith("part:"):
            continue
        out[(phase, part or "rest", e.name in MATMUL_OPS)] += e.self_cpu_time_total / 1e6
    return out


def measure(memory, x, module, repeats: int) -> tuple[dict, dict, float]:
    """(GFLOP per part of one forward, seconds per (phase, part, matmul), fwd+bwd seconds)."""
    flops: dict[str, int] = defaultdict(int)

    def counted(part, fn):
        def run(*args, **kwargs):
            with FlopCounterMode(display=False, custom_mapping=extra_flops()) as inner:
                out = fn(*args, **kwargs)
            flops[part] += inner.get_total_flops()
            return out

        return run

    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=extra_flops()) as total, \
            patched(module, counted):
        memory(x, chunk_size=N)
    flops["rest"] = total.get_total_flops() - sum(flops.values())

    def step():
        memory.zero_grad(set_to_none=True)
        memory(x, chunk_size=N)[0].square().mean().backward()

    step()
    runs = []
    with patched(module, labelled):
        for _ in range(repeats):
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                step()
            runs.append(split(prof.profiler.function_events))
    keys = set().union(*runs)
    seconds = {k: statistics.median(r.get(k, 0.0) for r in runs) for k in keys}
    return {p: f / 1e9 for p, f in flops.items()}, seconds, sum(seconds.values())


def report(title: str, flops: dict, seconds: dict, total: float) -> dict:
    print(title, file=sys.stderr)
    print(f"{'part':8} {'GFLOP fwd':>9} {'fwd s':>7} {'recomp s':>8} {'bwd s':>7} {'all s':>7} {'share':>6} "
          f"{'matmul':>7}", file=sys.stderr)
    rows = {}
    for part in (*PARTS, "rest"):
        by = {ph: sum(seconds.get((ph, part, mm), 0.0) for mm in (True, False)) for ph in PHASES}
        mm = sum(seconds.get((ph, part, True), 0.0) for ph in PHASES)
        whole = sum(by.values())
        rows[part] = {"gflop_forward": flops.get(part, 0.0), **{f"{ph}_s": by[ph] for ph in PHASES},
                      "total_s": whole, "matmul_s": mm}
        print(f"{part:8} {flops.get(part, 0.0):9.2f} {by['forward']:7.3f} {by['recompute']:8.3f} "
              f"{by['backward']:7.3f} {whole:7.3f} {whole / total:6.1%} {mm / max(whole, 1e-9):7.0%}",
              file=sys.stderr)
    mm = sum(v for (_, _, m), v in seconds.items() if m)
    print(f"all      {sum(flops.values()):9.2f} {'':7} {'':8} {'':7} {total:7.3f}         {mm / total:7.0%} "
          f"(op self time under the profiler)", file=sys.stderr)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--memory", choices=["preset", "seeds"], default="preset")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--before", metavar="REV", help="also the parts of the chunked memory of git revision REV")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    set_compile("off")
    cfg = memory_config(args.memory)
    torch.manual_seed(0)
    memory = SelfModifyingTitan(cfg, frame_tokens=N)
    x = torch.randn(args.batch, args.frames * N, WIDTH, requires_grad=True)
    shape = (f"{args.memory} memory (6 heads, hidden {cfg.hidden_dim}, {cfg.update_rule}, target "
             f"{cfg.memory_target}, conv {cfg.conv_size}), batch {args.batch} x {args.frames} frames x {N}, "
             f"fp32, {torch.get_num_threads()} thread(s)")
    variants = [("this tree", chunked, nullcontext())]
    if args.before:
        old = load_module(args.before)
        variants.append((f"@{args.before}", old, chunked_impl(old.titan_chunked_compat)))
    results = {}
    for name, module, context in variants:
        with context:
            flops, seconds, total = measure(memory, x, module, args.repeats)
        results[name] = report(f"{name}: {shape}", flops, seconds, total)
    if args.json_out:
        args.json_out.write_text(json.dumps({"shape": shape, "results": results}, indent=2))


if __name__ == "__main__":
    main()
