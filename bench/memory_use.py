"""How much of a trained predictor's output comes from what its memories wrote in context.

    .venv/bin/python bench/memory_use.py --run demo_out/hope_naive --store demo_out/sample.zarr --index 5

Runs one clip through the run's predictor twice, memories writing and frozen (reading
their meta-learned M_0), and prints per HOPE block the relative difference between the
two of the memory's readout, of the block's output projection of it, and of the block's
output (the residual stream), with the size of each; then the clip's next-step L1 error
(layer-normed targets) writing, frozen and for copying the last step. A memory whose
writes change its own readout but not the residual stream is adapting in a branch the
predictor does not listen to.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

import hopecli
from hopecli.model.blocks import HopeBlock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True)
    parser.add_argument("--store", required=True)
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    run = hopecli.load_run(args.run)
    model = run.model.eval()
    clip = hopecli.read_clip(run, store=args.store, index=args.index)
    f, a, s = (torch.as_tensor(t).float()[None] for t in (clip.features, clip.actions, clip.states))
    outputs: dict[str, list[torch.Tensor]] = {}

    def keep(name):
        def hook(module, inputs, out):
            outputs.setdefault(name, []).append((out[0] if isinstance(out, tuple) else out).detach())
        return hook

    for i, block in enumerate(model.blocks):
        if isinstance(block, HopeBlock):
            block.memory.register_forward_hook(keep(f"block {i} memory readout"))
            block.proj.register_forward_hook(keep(f"block {i} output projection"))
            block.register_forward_hook(keep(f"block {i} output (residual stream)"))
    with torch.no_grad():
        writing = model(f, a, s).pred
        frozen = model(f, a, s, update_memory=False).pred
    print(f"run {args.run}, clip {args.index} of {args.store}; threads {args.threads}")
    for name, (on, off) in outputs.items():
        print(f"  {name:36s} |writing - frozen| / |frozen| = {((on - off).norm() / off.norm()).item():.4f}"
              f"   mean norm per token {off.norm(dim=-1).mean().item():.3f}")
    target = F.layer_norm(f[:, 1:], (f.shape[-1],))
    copy = F.layer_norm(f[:, :-1], (f.shape[-1],))
    for name, pred in (("writing", writing[:, :-1]), ("frozen", frozen[:, :-1]), ("copy last step", copy)):
        print(f"  next-step L1 {name:15s} {(pred - target).abs().mean().item():.5f}")


if __name__ == "__main__":
    main()
