"""In-context learning of the Titan memory write: does a memory learn key -> value pairs as
it watches them, at the chunk sizes the predictor uses, without diverging?

    .venv/bin/python bench/icl.py                 # the full grid, table on stderr
    .venv/bin/python bench/icl.py --json          # plus one JSON object on stdout
    .venv/bin/python bench/icl.py --etas 0.5 --chunks 258 --frames 8

The memory box of one head (head_dim 64; MLP hidden 4x) writes a stream of frames of
--tokens tokens with memory_target "value" (it learns v_t itself), fixed eta and the
shipped alpha_init; cells above the rule's shipped eta_max (1 for gd, 0.5 for dgd) are
shown in parentheses, the shipped eta_init in bold; every write goes through the product's chunked path
(hopecli.model.memory.chunked: chunk_targets, write_chunk, and guard_write for MLP
memories), so what is measured is the rule the predictor runs. The initial state is the module's own initialisation (MLP near
the identity, linear S = I + noise).

Tasks, each frame drawn from a fixed set of pairs (values are unit vectors, as the
memory's are):
  repeated  16 pairs, each about 16 times per frame, in a random order
  distinct  --tokens distinct pairs, each once per frame
Keys share 0% or 90% of their variance: k_i = norm(sqrt(s) c + sqrt(1 - s) n_i), one
common c per sample.

Pair-specific error: the recall of every pair through the memory, M(k_i), against v_i
after both are centred over the pairs (the part one pair does not share with the
others), mean squared error; the drop is 1 - error / error at M_0, after 1 and after
--frames frames. A cell diverges when anything is non-finite or the error exceeds 10x
its start. Results are averaged over --samples independent pair sets.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys

import torch
import torch.nn.functional as F
from rich.table import Table

from rich.console import Console
from hopecli.model.memory import SelfModifyingTitan, TitanConfig
from hopecli.model.memory.chunked import chunk_targets, guard_write, pending_write, write_chunk
from hopecli.model.memory.naive import memory_read

HEAD_DIM = 64
err = Console(stderr=True, width=None if Console(stderr=True).is_terminal else 160)


@dataclasses.dataclass(frozen=True)
class Memory:
    kind: str
    rule: str

    @property
    def name(self) -> str:
        return f"{self.kind} {self.rule}"


def pairs(task: str, shared: float, tokens: int, samples: int, gen: torch.Generator):
    """Keys, values [S, n_pairs, dh] and the pair index of every token of a frame."""
    n_pairs = 16 if task == "repeated" else tokens
    common = torch.randn(samples, 1, HEAD_DIM, generator=gen)
    own = torch.randn(samples, n_pairs, HEAD_DIM, generator=gen)
    keys = F.normalize(math.sqrt(shared) * common + math.sqrt(1 - shared) * own, dim=-1)
    values = F.normalize(torch.randn(samples, n_pairs, HEAD_DIM, generator=gen), dim=-1)
    return keys, values, n_pairs


def frame_order(task: str, n_pairs: int, tokens: int, samples: int, gen: torch.Generator) -> torch.Tensor:
    """[S, tokens] pair indices of one frame."""
    if task == "repeated":
        reps = torch.arange(tokens) % n_pairs
        return torch.stack([reps[torch.randperm(tokens, generator=gen)] for _ in range(samples)])
    return torch.stack([torch.randperm(n_pairs, generator=gen) for _ in range(samples)])


def specific_error(layers: tuple[torch.Tensor, ...], keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Mean squared pair-specific recall error per sample: layers [S, 1, 1, out, in]."""
    weights = tuple(w[:, 0] for w in layers)  # [S, H=1, out, in]
    recall = torch.stack(
        [memory_read(weights, keys[:, i][:, None])[:, 0] for i in range(keys.shape[1])], dim=1
    )  # [S, n_pairs, dh]
    centred = (recall - recall.mean(1, keepdim=True)) - (values - values.mean(1, keepdim=True))
    return centred.square().sum(-1).mean(1)


def run_cell(memory: Memory, task: str, shared: float, chunk: int, eta: float, args) -> dict:
    gen = torch.Generator().manual_seed(args.seed)
    cfg = TitanConfig(
        dim=HEAD_DIM, heads=1, hidden_mult=4.0, kind=memory.kind, update_rule=memory.rule, memory_target="value"
    )
    torch.manual_seed(args.seed)
    titan = SelfModifyingTitan(cfg)
    init = tuple(w.detach()[-1:] for w in titan.initial_layers)  # the memory box only: [1, 1, out, in]
    layers = tuple(w.unsqueeze(0).expand(args.samples, *w.shape).clone() for w in init)
    keys, values, n_pairs = pairs(task, shared, args.tokens, args.samples, gen)
    start = specific_error(layers, keys, values)
    errors = []
    log_alpha = math.log(cfg.alpha_init)
    diverged = False
    for _ in range(args.frames):
        order = frame_order(task, n_pairs, args.tokens, args.samples, gen)
        k = torch.gather(keys, 1, order[..., None].expand(-1, -1, HEAD_DIM))[:, None]  # [S, H, T, dh]
        v = torch.gather(values, 1, order[..., None].expand(-1, -1, HEAD_DIM))[:, None]
        for s in range(0, args.tokens, chunk):
            kc, vc = k[:, :, s : s + chunk], v[:, :, s : s + chunk]
            shape = (args.samples, 1, 1, kc.shape[2])
            found = chunk_targets(layers, kc, vc, cfg)
            decay = torch.full(shape, log_alpha)
            new, chunks = write_chunk(layers, init, found, torch.full(shape, eta), decay, cfg)
            if memory.kind == "mlp":  # the product's safeguard of MLP writes
                new = guard_write(pending_write(chunks, init, found, kc), init)
            layers = new
        e = specific_error(layers, keys, values)
        if not torch.isfinite(e).all() or (e > 10 * start).any():
            diverged = True
            break
        errors.append(e)
    drop = [None if diverged else (1 - (e / start).mean().item()) for e in errors]
    return {
        "memory": memory.name,
        "task": task,
        "shared": shared,
        "chunk": chunk,
        "eta": eta,
        "diverged": diverged,
        "beyond_eta_max": eta > cfg.eta_bound,
        "shipped": math.isclose(eta, cfg.eta_start),
        "drop_1": None if diverged else drop[0],
        "drop_last": None if diverged else drop[-1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--memories", default="linear-gd,linear-dgd,mlp-gd,mlp-dgd")
    parser.add_argument("--tasks", default="repeated,distinct")
    parser.add_argument("--shared", default="0,0.9", help="shares of key variance, comma-separated")
    parser.add_argument("--chunks", default="1,16,258", help="chunk sizes in tokens; 258 = one frame")
    parser.add_argument("--etas", default="0.01,0.1,0.25,0.5,1.0")
    parser.add_argument("--tokens", type=int, default=258, help="tokens per frame")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    memories = [Memory(*m.split("-")) for m in args.memories.split(",")]
    etas = [float(e) for e in args.etas.split(",")]
    table = Table(title="drop of the pair-specific error after 1 / after --frames frames")
    for name in ("memory", "task", "keys shared", "chunk"):
        table.add_column(name)
    for eta in etas:
        table.add_column(f"eta {eta:g}", justify="right")
    results = []
    err.print(
        f"bench/icl.py: threads {args.threads}, head_dim {HEAD_DIM}, {args.tokens} tokens x {args.frames} frames, "
        f"alpha {TitanConfig.alpha_init}, {args.samples} samples; drop of the pair-specific error after 1 / "
        f"{args.frames} frames"
    )
    for memory in memories:
        for task in args.tasks.split(","):
            for shared in (float(s) for s in args.shared.split(",")):
                for chunk in (int(c) for c in args.chunks.split(",")):
                    cells = []
                    for eta in etas:
                        r = run_cell(memory, task, shared, chunk, eta, args)
                        results.append(r)
                        cell = "DIVERGED" if r["diverged"] else f"{r['drop_1']:.0%} / {r['drop_last']:.0%}"
                        if r["beyond_eta_max"]:
                            cell = f"({cell})"
                        elif r["shipped"]:
                            cell = f"[bold]{cell}[/bold]"
                        cells.append(cell)
                    table.add_row(memory.name, task, f"{shared:.0%}", str(chunk), *cells)
    err.print(table)
    within = [r for r in results if not r["beyond_eta_max"]]
    err.print(
        f"{sum(r['diverged'] for r in within)} of {len(within)} cells up to the rule's eta_max diverged; "
        f"{sum(r['diverged'] for r in results) - sum(r['diverged'] for r in within)} of {len(results) - len(within)} "
        "beyond it (in parentheses); bold: the shipped eta_init"
    )
    if args.json:
        json.dump({"threads": args.threads, "results": results}, sys.stdout, indent=1)
        sys.stdout.write("\n")


if __name__ == "__main__":
    main()
