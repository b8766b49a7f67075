"""The allocator policy side by side: glibc's own (HOPE_MALLOC=system) against the one
`hope` sets at start-up (hopecli/threads.py, tune_allocator), on the work it changes.

    OMP_NUM_THREADS=1 .venv/bin/python bench/malloc.py --threads 1 --rounds 2

Workloads, each in its own process (the policy is the process's):

    planning   one CEM iteration of hope_tiny's planning (100 candidates x horizon 2 from
               one context step, 64 patches of 192 features): rollout_energy, no gradients
    train      one hope_tiny training step (batch 8 x 8 steps of 64 patches, AdamW)
    memory     the 6-head H memory's forward + backward (bench/peers.py's hope H, 1 x 8
               frames of 258 tokens, eager)

Each process runs --warmup then --repeats of its work and reports the median seconds, the
minor page faults and system seconds per repeat (getrusage) and its peak RSS. The two
policies alternate, --rounds times, so that a machine's drift hits both; read the ratios
within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

POLICIES = {"glibc (HOPE_MALLOC=system)": "system", "hope (tune_allocator)": ""}
WORKLOADS = ("planning", "train", "memory")


def _planning():
    import torch

    from hopecli.model import build_predictor
    from hopecli.plan import rollout_energy

    model = build_predictor("hope_tiny", input_dim=192, patches_per_step=64).eval()
    c = model.config
    feats, actions, states = torch.randn(2, 64, 192), torch.randn(2, c.action_dim), torch.randn(2, c.state_dim)
    candidates = torch.randn(100, 2, c.action_dim)
    with torch.no_grad():
        state = model(feats[None, :-1], actions[None, :-1], states[None, :-1]).state
    energy = rollout_energy(model, state, feats[-1], states[-1], feats[0], 1)

    def run():
        with torch.no_grad():
            energy(candidates)

    return run


def _train():
    import torch
    import torch.nn.functional as F

    from hopecli.model import build_predictor

    model = build_predictor("hope_tiny", input_dim=192, patches_per_step=64)
    c = model.config
    feats = torch.randn(8, 8, 64, 192)
    actions, states = torch.randn(8, 8, c.action_dim), torch.randn(8, 8, c.state_dim)
    opt = torch.optim.AdamW(model.parameters(), 1e-3)

    def run():
        out = model(feats[:, :-1], actions[:, :-1], states[:, :-1])
        opt.zero_grad(set_to_none=True)
        F.l1_loss(out.pred, feats[:, 1:]).backward()
        opt.step()

    return run


def _memory():
    import torch

    sys.path.insert(0, str(Path(__file__).parent))
    from peers import N, WIDTH, hope_case

    x = torch.randn(1, 8 * N, WIDTH, requires_grad=True)
    memory, forward, _ = hope_case("H", x)

    def run():
        memory.zero_grad(set_to_none=True)
        x.grad = None
        forward().square().mean().backward()

    return run


def worker(args) -> None:
    from hopecli.threads import apply_threads, tune_allocator

    tuned = tune_allocator()
    import torch

    apply_threads(args.threads)
    torch.manual_seed(0)
    run = {"planning": _planning, "train": _train, "memory": _memory}[args.worker]()
    for _ in range(args.warmup):
        run()
    before = resource.getrusage(resource.RUSAGE_SELF)
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    after = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"tuned": tuned, "median_s": statistics.median(times), "min_s": min(times),
                      "faults": (after.ru_minflt - before.ru_minflt) / args.repeats,
                      "sys_s": (after.ru_stime - before.ru_stime) / args.repeats,
                      "peak_rss_mb": after.ru_maxrss / 1024}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=WORKLOADS)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--worker", choices=WORKLOADS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    rows = []
    for workload in args.workloads:
        for rnd in range(args.rounds):
            for label, value in POLICIES.items():
                env = {**os.environ, "HOPE_MALLOC": value}
                cmd = [sys.executable, __file__, "--worker", workload, "--threads", str(args.threads),
                       "--warmup", str(args.warmup), "--repeats", str(args.repeats)]
                out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
                row = {"workload": workload, "policy": label, "round": rnd, **json.loads(out.splitlines()[-1])}
                rows.append(row)
                print(f"{workload:9s} {label:28s} round {rnd}: {row['median_s']:.3f} s (min {row['min_s']:.3f}), "
                      f"{row['faults']:.0f} faults and {row['sys_s']:.3f} s system a repeat, "
                      f"peak RSS {row['peak_rss_mb']:.0f} MB", file=sys.stderr)
    print(json.dumps({"threads": args.threads, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
