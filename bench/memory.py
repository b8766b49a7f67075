"""Forward + backward time of the Titan memory: chunked path against the naive reference.

    .venv/bin/python bench/memory.py                        # small CPU shape, both paths
    .venv/bin/python bench/memory.py --device cuda --dtype bf16 --batch 16 --frames 8 \
        --tokens 258 --dim 384 --heads 6 --impl chunked     # the seeds' shape (DESIGN 8)

Prints a table on stderr and one JSON object on stdout. Model FLOPs are counted from the
shapes (2 per multiply-add, forward + backward = 3 x forward, recomputation not counted):
one MLP memory chunk costs 18 * NB * C * head_dim * hidden * heads forward (the read-outs
of x and q, keys and targets through all memories, the inner backward, the update).
Timings are the median and the spread (min, max) of --repeats runs after --warmup runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time

import torch

from _before import chunked_impl, load_chunked

from hopecli.console import err
from hopecli.model.memory import SelfModifyingTitan, TitanConfig

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


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
    start = time.perf_counter()
    with torch.autocast(device, dtype=dtype, enabled=dtype != torch.float32):
        y, _, _ = titan(x, chunk_size=chunk, impl=impl)
    y.float().square().mean().backward()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


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
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    cfg = TitanConfig(dim=args.dim, heads=args.heads, hidden_mult=args.hidden_mult, update_rule=args.rule)
    titan = SelfModifyingTitan(cfg).to(args.device)
    length = args.frames * args.tokens
    x = torch.randn(args.batch, length, args.dim, device=args.device, requires_grad=True)
    dtype = DTYPES[args.dtype]
    flops = model_flops(cfg, args.batch, length)
    impls = ["chunked", "naive"] if args.impl == "both" else [args.impl]
    old = load_chunked(args.before) if args.before else None
    if old is not None:
        impls.append(f"chunked@{args.before}")
    results = {}
    for impl in impls:
        context = chunked_impl(old) if "@" in impl else contextlib.nullcontext()
        run = impl.split("@")[0]
        with context:
            for _ in range(args.warmup):
                time_pass(titan, x, args.tokens, run, dtype)
            times = [time_pass(titan, x, args.tokens, run, dtype) for _ in range(args.repeats)]
        median = statistics.median(times)
        results[impl] = {
            "median_s": median,
            "min_s": min(times),
            "max_s": max(times),
            "tflops": flops / median / 1e12,
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
            "rule": args.rule,
        },
        "model_gflop_fwd_bwd": flops / 1e9,
        "results": results,
    }
    if "naive" in results and "chunked" in results:
        report["naive_over_chunked"] = results["naive"]["median_s"] / results["chunked"]["median_s"]

    err.print(f"Titan memory fwd+bwd on {device_name}, {args.dtype}, B={args.batch} L={length} "
              f"C={args.tokens} D={args.dim} heads={args.heads} hidden={cfg.hidden_dim} rule={args.rule}")
    for impl, r in results.items():
        err.print(f"  {impl:8s} median {r['median_s'] * 1e3:9.2f} ms  (min {r['min_s'] * 1e3:.2f}, "
                  f"max {r['max_s'] * 1e3:.2f})  {r['tflops']:.4f} TFLOP/s")
    if "naive_over_chunked" in report:
        err.print(f"  naive / chunked = {report['naive_over_chunked']:.1f}x")
    json.dump(report, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
