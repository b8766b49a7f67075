"""`hope train` steps/s of the demo's presets side by side, eager and with --compile on.

Runs the real command at the demo's settings (Makefile DEMO_TRAIN: batch 8, lr 6e-3,
3 validation clips per task, seed 0; the ViT with 5 blocks as in the demo) on one task of a
feature store, every run in its own process with the same --threads, one after another.
Model FLOPs of one forward + backward of each preset are counted beside (FlopCounterMode).
Speed is read from the run's metrics.jsonl (clips/s per logged step, --log-every 1),
the first --skip steps left out (warm-up; with --compile on they include compilation,
which is reported apart as the first steps' extra seconds).

    .venv/bin/python bench/train_speed.py demo_out/sample.zarr --steps 12 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUNS = {
    "vit_tiny (TTTTT)": ["--preset", "vit_tiny", "--pattern", "TTTTT"],
    "hope_tiny": ["--preset", "hope_tiny"],
    # the same model recomputing each memory chunk in the backward (same math, less memory;
    # the default of the full-size presets, which the tiny ones turn off)
    "hope_tiny, recompute": ["--preset", "hope_tiny", "--checkpoint-chunks"],
}
DEMO = ["--batch-size", "8", "--lr", "6e-3", "--val-clips", "3", "--seed", "0", "--strategy", "naive"]


def model_gflop(name: str) -> float:
    """Model FLOPs (3 x forward, GFLOP) of one forward + backward at the demo's shapes:
    batch 8, 8 steps of 64 patches of 192 features (as bench/threads.py)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from hopecli.model import build_predictor

    pattern = RUNS[name][3:4]  # the --pattern value, if any
    kwargs = {"pattern": pattern[0]} if pattern else {}
    model = build_predictor(RUNS[name][1], input_dim=192, action_dim=2, state_dim=2, patches_per_step=64,
                            grid=(8, 8), **kwargs)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.randn(8, 8, 64, 192), torch.randn(8, 8, 2), torch.randn(8, 8, 2))
    return 3 * counter.get_total_flops() / 1e9


def one_run(store: str, name: str, compile_mode: str, args) -> dict:
    with tempfile.TemporaryDirectory(prefix="hope-train-speed-") as tmp:
        out = Path(tmp) / "run"
        cmd = [sys.executable, "-c", "import sys; from hopecli.cli import main; sys.argv[0] = 'hope'; main()",
               "train", store, "--out", str(out), *RUNS[name], *DEMO,
               "--tasks", args.task, "--steps", str(args.steps), "--log-every", "1",
               "--threads", str(args.threads), "--compile", compile_mode]
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, text=True)
        wall = time.perf_counter() - start
        steps = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    seconds = [8 / r["clips_per_s"] for r in steps if r.get("kind") == "step"]  # batch 8
    timed = seconds[args.skip:]
    median = statistics.median(timed)
    return {"run": name, "compile": compile_mode, "threads": args.threads, "steps_per_s": 1 / median,
            "median_step_s": median, "min_step_s": min(timed), "max_step_s": max(timed),
            "first_steps_extra_s": sum(seconds[: args.skip]) - args.skip * median, "wall_s": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("store", help="feature store of the demo (hope extract sample_data ...)")
    parser.add_argument("--task", default="low")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--skip", type=int, default=2, help="first steps left out of the median")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--compile", default="off,on", help="comma list of --compile modes to run")
    args = parser.parse_args()
    results = []
    for mode in args.compile.split(","):
        for name in RUNS:
            r = one_run(args.store, name, mode, args)
            results.append(r)
            print(f"{name:18} --compile {mode:4} {r['threads']} thread(s): {r['steps_per_s']:.2f} steps/s "
                  f"(step median {r['median_step_s'] * 1e3:.0f} ms, min {r['min_step_s'] * 1e3:.0f}, "
                  f"max {r['max_step_s'] * 1e3:.0f}; first {args.skip} steps +{r['first_steps_extra_s']:.1f} s; "
                  f"wall {r['wall_s']:.1f} s)", file=sys.stderr)
    gflop = {name: model_gflop(name) for name in RUNS}
    for name, g in gflop.items():
        print(f"{name:18} {g:.2f} GFLOP per forward + backward of the model (3 x forward) at the demo's shapes",
              file=sys.stderr)
    for r in results:
        r["model_gflop"] = gflop[r["run"]]
    vit = {r["compile"]: r["steps_per_s"] for r in results if r["run"].startswith("vit")}
    for r in results:
        if r["run"].startswith("hope_tiny"):
            print(f"{r['run']} --compile {r['compile']}: ViT (eager) is "
                  f"{vit.get('off', vit.get(r['compile'], float('nan'))) / r['steps_per_s']:.2f}x faster",
                  file=sys.stderr)
    json.dump({"cores": os.cpu_count(), "results": results}, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
