"""One configuration trained under several seeds into a seeds folder (hopecli.runs.seeds):
`hope train --seeds 0,1,2`."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from hopecli.errors import HopeError
from hopecli.runs.folder import CONFIG, RESULTS, read_json, write_json
from hopecli.runs.seeds import SEEDS, read_seeds, seed_dir
from hopecli.train.continual import train


def train_seeds(store, out: Path, model_cfg, cfg, seeds: list[int] | None, *, resume: bool = False,
                world=None, preset: str | None = None, on_start=None) -> list[dict]:
    """Train `cfg` once per seed into OUT/seed<N> (hopecli.runs.seeds); resume=True finishes every
    seed run of OUT that is not complete, starting those not begun. Returns their results.

    `on_start(seed, run_dir)` is called before each run (progress on the command line).
    """
    out = Path(out)
    if resume:
        seeds = read_seeds(out)
        if seeds is None:
            raise HopeError(f"{out}: not a seeds folder (no {SEEDS})")
    elif (out / SEEDS).exists() or (out / CONFIG).exists():
        raise HopeError(f"{out}: already holds a run; pass --resume to continue it or choose another --out")
    if len(set(seeds)) != len(seeds):
        raise HopeError(f"--seeds {','.join(map(str, seeds))}: a seed is repeated")
    if not resume:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / SEEDS, {"seeds": list(seeds)})
    results = []
    for seed in seeds:
        run = seed_dir(out, seed)
        started = (run / CONFIG).exists()
        if started and (run / RESULTS).exists() and read_json(run / RESULTS).get("complete"):
            results.append(read_json(run / RESULTS))
            continue
        if on_start is not None:
            on_start(seed, run)
        results.append(train(store, run, model_cfg, dataclasses.replace(cfg, seed=seed), resume=started,
                             world=world, preset=preset))
    return results
