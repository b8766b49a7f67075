"""Before a run starts: how big the predictor is and, where it matters, how long a step takes.

The presets people compare are about 43M parameters; on a CPU one of their training
steps takes seconds to minutes. `hope train` says which preset and how many parameters
it is about to train, and above LARGE_ON_CPU parameters on a CPU it times one real step
(forward and backward on one clip of the store, scaled to the batch) and says so.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from hopecli.model import Predictor, PredictorConfig
from hopecli.train.config import TrainConfig
from hopecli.train.data import read_batch
from hopecli.train.losses import WorldModelObjective

LARGE_ON_CPU = 5_000_000  # parameters above which a CPU run gets a time estimate
SMALL_PRESETS = ("hope_tiny", "vit_tiny", "hybrid_tiny")


@dataclass
class StepEstimate:
    parameters: int
    seconds_per_step: float | None  # None: not measured (small model or a GPU)


def count_parameters(model_cfg: PredictorConfig) -> int:
    """Trainable parameters of a freshly built predictor."""
    return Predictor(model_cfg).num_parameters()


def time_one_step(model_cfg: PredictorConfig, store, cfg: TrainConfig, device: torch.device) -> float:
    """Seconds of one optimizer step at cfg.batch_size: one clip's forward and backward,
    measured once, times the batch size (a CPU step grows about linearly with it)."""
    torch.manual_seed(cfg.seed)
    model = Predictor(model_cfg).to(device)
    objective = WorldModelObjective(model, cfg.loss)
    batch = read_batch(store, [store.indices()[0]]).to(device)
    T = batch.features.shape[1]
    tau = torch.full((1,), T - 1, dtype=torch.long, device=device)
    start = time.perf_counter()
    total, _, _ = objective(batch.features, batch.actions, batch.states, tau)
    total.backward()
    return (time.perf_counter() - start) * cfg.batch_size


def estimate(model_cfg: PredictorConfig, store, cfg: TrainConfig, device: torch.device) -> StepEstimate:
    """Parameters, and the time per step when a large model is about to train on a CPU."""
    parameters = count_parameters(model_cfg)
    seconds = None
    if device.type == "cpu" and parameters > LARGE_ON_CPU:
        seconds = time_one_step(model_cfg, store, cfg, device)
    return StepEstimate(parameters, seconds)


def duration(seconds: float) -> str:
    """12.3 s, 4.5 min, 2.1 h."""
    if seconds < 90:
        return f"{seconds:.1f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
