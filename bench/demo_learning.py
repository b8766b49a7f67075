"""Where a tiny predictor's error goes on a store: static vs moving patches, per step.

Trains a preset with teacher forcing only (AdamW, the demo's split: val fraction 0.15,
seed 0, tasks low/mid/high) and prints, every --eval-every steps, the validation error of
teacher forcing and of horizon 1 (step 0 -> 1) beside copy-last, split into static and
moving patch-steps (moving: the true features change by more than 0.01 on average over
the feature dim). `--predict-change` / `--no-predict-change` overrides the preset, which
is how the tiny presets' choice was measured.

    OMP_NUM_THREADS=1 python bench/demo_learning.py demo_out/sample.zarr --no-predict-change --steps 300
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from hopecli.data.store import FeatureStore
from hopecli.model.presets import build_predictor
from hopecli.runs.split import split_clips
from hopecli.train.data import read_batch
from hopecli.train.losses import normalize_features

MOVING = 0.01


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("store")
    p.add_argument("--preset", default="vit_tiny")
    p.add_argument("--pattern", default="TTTTT")
    p.add_argument("--predict-change", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--lr", type=float, default=6e-3)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    store = FeatureStore.open(a.store)
    split = split_clips(store, ["low", "mid", "high"], 0.15, a.seed)

    def load(indices):
        b = read_batch(store, indices)
        return normalize_features(b.features), b.actions, b.states

    train, val = load(sum(split.train.values(), [])), load(sum(split.val.values(), []))
    T, P, D = train[0].shape[1:]
    overrides = dict(input_dim=D, action_dim=train[1].shape[-1], state_dim=train[2].shape[-1],
                     patches_per_step=P, grid=tuple(store.attrs["grid"]), pattern=a.pattern)
    if a.predict_change is not None:
        overrides["predict_change"] = a.predict_change
    model = build_predictor(a.preset, **overrides)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.04)
    print(json.dumps({**vars(a), "predict_change": model.config.predict_change,
                      "parameters": sum(q.numel() for q in model.parameters())}))

    def evaluate() -> dict[str, float]:
        z, ac, st = val
        model.eval()
        with torch.no_grad():
            pred = model(z[:, :-1], ac[:, :-1], st[:, :-1]).pred
        model.train()
        err = (pred - z[:, 1:]).abs().mean(-1)  # [B, T-1, P]
        copy = (z[:, :-1] - z[:, 1:]).abs().mean(-1)
        moving = copy > MOVING
        return {"tf_vs_copy": float(err.mean() / copy.mean() - 1),
                "h1_vs_copy": float(err[:, 0].mean() / copy[:, 0].mean() - 1),
                "static": float(err[~moving].mean()), "moving": float(err[moving].mean()),
                "moving_copy": float(copy[moving].mean()), "moving_share": float(moving.float().mean())}

    g = torch.Generator().manual_seed(a.seed)
    started = time.perf_counter()
    for step in range(1, a.steps + 1):
        pick = torch.randint(0, len(train[0]), (a.batch,), generator=g)
        z, ac, st = (t[pick] for t in train)
        loss = (model(z[:, :-1], ac[:, :-1], st[:, :-1]).pred - z[:, 1:]).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % a.eval_every == 0 or step == a.steps:
            r = evaluate()
            figures = "  ".join(f"{k} {v:+.4f}" if "vs" in k else f"{k} {v:.4f}" for k, v in r.items())
            print(f"step {step:4d} ({time.perf_counter() - started:4.0f} s, {a.threads} thread(s))  {figures}",
                  flush=True)


if __name__ == "__main__":
    main()
