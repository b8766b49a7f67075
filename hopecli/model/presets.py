"""Named predictor configurations.

The full-size presets are matched at about 43M parameters (input_dim 1024, P = 256,
A = S = 2, max_frames 64), the budget of the seeds' ViT baseline; counts (checked in
tests/model/test_config.py): vit_baseline 43,427,200; hope_phase5 43,591,194; hybrid
43,913,288; hope_multihead 43,290,688. The tiny presets (width 64) are for tests and
CPU demos. They predict the change from the input step (`predict_change`): at demo
budgets a width-64 model that must rebuild every patch still misses the static ones (86%
of patch-steps) by 0.021 after 300 steps, most of copying's whole horizon-1 error of
0.034 (`bench/demo_learning.py`; README, "Does a demo model learn?"); the full-size
presets predict the features, as V-JEPA 2-AC does. Their memories keep each chunk for the backward instead of
recomputing it (`checkpoint_chunks` off): at width 64 that memory is small, and a
hope_tiny training step takes 2.15 s instead of 2.87 s (`bench/train_speed.py`, 1 thread).

- vit_baseline: 24 x T, width 384, 16 heads, MLP ratio 4, drop path 0.1 (the seeds'
  `ac_predictor.yaml`).
- hope_phase5: 5 x H as the seeds' phase 5 built it: one full-width memory per box
  (384 -> 1536 -> 384), a static q projection, rule dgd, CMS 2.0 / 2.5 / 3.0 with
  periods 1 / 4 / 16, spatial mixing.
- hybrid: T and H alternating, starting and ending with T (seed 002, fix 3): 5 T
  blocks (1.77M each) and 4 phase-5 H blocks (8.55M each), the split that lands
  nearest the budget at full width.
- hope_multihead: H blocks whose six memories are multi-head (6 heads of 64, each its
  own small MLP, q self-modifying), 12 blocks at hidden multiplier 3.5 (224 hidden
  units per head; 4.0 would give 11 blocks at 41.4M or 12 at 45.0M), with the memory
  settings that learn in context (below).

hope_phase5 and hybrid keep the seeds' memories (conv_size 0, rule dgd, self targets).
hope_multihead, hope_tiny and hybrid_tiny use what the in-context benchmark measured
(bench/incontext.py, `hope synth --dynamics`, 300 joint steps, 1 thread; mean error from
step 2 on, linear / nonlinear / held-out family, against the no-context map 0.388 /
0.338 / 0.468 and in-context least squares 0.034 / 0.163 / 0.033): without a short
convolution hope_tiny learns nothing from the clip (0.389 / 0.335 / 0.466, the same with
its memories frozen), nor does vit_tiny x5 (0.376 / 0.331 / 0.465); a convolution over
each patch's own time with the seeds' rule (dgd, self targets) reaches 0.132 / 0.186 /
0.213, and with rule gd and the memory box storing v 0.108 / 0.180 / 0.182 (frozen:
0.350 / 0.319 / 0.437); the same convolution over the token sequence learns nothing
(0.385 / 0.340 / 0.468).

Every full-size preset uses drop path 0.1 (rising linearly from 0 over the depth).
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from hopecli.model.config import PredictorConfig
from hopecli.model.memory import TitanConfig
from hopecli.model.predictor import Predictor

_PHASE5_MEMORY = {"heads": 1, "hidden_mult": 4.0, "kind": "mlp", "update_rule": "dgd", "static_q": True}
# what learns the clip in context (bench/incontext.py, hope_tiny at 300 steps): a short
# convolution over each patch's own time (k reads the previous step, v and q the current
# one), rule gd, and a memory box that stores v itself
_IN_CONTEXT = {"conv_size": 2, "conv_axis": "time", "update_rule": "gd", "memory_target": "value"}
_CMS = {"cms_hidden_mults": (2.0, 2.5, 3.0), "cms_periods": (1, 4, 16)}

PRESETS: dict[str, dict[str, Any]] = {
    "vit_baseline": {"dim": 384, "pattern": "T" * 24, "num_heads": 16, "mlp_ratio": 4.0, "drop_path": 0.1},
    "hope_phase5": {
        "dim": 384,
        "pattern": "HHHHH",
        "memory": _PHASE5_MEMORY,
        **_CMS,
        "spatial_mixing": True,
        "drop_path": 0.1,
    },
    "hybrid": {
        "dim": 384,
        "pattern": "THTHTHTHT",
        "num_heads": 16,
        "mlp_ratio": 4.0,
        "memory": _PHASE5_MEMORY,
        **_CMS,
        "spatial_mixing": True,
        "drop_path": 0.1,
    },
    "hope_multihead": {
        "dim": 384,
        "pattern": "H" * 12,
        "memory": {"heads": 6, "hidden_mult": 3.5, "kind": "mlp", "static_q": False, **_IN_CONTEXT},
        **_CMS,
        "spatial_mixing": True,
        "drop_path": 0.1,
    },
    "vit_tiny": {"dim": 64, "pattern": "TT", "num_heads": 4, "mlp_ratio": 2.0, "max_frames": 32,
                 "predict_change": True},
    "hope_tiny": {
        "dim": 64,
        "pattern": "HH",
        "memory": {"heads": 2, "hidden_mult": 2.0, "kind": "mlp", "static_q": False,
                   "checkpoint_chunks": False, **_IN_CONTEXT},
        "cms_hidden_mults": (1.0, 1.5),
        "cms_periods": (1, 4),
        "spatial_mixing": True,
        "max_frames": 32,
        "predict_change": True,
    },
    "hybrid_tiny": {
        "dim": 64,
        "pattern": "THT",
        "num_heads": 4,
        "mlp_ratio": 2.0,
        "memory": {"heads": 2, "hidden_mult": 2.0, "kind": "mlp", "static_q": False,
                   "checkpoint_chunks": False, **_IN_CONTEXT},
        "cms_hidden_mults": (1.0, 1.5),
        "cms_periods": (1, 4),
        "spatial_mixing": True,
        "max_frames": 32,
        "predict_change": True,
    },
}


def preset_config(name: str, **overrides: Any) -> PredictorConfig:
    """The preset's config with overrides (data shapes and any PredictorConfig field).

    `memory` may be a TitanConfig or a dict of its fields merged into the preset's
    memory; the memory width always follows `dim`.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown predictor preset {name!r}; choose one of {sorted(PRESETS)!r}")
    fields = copy.deepcopy(PRESETS[name])
    memory = dict(fields.pop("memory", {}))
    extra = overrides.pop("memory", None) or {}
    memory.update(dataclasses.asdict(extra) if isinstance(extra, TitanConfig) else extra)
    fields.update(overrides)
    memory["dim"] = fields.get("dim", PredictorConfig.dim)
    return PredictorConfig.from_dict({**fields, "memory": memory})


def build_predictor(name: str, **overrides: Any) -> Predictor:
    """A freshly initialised predictor from a preset, e.g.
    build_predictor("hope_phase5", input_dim=1024, action_dim=2, state_dim=2, patches_per_step=256).
    """
    return Predictor(preset_config(name, **overrides))
