"""Encoder throughput of `hope extract`: clips per second through the frozen V-JEPA 2 ViT.

Random weights (the architecture sets the cost, not the values). On a GPU the encoder
runs under bf16 autocast at ViT-L, 256 px, 16 frames by default; on the CPU in fp32 with
the small embedded "default" size so it finishes. Each batch size is warmed up, the
device synchronised around every repeat, and the median and min-max spread reported.

Model FLOPs are counted from the shapes, 2 per multiply-add, forward only: the tubelet
convolution, qkv, attention scores and values, the output projection and the MLP (norms,
RoPE, softmax and GELU are not counted). The share of peak is against a dense matmul
measured here: bf16 8192^3 on a GPU, fp32 1024^3 on the CPU.

    python bench/extract.py --repeats 3 --json-out extract_cpu.json        # CPU
    python bench/extract.py --batch-size 4 8 16 --json-out extract.json    # GPU
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
from dataclasses import asdict, dataclass

import torch
from rich import box
from rich.table import Table

from _timing import autocast, matmul_peak, timings

from hopecli.console import err
from hopecli.encoder import ENCODER_SIZES, EncoderConfig, encoder_config, load_encoder


@dataclass
class Result:
    batch: int
    tokens_per_clip: int
    median_ms: float  # one batch
    min_ms: float
    max_ms: float
    clips_per_s: float  # at the median
    gflop_per_clip: float
    tflops: float  # achieved, at the median
    peak_share: float  # of the measured matmul peak
    peak_mem_gib: float | None


def forward_flops(cfg: EncoderConfig, frames: int, height: int, width: int) -> int:
    """Model FLOPs of one clip's forward pass (2 per multiply-add)."""
    t, h, w = cfg.token_grid(frames, height, width)
    n, d = t * h * w, cfg.embed_dim
    patch = n * cfg.in_chans * cfg.tubelet_size * cfg.patch_size**2 * d
    qkv, proj = n * d * 3 * d, n * d * d
    scores = values = n * n * d  # summed over heads
    mlp = 2 * n * d * cfg.mlp_hidden_dim
    return 2 * (patch + cfg.depth * (qkv + scores + values + proj + mlp))


def matmul_peak_label(device: torch.device) -> tuple[float, str]:
    """Measured dense matmul TFLOP/s (bf16 on a GPU, fp32 on the CPU) and its description."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    n = 8192 if device.type == "cuda" else 1024
    return matmul_peak(device, dtype), f"{str(dtype).removeprefix('torch.')} matmul {n}^3"


def run(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    on_gpu = device.type == "cuda"
    size = args.size or ("vit_large" if on_gpu else "default")
    cfg = encoder_config(size, img_size=args.img_size, num_frames=args.frames)
    model = load_encoder(config=cfg).model.to(device)
    peak, peak_label = matmul_peak_label(device)
    flops = forward_flops(cfg, args.frames, args.img_size, args.img_size)
    tokens = cfg.token_grid(args.frames, args.img_size, args.img_size)
    amp = autocast(device, on_gpu)

    results = []
    for batch in args.batch_size:
        err.print(f"[dim]{size}, batch {batch} ...[/dim]")
        video = torch.randn(batch, 3, args.frames, args.img_size, args.img_size, device=device)

        def forward():
            with torch.inference_mode(), amp:
                return model(video)

        if on_gpu:
            torch.cuda.reset_peak_memory_stats(device)
        times = timings(forward, device, args.warmup, args.repeats)
        median = statistics.median(times)
        tflops = batch * flops / median / 1e12
        results.append(Result(
            batch=batch, tokens_per_clip=tokens[0] * tokens[1] * tokens[2],
            median_ms=median * 1e3, min_ms=min(times) * 1e3, max_ms=max(times) * 1e3,
            clips_per_s=batch / median, gflop_per_clip=flops / 1e9, tflops=tflops,
            peak_share=tflops / peak,
            peak_mem_gib=torch.cuda.max_memory_allocated(device) / 2**30 if on_gpu else None,
        ))
        del video

    return {
        "size": size, "config": cfg.to_dict(), "frames": args.frames, "img_size": args.img_size,
        "device": torch.cuda.get_device_name(device) if on_gpu else platform.processor() or "cpu",
        "threads": torch.get_num_threads(), "dtype": "bf16 autocast" if on_gpu else "fp32",
        "torch": torch.__version__, "matmul_peak_tflops": peak, "matmul_peak": peak_label,
        "warmup": args.warmup, "repeats": args.repeats,
        "results": [asdict(r) for r in results],
    }


def render(report: dict) -> None:
    cfg = report["config"]
    err.print(f"encoder {report['size']} ({cfg['embed_dim']} wide, {cfg['depth']} deep, "
              f"{cfg['num_heads']} heads), {report['frames']} frames at {report['img_size']} px")
    err.print(f"{report['dtype']} on {report['device']} ({report['threads']} threads), torch "
              f"{report['torch']}; peak {report['matmul_peak']} = "
              f"{report['matmul_peak_tflops']:.3f} TFLOP/s")
    on_gpu = report["results"][0]["peak_mem_gib"] is not None
    columns = ["batch", "tokens", "ms", "min-max ms", "clips/s", "GFLOP", "TFLOP/s",
               "% peak"] + (["mem GiB"] if on_gpu else [])
    table = Table(*columns, box=box.SIMPLE_HEAD, title="ms per batch, GFLOP per clip")
    for column in table.columns:
        column.justify = "right"
    for r in report["results"]:
        row = [str(r["batch"]), str(r["tokens_per_clip"]), f"{r['median_ms']:.1f}",
               f"{r['min_ms']:.0f}-{r['max_ms']:.0f}", f"{r['clips_per_s']:.2f}",
               f"{r['gflop_per_clip']:.1f}", f"{r['tflops']:.3f}", f"{100 * r['peak_share']:.1f}"]
        table.add_row(*row, *([f"{r['peak_mem_gib']:.2f}"] if on_gpu else []))
    err.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", choices=sorted(ENCODER_SIZES),
                        help="encoder size (default: vit_large on a GPU, default on the CPU)")
    parser.add_argument("--img-size", type=int, default=256)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--batch-size", type=int, nargs="+", default=None,
                        help="one or more batch sizes (default: 8 on a GPU, 2 on the CPU)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json-out", help="write the report as JSON to this file")
    args = parser.parse_args(argv)
    if args.batch_size is None:
        args.batch_size = [8] if args.device.startswith("cuda") else [2]
    report = run(args)
    render(report)
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
