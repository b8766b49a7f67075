"""Thread policies side by side: a hope_tiny training step with 1 thread and with all cores
under OpenMP's wait policies (default, spinning, passive, short bounded spins), on a quiet
machine and beside a competing process.

    .venv/bin/python bench/threads.py                  # table on stderr, JSON on stdout
    .venv/bin/python bench/threads.py --steps 12 --competitors 1

Every candidate runs in its own process (OMP_WAIT_POLICY is read once, when OpenMP starts)
on the same work: hope_tiny at the demo's shapes (batch 8, 8 steps of 64 patches of 192
features), forward + L1 backward, --warmup steps then --steps timed. A competitor is a
process doing 1-thread 512^3 matmuls in a loop, as another user's job would. Candidates
run one after another, not at once; a machine with other load makes every number slower,
so read the ratios within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

CANDIDATES = {
    "1 thread": {"OMP_NUM_THREADS": "1"},
    "all cores, OpenMP's default waits": {},
    "all cores, spinning waits (ACTIVE, hope default)": {"OMP_WAIT_POLICY": "ACTIVE"},
    "all cores, passive waits (PASSIVE)": {"OMP_WAIT_POLICY": "PASSIVE"},
    "all cores, short spins (GOMP_SPINCOUNT=10000)": {"GOMP_SPINCOUNT": "10000"},
    "all cores, short spins (GOMP_SPINCOUNT=100000)": {"GOMP_SPINCOUNT": "100000"},
}


def worker(args) -> None:
    import torch
    import torch.nn.functional as F

    from hopecli.model import build_predictor

    torch.manual_seed(0)
    model = build_predictor("hope_tiny", input_dim=192, action_dim=2, state_dim=2, patches_per_step=64, grid=(8, 8))
    feats = torch.randn(8, 8, 64, 192)
    actions, states = torch.randn(8, 8, 2), torch.randn(8, 8, 2)
    target = F.layer_norm(torch.randn_like(feats), (192,))
    times = []
    for i in range(args.warmup + args.steps):
        start = time.perf_counter()
        model.zero_grad(set_to_none=True)
        F.l1_loss(model(feats, actions, states).pred, target).backward()
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
    print(json.dumps({"threads": torch.get_num_threads(), "median_s": statistics.median(times),
                      "min_s": min(times), "max_s": max(times)}))


def competitor() -> None:
    import torch

    torch.set_num_threads(1)
    a = torch.randn(512, 512)
    while True:
        a = torch.tanh(a @ a)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--competitors", type=int, default=1, help="competing processes in the busy case")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--competitor", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    if args.competitor:
        return competitor()
    base = {k: v for k, v in os.environ.items()
            if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "MKL_NUM_THREADS")}
    results = []
    for load in (0, args.competitors):
        busy = [subprocess.Popen([sys.executable, __file__, "--competitor"], env=base) for _ in range(load)]
        try:
            for name, env in CANDIDATES.items():
                out = subprocess.run(
                    [sys.executable, __file__, "--worker", "--steps", str(args.steps), "--warmup", str(args.warmup)],
                    env={**base, **env}, check=True, capture_output=True, text=True,
                ).stdout
                r = {"candidate": name, "competitors": load, **json.loads(out)}
                results.append(r)
                print(f"{'busy' if load else 'quiet':5} {name:48} {r['threads']} threads  median "
                      f"{r['median_s'] * 1e3:7.0f} ms (min {r['min_s'] * 1e3:.0f}, max {r['max_s'] * 1e3:.0f})",
                      file=sys.stderr)
        finally:
            for p in busy:
                p.kill()
    quiet_one = next(r for r in results if r["competitors"] == 0 and r["candidate"] == "1 thread")["median_s"]
    for r in results:
        r["vs_quiet_1_thread"] = r["median_s"] / quiet_one
    print(f"cores: {os.cpu_count()}; times relative to 1 thread on the quiet machine:", file=sys.stderr)
    for r in results:
        print(f"  {'busy' if r['competitors'] else 'quiet':5} {r['candidate']:45} {r['vs_quiet_1_thread']:.2f}x",
              file=sys.stderr)
    json.dump({"cores": os.cpu_count(), "results": results}, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
