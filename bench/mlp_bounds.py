"""Do MLP memories stay bounded over long streams at the presets' shapes?

    .venv/bin/python bench/mlp_bounds.py                       # every shape, gd and dgd, 64 frames
    .venv/bin/python bench/mlp_bounds.py --shapes tiny --frames 32

The Titan memory of each preset's H blocks (all six memories, self targets as in the
seeds' layout, the case that ran away) reads and writes
--frames one-frame chunks of random tokens at eta = eta_max (the largest rate a rule
allows), with the safeguard of MLP writes (the shipped path) and without it (the chunk
step's guard replaced by the unguarded write, as before it existed). Prints the largest
|W - M_0| / |M_0| over memories and layers after 1, 8, 32 and the last frame, and the
frame where it first passed 1e3 (runaway) if it did.
"""

from __future__ import annotations

import argparse
import math

import torch
from rich.console import Console
from rich.table import Table

from hopecli.model.memory import SelfModifyingTitan, TitanConfig
from hopecli.model.memory import chunked

err = Console(stderr=True, width=150)
# name -> (dim, heads, hidden_mult, tokens per frame)
SHAPES = {"tiny": (64, 2, 2.0, 66), "multihead": (384, 6, 3.5, 258), "phase5": (384, 1, 4.0, 258)}


def run(shape: str, rule: str, guarded: bool, args) -> dict:
    dim, heads, mult, tokens = SHAPES[shape]
    bound = 1.0 if rule == "gd" else 0.5
    cfg = TitanConfig(dim=dim, heads=heads, hidden_mult=mult, update_rule=rule, eta_max=bound,
                      eta_init=0.999 * bound, checkpoint_chunks=False)
    torch.manual_seed(args.seed)
    titan = SelfModifyingTitan(cfg)
    m0 = [w.detach() for w in titan.initial_layers]
    state = titan.init_state(args.batch)
    gen = torch.Generator().manual_seed(args.seed + 1)
    original = chunked.guard_scale
    if not guarded:
        chunked.guard_scale = lambda pending, init: torch.ones_like(pending.target[..., 0, 0])
    seen, runaway = {}, None
    try:
        with torch.no_grad():
            for frame in range(1, args.frames + 1):
                _, state, _ = titan(torch.randn(args.batch, tokens, dim, generator=gen), state, chunk_size=tokens)
                dev = max(((w - w0).flatten(2).norm(dim=-1) / w0.flatten(1).norm(dim=-1)).max().item()
                          for w, w0 in zip(state.layers, m0))
                if frame in (1, 8, 32, args.frames):
                    seen[frame] = dev
                if not math.isfinite(dev) or dev > 1e3:
                    runaway = frame
                    break
    finally:
        chunked.guard_scale = original
    return {"seen": seen, "runaway": runaway}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", default=",".join(SHAPES))
    parser.add_argument("--rules", default="gd,dgd")
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    frames = sorted({1, 8, 32, args.frames})
    table = Table(title=f"largest |W - M_0| / |M_0| of the six MLP memories, eta = eta_max, one-frame chunks, "
                        f"self targets, 1 thread")
    for column in ("shape", "rule", "writes", *(f"frame {f}" for f in frames), "ran away at"):
        table.add_column(column)
    for shape in args.shapes.split(","):
        for rule in args.rules.split(","):
            for guarded in (False, True):
                r = run(shape, rule, guarded, args)
                table.add_row(shape, rule, "safeguarded" if guarded else "unguarded",
                              *(f"{r['seen'][f]:.3g}" if f in r["seen"] else "-" for f in frames),
                              str(r["runaway"] or "-"))
                err.print(f"{shape} {rule} {'safeguarded' if guarded else 'unguarded'}: {r}")
    err.print(table)


if __name__ == "__main__":
    main()
