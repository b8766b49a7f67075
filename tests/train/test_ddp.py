"""`hope train` under torchrun with two CPU processes (gloo) equals one process with the
same global batch."""

from __future__ import annotations

import os
import subprocess
import sys

import torch
from safetensors.torch import load_file

from hopecli.data.store import FeatureStore
from hopecli.model.presets import preset_config
from hopecli.runs.folder import MetricsLog
from hopecli.train.config import TrainConfig
from hopecli.train.continual import train

ARGS = ["--preset", "hybrid_tiny", "--steps", "2", "--batch-size", "4", "--horizon", "1", "--log-every", "1"]


def test_two_processes_match_one(store_path, tmp_path):
    ddp_run = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "--no-python",
           sys.executable, "-c", "from hopecli.cli import main; main()",
           "train", str(store_path), "--out", str(ddp_run), *ARGS]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[:3000]
    assert "x 2 processes" in proc.stderr

    store = FeatureStore.open(store_path)
    single = tmp_path / "single"
    model_cfg = preset_config("hybrid_tiny", input_dim=16, action_dim=2, state_dim=2, patches_per_step=4,
                              grid=(2, 2))
    train(store, single, model_cfg, TrainConfig(steps=2, batch_size=4, horizon=1, log_every=1))

    steps = lambda run: [r for r in MetricsLog.read(run / "metrics.jsonl") if r["kind"] == "step"]  # noqa: E731
    a, b = steps(ddp_run), steps(single)
    assert [r["step"] for r in a] == [1, 2, 3, 4]  # rank 0 alone writes
    for ra, rb in zip(a, b):
        assert abs(ra["loss"] - rb["loss"]) < 1e-5
        assert abs(ra["grad_norm/total"] - rb["grad_norm/total"]) < 1e-4 * rb["grad_norm/total"]
    assert "grad_norm/cms1" in a[3]  # the period-4 level stepped, on gradients summed over ranks
    wa = load_file(ddp_run / "checkpoints" / "experience-1" / "model.safetensors")
    wb = load_file(single / "checkpoints" / "experience-1" / "model.safetensors")
    for k in wb:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-4, atol=1e-5, msg=k)
