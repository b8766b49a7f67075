"""Tiny clips, a feature store made by `extract` with the embedded encoder, and run folders
of untrained tiny predictors on it (rollout, planning and adaptation need no training)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hopecli.data.store import FeatureStore
from hopecli.data.synth import PushConfig, simulate_push, write_clip
from hopecli.extract import ExtractConfig, extract
from hopecli.model import Predictor, preset_config
from hopecli.runs.checkpoint import save_checkpoint
from hopecli.runs.folder import write_json
from hopecli.train.config import TrainConfig
from hopecli.train.continual import store_info

# a shared 2-core machine: more intra-op threads only add contention for these sizes
torch.set_num_threads(1)

WINDOW = 8  # frames per window -> 4 tubelet steps; the clips below hold two windows each


def make_run(path: Path, store: FeatureStore, preset: str, seed: int = 0, **overrides) -> Path:
    """A run folder as `hope train` leaves it, holding a freshly initialised predictor."""
    T, P, D = store.group["features"].shape[1:]
    cfg = preset_config(preset, input_dim=D, patches_per_step=P, action_dim=store.attrs["action_dim"],
                        state_dim=store.attrs["state_dim"], **overrides)
    torch.manual_seed(seed)
    model = Predictor(cfg)
    write_json(path / "config.json", {"hope_version": "test", "model": cfg.to_dict(),
                                      "train": TrainConfig(steps=1).to_dict(),
                                      "store": store_info(store)})
    save_checkpoint(path, "experience-0", model, {"step": 0})
    return path


@pytest.fixture(scope="session")
def clips_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("clips")
    for i, friction in enumerate((0.2, 0.8)):
        clip = simulate_push(PushConfig(frames=2 * WINDOW, resolution=32, friction=friction, seed=i,
                                        task=f"mu{friction}"))
        write_clip(clip, folder / f"clip{i}.mp4")
    return folder


@pytest.fixture(scope="session")
def store_path(tmp_path_factory, clips_dir) -> Path:
    path = tmp_path_factory.mktemp("store") / "store.zarr"
    result = extract(sorted(clips_dir.glob("*.mp4")), path, ExtractConfig(frames=WINDOW, device="cpu"))
    assert not result.skipped, result.skipped
    return path


@pytest.fixture(scope="session")
def store(store_path) -> FeatureStore:
    return FeatureStore.open(store_path)


@pytest.fixture(scope="session")
def runs(tmp_path_factory, store) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    return {name: make_run(root / name, store, name) for name in ("hope_tiny", "vit_tiny", "hybrid_tiny")}
