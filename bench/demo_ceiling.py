"""How much better than copy-last can anything predict a store's next step? A ceiling.

A per-patch MLP gets everything local that decides a patch's next feature in a pushing
clip: the 3 x 3 neighbourhood of layer-normed features around the patch, the pusher's
position relative to the patch (from `states`), the action, and the patch's position. It
predicts the change (L1, as the predictors), trains for many steps, and is scored like
`hope eval`: teacher forcing over all steps and horizon 1 from step 0, relative to copy,
on the validation clips of `hope train`'s split. No tiny predictor in a demo budget
does better than this model does with its far more direct inputs, so its validation
score bounds what the demo can show; its training score shows whether the limit is
fitting or generalising. Run on the demo store and on a larger one made by `hope synth`
to see what more clips buy.

    OMP_NUM_THREADS=1 python bench/demo_ceiling.py demo_out/sample.zarr [more.zarr ...]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from hopecli.data.store import FeatureStore
from hopecli.runs.split import split_clips
from hopecli.train.data import read_batch
from hopecli.train.losses import normalize_features


def local_inputs(store: FeatureStore, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per patch-step inputs [N, 9 D + 6], current features [N, D] and next features [N, D]."""
    batch = read_batch(store, indices)
    z = normalize_features(batch.features)  # [B, T, P, D]
    B, T, P, D = z.shape
    rows, cols = store.attrs["grid"]
    grid = z.reshape(B * T, rows, cols, D).permute(0, 3, 1, 2)
    around = F.unfold(F.pad(grid, (1, 1, 1, 1)), 3)  # [B T, 9 D, P]
    around = around.reshape(B, T, 9 * D, P).transpose(2, 3)
    y, x = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
    where = torch.stack([(x.flatten() + 0.5) / cols, (y.flatten() + 0.5) / rows], -1)  # [P, 2], table units
    pusher = batch.states[:, :, None, :2] - where  # pusher relative to the patch
    action = batch.actions[:, :, None, :2].expand(B, T, P, 2)
    cells = torch.tensor([cols, rows], dtype=torch.float32)
    local = torch.cat([around, pusher * cells, action / action.abs().mean(), where.expand(B, T, P, 2)], -1)
    return local[:, :-1], z[:, :-1], z[:, 1:]


def score(net: torch.nn.Module, data) -> dict[str, float]:
    local, now, nxt = data
    with torch.no_grad():
        err = (now + net(local) - nxt).abs().mean(-1)  # [B, T-1, P]
    copy = (now - nxt).abs().mean(-1)
    return {"tf": float(err.mean() / copy.mean() - 1), "h1": float(err[:, 0].mean() / copy[:, 0].mean() - 1)}


def run(path: str, steps: int, hidden: int, val_fraction: float, seed: int) -> None:
    store = FeatureStore.open(path)
    tasks = [t for t in store.task_names() if len(store.indices([t])) >= 2]
    split = split_clips(store, tasks, val_fraction, seed)
    train = local_inputs(store, sum(split.train.values(), []))
    val = local_inputs(store, sum(split.val.values(), []))
    torch.manual_seed(seed)
    width = train[0].shape[-1]
    net = torch.nn.Sequential(torch.nn.Linear(width, hidden), torch.nn.GELU(),
                              torch.nn.Linear(hidden, hidden), torch.nn.GELU(),
                              torch.nn.Linear(hidden, train[1].shape[-1]))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=0.01)
    flat = [t.reshape(-1, t.shape[-1]) for t in train]
    n_train, n_val = sum(len(v) for v in split.train.values()), sum(len(v) for v in split.val.values())
    print(f"{path}: {n_train} training / {n_val} validation clips, tasks {tasks}, "
          f"threads {torch.get_num_threads()}")
    started, best = time.perf_counter(), None
    for step in range(1, steps + 1):
        pick = torch.randint(0, len(flat[0]), (1024,))
        loss = (flat[1][pick] + net(flat[0][pick]) - flat[2][pick]).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % (steps // 6) == 0:
            fit, held = score(net, train), score(net, val)
            best = held if best is None or held["h1"] < best["h1"] else best
            print(f"  step {step:5d} ({time.perf_counter() - started:4.0f} s)  training vs copy: "
                  f"teacher forcing {fit['tf']:+.1%}  |  validation vs copy: teacher forcing "
                  f"{held['tf']:+.1%}, horizon 1 {held['h1']:+.1%}")
    print(f"  best validation horizon 1 vs copy: {best['h1']:+.1%} (teacher forcing {best['tf']:+.1%})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stores", nargs="+")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--val-fraction", type=float, default=0.15)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for path in args.stores:
        run(path, args.steps, args.hidden, args.val_fraction, args.seed)


if __name__ == "__main__":
    main()
