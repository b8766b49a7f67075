"""Deep against linear memory: which one learns a nonlinear map in context (Titans' claim)?

    .venv/bin/python bench/deep_memory.py                     # table on stderr
    .venv/bin/python bench/deep_memory.py --frames 16 --w1-std 0.02,0.0625

One memory box of one head (head_dim 64) watches --frames frames of --tokens pairs
(k, v = f(k)) through the product's chunked write (one-frame chunks, memory_target
"value", fixed eta, rule gd, the MLP safeguard included), then is asked for f at 258 fresh
keys. f is linear (v = A k), tanh (v = tanh(g A k), g = --gain) or abs (v = |A k| less
its mean: an even map, so no linear map explains any of it), A a fixed random matrix per
sample, values normalised to unit norm. Reported: the error of the
memory on the fresh keys, mean squared per key, relative to predicting 0, and the
share of the first write that falls on W2 (how much the MLP's first layer learns) at
each initial W1 scale. The linear memory's floor on the nonlinear map is the best
linear fit (least squares on many keys), printed beside it.
"""

from __future__ import annotations

import argparse
import math

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table

from hopecli.model.memory import TitanConfig
from hopecli.model.memory.chunked import chunk_targets, guard_write, pending_write, write_chunk
from hopecli.model.memory.naive import memory_read

HEAD = 64
err = Console(stderr=True, width=150)


def target_map(kind: str, gain: float, samples: int, gen: torch.Generator):
    a = torch.randn(samples, HEAD, HEAD, generator=gen) / math.sqrt(HEAD)

    def f(k):  # k [S, N, dh] -> [S, N, dh]
        z = k @ a.transpose(-1, -2)
        if kind == "tanh":
            z = torch.tanh(gain * z)
        elif kind == "abs":  # even: no linear map explains any of it
            z = z.abs() - z.abs().mean(-1, keepdim=True)
        return F.normalize(z, dim=-1)
    return f


def keys(samples: int, n: int, gen: torch.Generator) -> torch.Tensor:
    return F.normalize(torch.randn(samples, n, HEAD, generator=gen), dim=-1)


def init_layers(kind: str, w1_std: float, samples: int, gen: torch.Generator):
    if kind == "linear":
        s = torch.eye(HEAD) + 0.02 * torch.randn(HEAD, HEAD, generator=gen)
        return (s.expand(samples, 1, 1, HEAD, HEAD).clone(),)
    hidden = 4 * HEAD
    w2 = torch.randn(hidden, HEAD, generator=gen) / math.sqrt(HEAD)
    w1 = torch.randn(HEAD, hidden, generator=gen) * w1_std
    return tuple(w.expand(samples, 1, 1, *w.shape).clone() for w in (w2, w1))


def recall(layers, k):
    """M(k) for keys k [S, N, dh] through layers [S, 1, 1, out, in]."""
    weights = tuple(w[:, 0] for w in layers)
    return torch.stack([memory_read(weights, k[:, i][:, None])[:, 0] for i in range(k.shape[1])], 1)


def run(memory: str, law: str, w1_std: float, args) -> tuple[float, float]:
    gen = torch.Generator().manual_seed(args.seed)
    f = target_map(law, args.gain, args.samples, gen)
    cfg = TitanConfig(dim=HEAD, heads=1, hidden_mult=4.0, kind=memory, update_rule="gd", memory_target="value")
    layers = init_layers(memory, w1_std, args.samples, gen)
    init = tuple(w[0] for w in layers)  # M_0 [1, 1, out, in]
    test = keys(args.samples, 258, gen)
    share = float("nan")
    for frame in range(args.frames):
        k = keys(args.samples, args.tokens, gen)
        v = f(k)
        kc, vc = k[:, None], v[:, None]  # [S, H=1, C, dh]
        found = chunk_targets(layers, kc, vc, cfg)
        shape = (args.samples, 1, 1, args.tokens)
        eta = torch.full(shape, args.eta)
        log_alpha = torch.zeros(shape)
        new, chunks = write_chunk(layers, init, found, eta, log_alpha, cfg)
        if memory == "mlp":
            new = guard_write(pending_write(chunks, init, found, kc), init)
            if frame == 0:
                moved = [(n - w).square().sum() for n, w in zip(new, layers)]
                # the W2 share of the output change: |dW2 k| through W1 against |dW1 u|
                share = (moved[0] / (moved[0] + moved[1])).item()
        layers = new
    got = recall(layers, test)
    want = f(test)
    return ((got - want).square().sum(-1).mean() / want.square().sum(-1).mean()).item(), share


def best_linear(law: str, args) -> float:
    gen = torch.Generator().manual_seed(args.seed)
    f = target_map(law, args.gain, args.samples, gen)
    k = keys(args.samples, 8192, gen)
    w = torch.linalg.lstsq(k, f(k)).solution
    test = keys(args.samples, 258, gen)
    return ((test @ w - f(test)).square().sum(-1).mean() / f(test).square().sum(-1).mean()).item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=258)
    parser.add_argument("--eta", type=float, default=0.5)
    parser.add_argument("--gain", type=float, default=4.0)
    parser.add_argument("--w1-std", default="0.02,0.0625", help="initial W1 scales (0.0625 = 1/sqrt(256))")
    parser.add_argument("--laws", default="linear,tanh,abs")
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    table = Table(title=f"error on fresh keys after {args.frames} frames of {args.tokens} pairs (relative to "
                        f"predicting 0), eta {args.eta}, rule gd, one-frame chunks; 1 thread")
    for column in ("memory", "W1 init std", "law", "error", "best linear fit", "W2 share of first write"):
        table.add_column(column)
    for law in args.laws.split(","):
        floor = best_linear(law, args)
        e, _ = run("linear", law, 0.0, args)
        table.add_row("linear", "-", law, f"{e:.3f}", f"{floor:.3f}", "-")
        for std in (float(s) for s in args.w1_std.split(",")):
            e, share = run("mlp", law, std, args)
            table.add_row("mlp", f"{std:g}", law, f"{e:.3f}", f"{floor:.3f}", f"{share:.1%}")
    err.print(table)


if __name__ == "__main__":
    main()
