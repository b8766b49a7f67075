"""A trained predictor with what its run folder says about the data: what `rollout`,
`adapt`, `plan` and the Python API (hopecli.load_run) act on."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from hopecli.errors import HopeError
from hopecli.model import Predictor
from hopecli.runs.checkpoint import load_model


@dataclass
class Run:
    """A trained predictor with what its run folder says about the data."""

    path: Path
    model: Predictor  # eval mode
    config: dict  # the run's config.json
    device: torch.device

    @property
    def store(self) -> dict:
        """Encoder, time mode, frames, fps, grid, dims of the store the run was trained on."""
        return self.config["store"]

    @property
    def frames_per_step(self) -> int:
        """Video frames one step stands for: the tubelet size in tubelet mode, else 1."""
        return int(self.store["tubelet_size"]) if self.store["time_mode"] == "tubelet" else 1


def load_run(path: str | Path, device: str | torch.device = "cpu", checkpoint: str | None = None) -> Run:
    """The predictor of a `hope train` run folder (latest checkpoint unless named)."""
    path = Path(path)
    if not path.is_dir():
        raise HopeError(f"{path}: no such run folder")
    device = torch.device(device)
    model, config = load_model(path, checkpoint, device)
    return Run(path=path, model=model, config=config, device=device)
