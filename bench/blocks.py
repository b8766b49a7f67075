"""Forward + backward time of single predictor blocks and whole presets.

Shapes follow the seeds: batch 16, 8 frames of 258 tokens (256 patches + action +
state), width 384; `--long` adds 64 frames at batch 2 (the same token count per batch).
On a GPU the blocks run under bf16 autocast; on the CPU in fp32 (pass a smaller
--batch there). Each case is warmed up, the device synchronised around every repeat,
and the median and min-max spread reported with the achieved TFLOP/s.

FLOPs are model FLOPs counted from the shapes (2 per multiply-add): the forward pass is
counted op by op with torch's FlopCounterMode (matmuls, attention) and the backward
taken as 2x the forward, except the attention core, whose backward is 2.5x its forward
(the five products of a FlashAttention-style backward), as FlopCounterMode counts it.
Recomputation inside the memory's backward is work done, not model FLOPs, so it is not
counted. The share of peak is against a bf16 (GPU) or fp32 (CPU) matmul measured here.

    python bench/blocks.py --batch 1 --repeats 3          # CPU
    python bench/blocks.py --long --json-out bench.json   # GPU
    python bench/blocks.py --batch 1 --threads 1 --compile --before main   # eager vs compiled vs main

--compile adds every H block with its memory compiled (the first call, compilation
included, is reported apart); --before REV adds them with the chunked memory of REV.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode

from _before import load_chunked, under
from _timing import autocast, matmul_peak, timings

from hopecli.model import build_predictor
from hopecli.model.attention import block_causal_mask, token_positions
from hopecli.model.blocks import HopeBlock, SequenceContext, TransformerBlock
from hopecli.model.memory import TitanConfig
from hopecli.model.memory.compiled import set_compile

err = Console(stderr=True, width=None if Console(stderr=True).is_terminal else 150)

P, COND = 256, 2
N = P + COND
GRID = 16
WIDTH = 384
CMS = ((2.0, 2.5, 3.0), (1, 4, 16))


@dataclass
class Result:
    case: str
    batch: int
    frames: int
    tokens: int
    median_ms: float
    min_ms: float
    max_ms: float
    gflop: float  # model FLOPs of one forward + backward, in GFLOP
    tflops: float  # achieved
    peak_share: float | None  # of the measured matmul peak
    ratio_to_attention: float | None  # median / median of the masked T block, same shape
    peak_mem_gib: float | None
    first_call_s: float  # the first forward+backward, compilation included


# The CPU attention kernel has no formula in torch's counter; it does the same products.
_CPU_SDPA = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
if _CPU_SDPA not in flop_counter.flop_registry:
    flop_counter.register_flop_formula(_CPU_SDPA)(
        lambda q, k, v, *args, out_shape=None, **kwargs: flop_counter.sdpa_flop_count(q, k, v)
    )


def model_flops(forward: Callable[[], object]) -> int:
    """3 x forward FLOPs, plus 0.5 x the attention core's forward (see module doc)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        forward()
    total = counter.get_total_flops()
    attention = sum(
        n for op, n in counter.get_flop_counts().get("Global", {}).items() if "attention" in str(op)
    )
    return 3 * total + attention // 2


def block_case(block: torch.nn.Module, batch: int, frames: int, masked: bool, device, bf16: bool):
    """(forward, forward+backward) closures of one block on random tokens."""
    L = frames * N
    ctx = SequenceContext(
        tokens_per_frame=N,
        positions=token_positions(0, frames, (GRID, GRID), COND, device),
        attn_mask=block_causal_mask(frames, N, 0, device) if masked else None,
        chunk_size=N,
        update_memory=True,
    )
    x = torch.randn(batch, L, WIDTH, device=device, requires_grad=True)

    def forward():
        with autocast(device, bf16):
            return block(x, ctx)[0]

    def step():
        block.zero_grad(set_to_none=True)
        x.grad = None
        forward().float().square().mean().backward()

    return forward, step


def preset_case(name: str, batch: int, frames: int, device, bf16: bool):
    torch.manual_seed(0)
    model = build_predictor(name, input_dim=1024, action_dim=2, state_dim=2, patches_per_step=P).to(device)
    features = torch.randn(batch, frames, P, 1024, device=device)
    actions = torch.randn(batch, frames, 2, device=device)
    states = torch.randn(batch, frames, 2, device=device)
    target = F.layer_norm(torch.randn_like(features), (1024,))

    def forward():
        with autocast(device, bf16):
            return model(features, actions, states).pred

    def step():
        model.zero_grad(set_to_none=True)
        F.l1_loss(forward().float(), target).backward()

    return forward, step


def build_cases(args, device) -> list[tuple[str, int, int, Callable]]:
    """(name, batch, frames, maker) for every requested case and shape."""
    shapes = [(args.batch, args.frames)] + ([(args.long_batch, 64)] if args.long else [])
    phase5 = TitanConfig(dim=WIDTH, heads=1, hidden_mult=4.0, update_rule="dgd", static_q=True)
    multihead = TitanConfig(dim=WIDTH, heads=6, hidden_mult=4.0, update_rule="dgd")
    cases = []
    for batch, frames in shapes:
        if "blocks" in args.cases:
            cases += [
                ("T block (block-causal)", batch, frames,
                 lambda b=batch, f=frames: block_case(TransformerBlock(WIDTH, 16, 4.0, True, 0.0, 0).to(device), b, f, True, device, args.bf16)),
                ("T block (no mask)", batch, frames,
                 lambda b=batch, f=frames: block_case(TransformerBlock(WIDTH, 16, 4.0, True, 0.0, 0).to(device), b, f, False, device, args.bf16)),
                ("H block (6-head memories)", batch, frames,
                 lambda b=batch, f=frames: block_case(HopeBlock(WIDTH, multihead, *CMS, N, True, 0.0, 0).to(device), b, f, False, device, args.bf16)),
                ("H block (phase 5, full width)", batch, frames,
                 lambda b=batch, f=frames: block_case(HopeBlock(WIDTH, phase5, *CMS, N, True, 0.0, 0).to(device), b, f, False, device, args.bf16)),
            ]
            eager_h = [c for c in cases if c[0].startswith("H block") and c[1:3] == (batch, frames)]
            if args.compile:
                for name, b, f, make in eager_h:
                    cases.append((f"{name} compiled", b, f, lambda make=make: compiled_step(*make())))
            if args.before:
                old = load_chunked(args.before)
                for name, b, f, make in eager_h:
                    cases.append((f"{name} @{args.before}", b, f, lambda make=make: tuple(under(old, fn) for fn in make())))
        if "presets" in args.cases:
            cases += [
                (f"preset {name}", batch, frames,
                 lambda n=name, b=batch, f=frames: preset_case(n, b, f, device, args.bf16))
                for name in args.presets
            ]
    return cases


def compiled_step(forward: Callable, step: Callable) -> tuple[Callable, Callable]:
    """The timed step with the memory compiled (--compile on); FLOPs are counted eager."""

    def run_compiled():
        set_compile("on")
        try:
            return step()
        finally:
            set_compile("off")

    return forward, run_compiled


def run(args) -> tuple[list[Result], dict]:
    device = torch.device(args.device)
    peak = matmul_peak(device, torch.bfloat16 if args.bf16 else torch.float32)
    results: list[Result] = []
    attention_ms: dict[tuple[int, int], float] = {}
    for name, batch, frames, make in build_cases(args, device):
        err.print(f"[dim]{name}, batch {batch}, {frames} frames ...[/dim]")
        forward, step = make()
        flops = model_flops(forward)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        step()  # the first call compiles, with --compile
        first_s = time.perf_counter() - start
        times = timings(step, device, args.warmup, args.repeats)
        median = statistics.median(times)
        if name == "T block (block-causal)":
            attention_ms[(batch, frames)] = median * 1e3
        tflops = flops / median / 1e12
        base = attention_ms.get((batch, frames))
        results.append(
            Result(
                case=name,
                batch=batch,
                frames=frames,
                tokens=frames * N,
                median_ms=median * 1e3,
                min_ms=min(times) * 1e3,
                max_ms=max(times) * 1e3,
                gflop=flops / 1e9,
                tflops=tflops,
                peak_share=tflops / peak if peak > 0 else None,
                ratio_to_attention=median * 1e3 / base if base and name.startswith("H block") else None,
                peak_mem_gib=torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
                first_call_s=first_s,
            )
        )
        del forward, step
    meta = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)",
        "dtype": "bf16 autocast" if args.bf16 else "fp32",
        "matmul_peak_tflops": peak,
        "torch": torch.__version__,
        "warmup": args.warmup,
        "repeats": args.repeats,
    }
    return results, meta


def render(results: list[Result], meta: dict) -> None:
    table = Table(title=f"forward+backward on {meta['device']}, {meta['dtype']}, "
                        f"matmul peak {meta['matmul_peak_tflops']:.2f} TFLOP/s (measured)")
    for col in ("case", "batch x frames", "median ms", "min-max ms", "x T block", "GFLOP", "TFLOP/s", "% peak",
                "MFLOP/token", "first call s"):
        table.add_column(col, justify="left" if col == "case" else "right")
    for r in results:
        table.add_row(
            r.case,
            f"{r.batch} x {r.frames}",
            f"{r.median_ms:.1f}",
            f"{r.min_ms:.1f}-{r.max_ms:.1f}",
            f"{r.ratio_to_attention:.2f}" if r.ratio_to_attention else "",
            f"{r.gflop:.1f}",
            f"{r.tflops:.3f}",
            f"{100 * r.peak_share:.1f}" if r.peak_share is not None else "",
            f"{r.gflop * 1e3 / (r.batch * r.tokens):.1f}",
            f"{r.first_call_s:.1f}",
        )
    err.print(table)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--long", action="store_true", help="also 64 frames at --long-batch")
    parser.add_argument("--long-batch", type=int, default=2)
    parser.add_argument("--cases", default="blocks,presets", help="comma list of: blocks, presets")
    parser.add_argument("--presets", default="vit_baseline,hope_phase5,hybrid,hope_multihead")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                        help="bf16 autocast (default: on for cuda, off for cpu)")
    parser.add_argument("--json-out", help="write the results as JSON here")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--compile", action="store_true",
                        help="also time the H blocks with the memory compiled (torch.compile)")
    parser.add_argument("--before", metavar="REV", help="also time the H blocks with the memory of git revision REV")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    set_compile("off")  # eager unless a case says otherwise
    args.cases = args.cases.split(",")
    args.presets = [p for p in args.presets.split(",") if p]
    if args.bf16 is None:
        args.bf16 = args.device.startswith("cuda")
    results, meta = run(args)
    render(results, meta)
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"meta": meta, "results": [asdict(r) for r in results]}, f, indent=2)
        err.print(f"wrote {args.json_out}")


if __name__ == "__main__":
    sys.exit(main())
