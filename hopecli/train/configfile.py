"""Training configuration files: `hope train --config run.yaml` and `--print-config`.

A file has the shape of a run folder's config.json, so that file can be given back to
repeat a run; every section is optional:

```yaml
preset: hope_tiny          # the model's starting point (default hope_phase5)
store: demo_out/sample.zarr  # or {path: ...} as config.json has it
model:                     # PredictorConfig fields; memory: TitanConfig fields
  pattern: HH
  memory: {update_rule: gd}
train:                     # TrainConfig fields; loss: LossConfig, optim: OptimConfig
  tasks: [low, mid, high]
  steps: 100
  optim: {lr: 0.002}
```

The model's data shapes (input_dim, action_dim, state_dim, patches_per_step, grid) always
come from the store, so they are ignored here. `hope_version` and `numerics` (written by
`hope train`: the compile decision and threads of that run, hopecli.train.numerics) are
ignored too: a new run decides them anew.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hopecli.errors import HopeError

SECTIONS = ("hope_version", "numerics", "preset", "store", "model", "train")
# set from the store, never from a file
DATA_FIELDS = ("input_dim", "action_dim", "state_dim", "patches_per_step", "grid")


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The file's sections as a dict (YAML, or JSON, which YAML also reads)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise HopeError(f"{path}: config file not found")
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as e:
        raise HopeError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise HopeError(f"{path}: not valid YAML{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise HopeError(f"{path}: expected a mapping with sections {', '.join(SECTIONS[2:])}")
    unknown = sorted(set(data) - set(SECTIONS))
    if unknown:
        raise HopeError(f"{path}: unknown section(s) {', '.join(unknown)}; expected {', '.join(SECTIONS[2:])}")
    for section in ("model", "train"):
        if not isinstance(data.get(section) or {}, dict):
            raise HopeError(f"{path}: section {section!r} must be a mapping of fields")
    return data


def store_path(data: dict[str, Any]) -> str | None:
    """The store a config names (`store: PATH` or config.json's `store: {path: PATH}`)."""
    store = data.get("store")
    if isinstance(store, dict):
        return store.get("path")
    return store


def flat_fields(data: dict[str, Any]) -> dict[str, Any]:
    """Every model and train field of a config, keyed by its dotted name.

    model.pattern, model.memory.update_rule, train.steps, train.optim.lr, ...; lists become
    tuples (the configs' own type for sequences).
    """
    out: dict[str, Any] = {}

    def walk(prefix: str, d: dict) -> None:
        for key, value in d.items():
            if isinstance(value, dict):
                walk(f"{prefix}{key}.", value)
            else:
                out[f"{prefix}{key}"] = tuple(value) if isinstance(value, list) else value

    for section in ("model", "train"):
        walk(f"{section}.", data.get(section) or {})
    for field in DATA_FIELDS:
        out.pop(f"model.{field}", None)
    out.pop("model.memory.dim", None)  # follows model.dim
    return out
