"""Threshold warnings on stderr: gradient norm and Titan inner loss."""

from __future__ import annotations

from hopecli.data.store import FeatureStore
from hopecli.model.presets import preset_config
from hopecli.train.config import TrainConfig
from hopecli.train.continual import train


def test_grad_norm_and_inner_loss_warnings(store_path, tmp_path, capsys):
    model_cfg = preset_config("hope_tiny", input_dim=16, action_dim=2, state_dim=2, patches_per_step=4,
                              memory={"checkpoint_chunks": False})
    cfg = TrainConfig(steps=2, batch_size=2, tasks=("a",), horizon=1, log_every=1,
                      warn_grad_norm=1e-6, warn_inner_loss=0.0)
    train(FeatureStore.open(store_path), tmp_path / "run", model_cfg, cfg)
    err = capsys.readouterr().err
    assert "warning: gradient norm" in err and "> 1e-06 at step 1" in err
    assert "warning: block" in err and "/inner_loss = " in err

    quiet = TrainConfig(steps=2, batch_size=2, tasks=("a",), horizon=1, log_every=1)
    train(FeatureStore.open(store_path), tmp_path / "quiet", model_cfg, quiet)
    assert "warning" not in capsys.readouterr().err
