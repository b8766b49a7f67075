"""Hand-written results.json files: runs for `hope eval` without training."""

from __future__ import annotations

import json


def write_run(path, R_tf, first_trained, experiences, strategy, horizon=None):
    path.mkdir()
    results = {
        "strategy": strategy,
        "tasks": ["a", "b"],
        "experiences": [{"name": e, "tasks": [e], "steps": 1} for e in experiences],
        "first_trained": first_trained,
        "initial": {"teacher_forcing": [0.9, 0.9], "jump": [0.9, 0.9]},
        "R": {"teacher_forcing": R_tf, "jump": R_tf},
        "horizon": horizon,
        "complete": horizon is not None,
    }
    (path / "results.json").write_text(json.dumps(results))
    return path
