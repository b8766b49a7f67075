"""A seeds folder: one configuration trained under several seeds (`hope train --seeds 0,1,2`,
hopecli.train.seeds).

The runs go into one folder, one run folder per seed, and a seeds.json that lists them:

```
OUT/
  seeds.json     {"seeds": [0, 1, 2]}
  seed0/         a run folder as `hope train --seed 0` writes it
  seed1/
  seed2/
```

`hope eval OUT` reads such a folder as its seed runs, and aggregates them (hopecli.eval.intervals:
a mean with a 95% interval for every metric). The seed sets the initialisation, the
batch order, the jump targets and, with --val-fraction, the split; with --val-clips every
seed validates on the same clips.
"""

from __future__ import annotations

from pathlib import Path

from hopecli.errors import HopeError
from hopecli.runs.folder import CONFIG, read_json

SEEDS = "seeds.json"


def seed_dir(out: Path, seed: int) -> Path:
    return Path(out) / f"seed{seed}"


def read_seeds(out: Path) -> list[int] | None:
    """The seeds of a seeds folder (None when `out` is not one)."""
    path = Path(out) / SEEDS
    if not path.is_file():
        return None
    data = read_json(path)
    seeds = data.get("seeds") if isinstance(data, dict) else None
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
        raise HopeError(f"{path}: expected {{\"seeds\": [a list of integers]}}")
    return seeds


def seed_runs(out: Path) -> list[Path] | None:
    """The run folders of a seeds folder that have started (None when `out` is not one)."""
    seeds = read_seeds(out)
    if seeds is None:
        return None
    return [seed_dir(out, s) for s in seeds if (seed_dir(out, s) / CONFIG).exists()]


def expand_runs(paths) -> list[Path]:
    """Run folders, each seeds folder replaced by its seed runs (in seed order)."""
    out: list[Path] = []
    for path in paths:
        runs = seed_runs(Path(path))
        if runs is None:
            out.append(Path(path))
        elif not runs:
            raise HopeError(f"{path}: a seeds folder ({SEEDS}) none of whose runs has started")
        else:
            out.extend(runs)
    return out
