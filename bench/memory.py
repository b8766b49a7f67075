"""Forward + backward time of the Titan memory: chunked path against the naive reference.

    .venv/bin/python bench/memory.py                        # small CPU shape, both paths
    .venv/bin/python bench/memory.py --device cuda --dtype bf16 --batch 16 --frames 8 \
        --tokens 258 --dim 384 --heads 6 --impl chunked     # the seeds' shape (DESIGN 8)

    .venv/bin/python bench/memory.py --memory preset --frames 8 --tokens 258 --dim 384 \
        --heads 6 --batch 1 --impl chunked --before main --compile   # peers.py's memory, A/B

Prints a table on stderr and one JSON object on stdout. Model FLOPs are counted from the
shapes (2 per multiply-add, forward + backward = 3 x forward, recomputation not counted):
one MLP memory chunk costs 18 * NB * C * head_dim * hidden * heads forward (the read-outs
of x and q, keys and targets through all memories, the inner backward, the update).
Timings are the median and the spread (min, max) of --repeats runs after --warmup runs;
the cases take turns within every repeat, so a machine whose load changes during the
run slows them alike and their ratios hold. --memory preset uses hope_multihead's memory
settings (hidden multiplier, rule, targets, short convolutions) at the given width and
heads; --compile adds every case with the chunk step compiled.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import statistics
import sys
import time

import torch

from _before import chunked_impl, load_chunked

from hopecli.console import err
from hopecli.model import preset_config
from hopecli.model.memory import SelfModifyingTitan, TitanConfig
from hopecli.model.memory.compiled import set_compile

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
CPU_TIME = False  # --cpu-time: the process's CPU seconds instead of wall seconds


def model_flops(cfg: TitanConfig, batch: int, length: int) -> float:
    """Forward + backward model FLOPs of one pass over [batch, length] tokens (MLP memory)."""
    nb = len(cfg.boxes)
    per_token = 18 * nb * cfg.head_dim * cfg.hidden_dim * cfg.heads
    return 3.0 * per_token * batch * length


def time_pass(titan: SelfModifyingTitan, x: torch.Tensor, chunk: int, impl: str, dtype: torch.dtype) -> float:
    """Seconds of one forward + backward."""
    device = x.device.type
    if device == "cuda":
        torch.cuda.synchronize()
    clock = time.process_time if CPU_TIME and device == "cpu" else time.perf_counter
    start = clock()
    with torch.autocast(device, dtype=dtype, enabled=dtype != torch.float32):
        y, _, _ = titan(x, chunk_size=chunk, impl=impl)
    y.float().square().mean().backward()
    if device == "cuda":
        torch.cuda.synchronize()
    return clock() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--frames", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=34, help="tokens per frame (= chunk size)")
    parser.add_argument("--dim", type=int, default=96)
    parser.add_argument("--heads", type=int, default=1)
    parser.add_argument("--hidden-mult", type=float, default=4.0)
    parser.add_argument("--rule", choices=["dgd", "gd"], default="dgd")
    parser.add_argument("--impl", choices=["both", "chunked", "naive"], default="both")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--before", metavar="REV", help="also time the chunked memory of git revision REV")
    parser.add_argument("--memory", choices=["flags", "preset"], default="flags",
                        help="flags: --hidden-mult and --rule; preset: hope_multihead's memory settings")
    parser.add_argument("--compile", action="store_true", help="also every case with the chunk step compiled")
    parser.add_argument("--cpu-time", action="store_true",
                        help="time the process's CPU seconds (on a shared CPU, waiting for a core does not count)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    global CPU_TIME
    CPU_TIME = args.cpu_time

    if args.memory == "preset":
        cfg = dataclasses.replace(preset_config("hope_multihead").memory, dim=args.dim, heads=args.heads)
    else:
        cfg = TitanConfig(dim=args.dim, heads=args.heads, hidden_mult=args.hidden_mult, update_rule=args.rule)
    titan = SelfModifyingTitan(cfg, frame_tokens=args.tokens).to(args.device)
    length = args.frames * args.tokens
    x = torch.randn(args.batch, length, args.dim, device=args.device, requires_grad=True)
    dtype = DTYPES[args.dtype]
    flops = model_flops(cfg, args.batch, length)
    impls = ["chunked", "naive"] if args.impl == "both" else [args.impl]
    old = load_chunked(args.before) if args.before else None
    if old is not None:
        impls += [f"{impl}@{args.before}" for impl in impls if impl == "chunked"]
    if args.compile:
        impls += [f"{impl} compiled" for impl in impls if impl.startswith("chunked")]
    times: dict[str, list[float]] = {impl: [] for impl in impls}
    first: dict[str, float] = {}

    def timed(impl: str) -> float:
        context = chunked_impl(old) if "@" in impl else contextlib.nullcontext()
        set_compile("on" if impl.endswith("compiled") else "off")
        with context:
            return time_pass(titan, x, args.tokens, impl.split("@")[0].split()[0], dtype)

    for impl in impls:
        first[impl] = timed(impl)  # compiles, with --compile
        for _ in range(args.warmup - 1):
            timed(impl)
    for _ in range(args.repeats):
        for impl in impls:
            times[impl].append(timed(impl))
    results = {}
    for impl in impls:
        median = statistics.median(times[impl])
        results[impl] = {
            "median_s": median,
            "min_s": min(times[impl]),
            "max_s": max(times[impl]),
            "tflops": flops / median / 1e12,
            "first_s": first[impl],
            "ratio_to_first_case": median / statistics.median(times[impls[0]]),
        }
    if args.device.startswith("cuda"):
        device_name = torch.cuda.get_device_name(torch.device(args.device))
    else:
        device_name = f"cpu ({torch.get_num_threads()} threads)"
    report = {
        "device": device_name,
        "dtype": args.dtype,
        "shape": {
            "batch": args.batch,
            "length": length,
            "chunk": args.tokens,
            "dim": args.dim,
            "heads": args.heads,
            "hidden": cfg.hidden_dim,
            "rule": cfg.update_rule,
            "memory_target": cfg.memory_target,
            "conv_size": cfg.conv_size,
        },
        "model_gflop_fwd_bwd": flops / 1e9,
        "clock": "process cpu time" if args.cpu_time else "wall time",
        "results": results,
    }
    if "naive" in results and "chunked" in results:
        report["naive_over_chunked"] = results["naive"]["median_s"] / results["chunked"]["median_s"]

    err.print(f"Titan memory fwd+bwd on {device_name}, {args.dtype}, B={args.batch} L={length} "
              f"C={args.tokens} D={args.dim} heads={args.heads} hidden={cfg.hidden_dim} rule={cfg.update_rule} "
              f"target={cfg.memory_target} conv={cfg.conv_size}, {args.repeats} repeats taking turns"
              + (", CPU time" if args.cpu_time else ", wall time"))
    for impl, r in results.items():
        err.print(f"  {impl:20s} median {r['median_s'] * 1e3:9.2f} ms  (min {r['min_s'] * 1e3:.2f}, "
                  f"max {r['max_s'] * 1e3:.2f})  {r['tflops']:.4f} TFLOP/s  x{r['ratio_to_first_case']:.2f} "
                  f"of {impls[0]}  first call {r['first_s']:.1f} s")
    if "naive_over_chunked" in report:
        err.print(f"  naive / chunked = {report['naive_over_chunked']:.1f}x")
    json.dump(report, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
