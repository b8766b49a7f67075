"""hope's memories beside their peers, forward + backward, per memory and per FLOP.

    pip install --target /tmp/peers --no-deps titans-pytorch fla-core einops einx assoc-scan \
        axial-positional-embedding rotary-embedding-torch tensordict pyvers cloudpickle orjson \
        importlib_metadata frozendict hyper-connections x-transformers loguru torch-einops-utils
    PYTHONPATH=/tmp/peers OMP_NUM_THREADS=1 python bench/peers.py --threads 1 --cpu-time

Same input for every case: batch x (frames x 258 tokens), width 384, 6 heads of 64, chunk
258 (one frame), fp32 on the CPU (bf16 autocast on a GPU):

    hope H        SelfModifyingTitan with hope_multihead's memory: six MLP memories
                  (M_k, M_v, M_q, M_eta, M_alpha, M_memory), exact in-chunk writes; each
                  chunk recomputed in the backward (checkpoint_chunks, the preset's choice)
    hope H whole  the same with a compiled chunk recomputed whole (recompute "whole"; the
                  default "selective" keeps its solves and wide products, chunked.SAVE_INNER)
    hope H kept   the same with every chunk's activations kept for the backward, as
                  titans-pytorch keeps its own (about 155 MB a chunk of 258 tokens and a
                  sample, compiled)
    titans        titans_pytorch.NeuralMemory(dim 384, 6 heads of 64, chunk 258): one MLP
                  memory with summed chunk gradients
    hope L        the same block's linear memory (rule gd, the gated delta rule), 6 memories
    fla GDN       fla's pure-PyTorch chunk reference of the gated delta rule
                  (naive_chunk_gated_delta_rule, chunk 64), one linear memory per head

Every case runs eager and compiled (hope: its chunk step through compiled.py; a peer:
torch.compile of its forward), at 8 and 64 frames by default. Per memory divides the time
by the memories a layer keeps (6 for hope, 1 for the peers). FLOPs are 3 x the eager
forward's (FlopCounterMode with triangular solves counted, gradients on, so
titans-pytorch's in-forward chunk gradients count as its forward; hope's recomputation in
the backward is not counted), so GFLOP/s
compares how well each uses the machine. Within a shape, after each case's first call
(compilation included, reported apart) and warm-up, the cases take turns in every
repeat, so a load that changes during the run slows them alike; --cpu-time counts the
process's CPU seconds instead of wall seconds (on a shared CPU, waiting for a core does
not count). titans-pytorch and fla-core are optional: a missing one is skipped with a
message. Not a test: neither is a dependency of hope.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parent))
from _timing import autocast, extra_flops, matmul_peak, sync  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from hopecli.model import preset_config  # noqa: E402
from hopecli.model.memory import SelfModifyingTitan  # noqa: E402
from hopecli.model.memory.compiled import set_compile  # noqa: E402

err = Console(stderr=True, width=None if Console(stderr=True).is_terminal else 150)
WIDTH, HEADS, N = 384, 6, 258


def hope_case(letter: str, x: torch.Tensor, kept: bool = False, recompute: str | None = None):
    cfg = preset_config("hope_multihead").memory_config(letter)
    cfg.checkpoint_chunks = cfg.checkpoint_chunks and not kept
    cfg.recompute = recompute or cfg.recompute
    memory = SelfModifyingTitan(cfg, frame_tokens=N).to(x.device)
    return memory, lambda: memory(x, chunk_size=N)[0], 6


def titans_case(x: torch.Tensor):
    from titans_pytorch import NeuralMemory

    memory = NeuralMemory(dim=WIDTH, chunk_size=N, heads=HEADS, dim_head=WIDTH // HEADS).to(x.device)
    return memory, lambda: memory(x)[0], 1


def fla_case(x: torch.Tensor):
    from fla.ops.gated_delta_rule.naive import naive_chunk_gated_delta_rule

    B, L, _ = x.shape
    proj = torch.nn.Linear(WIDTH, 3 * WIDTH + 2 * HEADS).to(x.device)

    def forward():
        q, k, v, g, beta = proj(x).split([WIDTH, WIDTH, WIDTH, HEADS, HEADS], dim=-1)
        q, k, v = (t.reshape(B, L, HEADS, -1) for t in (q, k, v))
        k = torch.nn.functional.normalize(k, dim=-1)
        o, _ = naive_chunk_gated_delta_rule(q, k, v, torch.nn.functional.logsigmoid(g), beta.sigmoid(),
                                            chunk_size=64)
        return o

    return proj, forward, 1


CASES = {"hope H": lambda x: hope_case("H", x), "hope H kept": lambda x: hope_case("H", x, kept=True),
         "hope H whole": lambda x: hope_case("H", x, recompute="whole"),
         "titans": titans_case,
         "hope L": lambda x: hope_case("L", x), "fla GDN": fla_case}


class Case:
    """One memory in one mode on one input: its timed step and its model FLOPs."""

    def __init__(self, name: str, compiled: bool, x: torch.Tensor, bf16: bool) -> None:
        self.name, self.compiled, self.x, self.bf16 = name, compiled, x, bf16
        self.module, forward, self.memories = CASES[name](x)
        self.hope = name.startswith("hope")
        set_compile("off")
        with autocast(x.device, bf16), FlopCounterMode(display=False, custom_mapping=extra_flops()) as counter:
            forward()  # eager; gradients on: titans-pytorch takes its chunk gradients inside
        self.flops = 3 * counter.get_total_flops()
        self.forward = torch.compile(forward) if compiled and not self.hope else forward
        self.times: list[float] = []
        self.first = 0.0

    @property
    def label(self) -> str:
        return self.name + (" compiled" if self.compiled else "")

    def step(self) -> None:
        set_compile("on" if self.compiled and self.hope else "off")  # hope's compile policy
        self.module.zero_grad(set_to_none=True)
        self.x.grad = None
        with autocast(self.x.device, self.bf16):
            out = self.forward()
        out.float().square().mean().backward()


def run_shape(names, batch: int, frames: int, args, device, bf16: bool) -> list[dict]:
    clock = time.process_time if args.cpu_time and device.type == "cpu" else time.perf_counter
    cases = []
    for compiled in args.modes:
        for name in names:
            if compiled and f"{name}@{frames}" in args.no_compile:
                continue
            torch.manual_seed(0)
            x = torch.randn(batch, frames * N, WIDTH, device=device, requires_grad=True)
            try:
                cases.append(Case(name, compiled, x, bf16))
            except ImportError as e:
                err.print(f"{name}: skipped ({e}); see the install line in bench/peers.py", highlight=False)

    def timed(case: Case) -> float:
        sync(device)
        start = clock()
        case.step()
        sync(device)
        return clock() - start

    for case in cases:
        case.first = timed(case)  # compiles, in a compiled mode
        for _ in range(args.warmup):
            timed(case)
        err.print(f"[dim]{case.label} {batch} x {frames} frames: first call {case.first:.1f} s[/dim]")
    for _ in range(args.repeats):
        for case in cases:
            case.times.append(timed(case))
    rows = []
    for case in cases:
        median = statistics.median(case.times)
        rows.append({"case": case.label, "batch": batch, "frames": frames, "tokens": batch * frames * N,
                     "median_s": median, "min_s": min(case.times), "max_s": max(case.times),
                     "memories": case.memories, "per_memory_s": median / case.memories,
                     "gflop": case.flops / 1e9, "gflops_per_s": case.flops / median / 1e9,
                     "first_call_s": case.first})
        err.print(f"{rows[-1]['case']} {batch} x {frames} frames: {median:.2f} s", highlight=False)
    titans = {r["case"].endswith(" compiled"): r["per_memory_s"] for r in rows if r["case"].startswith("titans")}
    for r in rows:
        base = titans.get(r["case"].endswith(" compiled"))
        r["per_memory_x_titans"] = r["per_memory_s"] / base if base else None
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[8, 64])
    parser.add_argument("--batch", type=int, nargs="+", default=None,
                        help="batch per --frames entry (default 1 each)")
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--modes", nargs="+", default=["eager", "compiled"], choices=["eager", "compiled"])
    parser.add_argument("--no-compile", nargs="+", default=[], metavar="CASE@FRAMES",
                        help='cases left out of the compiled mode at a shape, e.g. "fla GDN@64" (its Python '
                             'loop over 64-token chunks unrolls into 258 steps there: a compilation of more '
                             'than 20 minutes on the CPU)')
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--cpu-time", action="store_true", help="CPU seconds of the process instead of wall seconds")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args()
    args.modes = [m == "compiled" for m in args.modes]
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    bf16 = device.type == "cuda"
    peak = matmul_peak(device, torch.bfloat16 if bf16 else torch.float32)
    batches = args.batch or [1] * len(args.frames)
    rows = []
    for frames, batch in zip(args.frames, batches):
        rows += run_shape(args.cases, batch, frames, args, device, bf16)
    clock = "CPU s" if args.cpu_time and device.type == "cpu" else "s"
    table = Table(title=f"memories forward + backward on {device} ({'bf16' if bf16 else 'fp32'}), width {WIDTH}, "
                        f"{HEADS} heads, chunk {N}, threads {torch.get_num_threads()}, "
                        f"matmul peak {peak * 1e3:.1f} GFLOP/s, {clock}")
    for col in ("case", "batch x frames", f"{clock} (median)", "spread", "memories", f"{clock} per memory",
                "x titans", "GFLOP", "GFLOP/s", "of peak", "first call s"):
        table.add_column(col, justify="left" if col == "case" else "right")
    for r in rows:
        table.add_row(r["case"], f"{r['batch']} x {r['frames']}", f"{r['median_s']:.3f}",
                      f"{r['min_s']:.2f}-{r['max_s']:.2f}", str(r["memories"]), f"{r['per_memory_s']:.3f}",
                      f"{r['per_memory_x_titans']:.2f}" if r["per_memory_x_titans"] else "",
                      f"{r['gflop']:.1f}", f"{r['gflops_per_s']:.1f}", f"{r['gflops_per_s'] / 1e3 / peak:.0%}",
                      f"{r['first_call_s']:.1f}")
    err.print(table)
    if args.json_out:
        args.json_out.write_text(json.dumps({"device": str(device), "threads": torch.get_num_threads(),
                                             "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
                                             "clock": "process cpu time" if clock == "CPU s" else "wall time",
                                             "matmul_peak_tflops": peak, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
