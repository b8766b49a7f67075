"""The in-context benchmark study: does a trained predictor learn each clip's law as it watches it?

    .venv/bin/python bench/incontext.py --out /tmp/icl                  # every preset below
    .venv/bin/python bench/incontext.py --out /tmp/icl --runs hope_tiny,vit_tiny5 --steps 100

Writes a hidden-dynamics store (`hope synth --dynamics`), trains every run of RUNS on the
linear and nonlinear families at equal steps (joint, teacher forcing only, --jobs
processes side by side, one thread each), then scores each on its validation clips and on
the held-out family through hopecli.eval.incontext: the error of each step, memories writing
and frozen, beside copy, the no-context map, in-context least squares and the oracle.
Prints the table and the targets of issue 18, the learning curves (training loss per
--curve-every steps, from each run's metrics.jsonl), and writes OUT/incontext.json and
OUT/incontext.png. Not a test: it trains for minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

err = Console(stderr=True, width=160)

# name -> hope train arguments (the preset's own settings unless overridden)
RUNS = {
    "hope_tiny": ["--preset", "hope_tiny"],
    "hope_tiny_seeds": ["--preset", "hope_tiny", "--conv-size", "0", "--memory-target", "self",
                        "--update-rule", "dgd"],
    "conv_seeds_rule": ["--preset", "hope_tiny", "--memory-target", "self", "--update-rule", "dgd"],
    "conv_sequence": ["--preset", "hope_tiny", "--conv-axis", "sequence"],
    "gdn_tiny": ["--preset", "hope_tiny", "--pattern", "LL"],
    "hybrid_tiny": ["--preset", "hybrid_tiny"],
    "vit_tiny5": ["--preset", "vit_tiny", "--pattern", "TTTTT"],
}


def train(name: str, args, store: Path) -> tuple[str, float]:
    out = args.out / name
    if (out / "results.json").exists() and json.loads((out / "results.json").read_text()).get("complete"):
        return name, 0.0
    cmd = [sys.executable, "-c", "from hopecli.cli import main; main()", "train", str(store), "--out", str(out), *RUNS[name],
           "--strategy", "joint", "--tasks", "linear,nonlinear", "--steps", str(args.steps // 2),
           "--batch-size", str(args.batch_size), "--lr", str(args.lr), "--val-clips", str(args.val_clips),
           "--seed", str(args.seed), "--threads", "1", "--compile", "off", "--rollout-weight", "0",
           "--jump-weight", "0", "--log-every", str(args.curve_every), "--horizon", "1"]
    start = time.perf_counter()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(args.out / f"{name}.log", "w") as log:
        subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT, env=env)
    return name, time.perf_counter() - start


def learning_curve(run: Path, every: int) -> list[float]:
    """Mean training loss (teacher forcing: the same L1 as the curve) per `every` steps."""
    losses = [r["loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
              if r.get("kind") == "step"]
    return [float(np.mean(losses[i : i + every])) for i in range(0, len(losses), every)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--runs", default=",".join(RUNS))
    parser.add_argument("--clips", type=int, default=128, help="clips per training family")
    parser.add_argument("--steps", type=int, default=300, help="optimizer steps of every run (joint)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--val-clips", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--curve-every", type=int, default=30)
    args = parser.parse_args()
    import torch

    from hopecli.data.dynamics import DynamicsConfig, write_dynamics_store
    from hopecli.eval.figures import save_in_context_figure
    from hopecli.eval.incontext import CEILINGS, LABELS, gap_closed, in_context_report, summary

    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    store = args.out / "icl.zarr"
    write_dynamics_store(store, DynamicsConfig(seed=args.seed),
                         {"linear": args.clips, "nonlinear": args.clips, "heldout": max(8, args.clips // 4)})
    names = args.runs.split(",")
    err.print(f"bench/incontext.py: {len(names)} runs x {args.steps} steps (joint, teacher forcing), batch "
              f"{args.batch_size}, lr {args.lr}, {args.jobs} jobs of 1 thread each, store {store}")
    with ThreadPoolExecutor(args.jobs) as pool:
        seconds = dict(pool.map(lambda n: train(n, args, store), names))
    reports = {name: in_context_report(args.out / name) for name in names}

    steps = next(iter(reports.values()))["steps"]
    table = Table(title=f"error per step predicted ({args.steps} training steps); gap closed: share of the gap "
                        "from the no-context map to in-context LS, mean from step 2 on")
    for column in ("predictor", "family", *map(str, steps), "mean 2+", "gap closed"):
        table.add_column(column, justify="left" if column in ("predictor", "family") else "right")
    first = reports[names[0]]["families"]
    for family, entry in first.items():
        for name in CEILINGS:
            table.add_row(LABELS[name], family, *(f"{v:.4f}" for v in entry["curves"][name]),
                          f"{summary(entry)[name]:.4f}", f"{gap_closed(entry, name):.0%}", style="dim")
        for run in names:
            e = reports[run]["families"][family]
            for curve, label in (("model", run), ("frozen", f"{run}, frozen")):
                if curve not in e["curves"]:
                    continue
                table.add_row(label, family, *(f"{v:.4f}" for v in e["curves"][curve]),
                              f"{summary(e)[curve]:.4f}", f"{gap_closed(e, curve):.0%}")
        table.add_section()
    err.print(table)

    curves = {name: learning_curve(args.out / name, args.curve_every) for name in names}
    lc = Table(title=f"learning curves: training loss (teacher forcing L1) per {args.curve_every} steps")
    lc.add_column("run")
    for i in range(max(map(len, curves.values()))):
        lc.add_column(f"{(i + 1) * args.curve_every}", justify="right")
    lc.add_column("train s", justify="right")
    for name, values in curves.items():
        lc.add_row(name, *(f"{v:.3f}" for v in values), f"{seconds[name]:.0f}")
    err.print(lc)

    targets = {}
    vit = None
    if "vit_tiny5" in reports:
        vit = float(np.mean([summary(f)["model"] for f in reports["vit_tiny5"]["families"].values() if f["trained"]]))
    tt = Table(title="issue 18's targets per run (trained families unless held out)")
    for column in ("run", "gap closed from step 2 (>= 50%)", "below vit_tiny5 (>= 30%)",
                   "freezing costs (>= 20%)", "held-out step 1 / step 7 (>= 3x)", "all"):
        tt.add_column(column, justify="left" if column in ("run", "all") else "right")
    for name in names:
        if name == "vit_tiny5":
            continue
        trained = [f for f in reports[name]["families"].values() if f["trained"]]
        model = float(np.mean([summary(f)["model"] for f in trained]))
        row = {"gap_closed_from_step_2": float(np.mean([gap_closed(f, "model") for f in trained])),
               "below_vit_tiny5": None if vit is None else 1 - model / vit,
               "frozen_costs": float(np.mean([summary(f)["frozen"] for f in trained])) / model - 1}
        held = reports[name]["families"].get("heldout")
        row["heldout_step1_over_step7"] = None if held is None else held["curves"]["model"][0] / held["curves"]["model"][-1]
        met = (row["gap_closed_from_step_2"] >= 0.5 and (row["below_vit_tiny5"] or 0) >= 0.3
               and row["frozen_costs"] >= 0.2 and (row["heldout_step1_over_step7"] or 0) >= 3)
        row["all_met"] = met
        targets[name] = row
        fmt = lambda v, pct=True: "-" if v is None else (f"{v:.0%}" if pct else f"{v:.2f}x")
        tt.add_row(name, fmt(row["gap_closed_from_step_2"]), fmt(row["below_vit_tiny5"]), fmt(row["frozen_costs"]),
                   fmt(row["heldout_step1_over_step7"], False), "yes" if met else "no")
    err.print(tt)
    figure = args.out / "incontext.png"
    save_in_context_figure([{"run": str(args.out / n), "in_context": reports[n]} for n in names], figure)
    (args.out / "incontext.json").write_text(json.dumps(
        {"args": {k: str(v) for k, v in vars(args).items()}, "reports": reports, "learning_curves": curves,
         "train_seconds": seconds, "targets": targets}, indent=1))
    err.print(f"wrote {args.out / 'incontext.json'} and {figure}")


if __name__ == "__main__":
    main()
