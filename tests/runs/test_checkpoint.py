"""Checkpoint files: round trip, safe loading, and a crash mid-write leaving the last one."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hopecli.errors import CheckpointError, HopeError
from hopecli.runs import checkpoint as ckpt
from hopecli.runs.folder import MetricsLog


def test_round_trip_and_latest_pointer(tmp_path):
    model = nn.Linear(3, 2)
    state = {"optimizer": {"state": {0: {"step": torch.tensor(3.0)}}}, "progress": {"step": 3, "rows": [[0.5, None]]}}
    ckpt.save_checkpoint(tmp_path, "step-0000003", model, state)
    ckpt.save_checkpoint(tmp_path, "experience-0", model, state)
    ckpt.save_checkpoint(tmp_path, "step-0000009", model, state)
    names = sorted(p.name for p in ckpt.checkpoint_dir(tmp_path).iterdir())
    assert names == ["experience-0", "latest.json", "step-0000009"]  # older periodic one removed
    assert ckpt.latest_checkpoint(tmp_path) == "step-0000009"
    other = nn.Linear(3, 2)
    folder = ckpt.resolve_checkpoint(tmp_path)
    ckpt.load_weights(other, folder)
    assert torch.equal(other.weight, model.weight)
    assert ckpt.load_state(folder)["progress"] == {"step": 3, "rows": [[0.5, None]]}


def test_weights_of_another_model_are_refused(tmp_path):
    ckpt.save_checkpoint(tmp_path, "experience-0", nn.Linear(3, 2), {})
    with pytest.raises(CheckpointError, match="model.safetensors"):
        ckpt.load_weights(nn.Sequential(nn.Linear(3, 2)), ckpt.resolve_checkpoint(tmp_path))


def test_pickled_code_is_not_executed(tmp_path):
    ckpt.save_checkpoint(tmp_path, "experience-0", nn.Linear(3, 2), {})
    folder = ckpt.resolve_checkpoint(tmp_path)
    torch.save({"f": print}, folder / ckpt.STATE)  # a function: not plain data
    with pytest.raises(CheckpointError, match="cannot read training state safely"):
        ckpt.load_state(folder)


def test_crash_while_writing_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    model = nn.Linear(3, 2)
    ckpt.save_checkpoint(tmp_path, "step-0000002", model, {"progress": 2})
    good = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ckpt.torch, "save", crash)
    with pytest.raises(OSError):
        ckpt.save_checkpoint(tmp_path, "step-0000004", model, {"progress": 4})
    monkeypatch.undo()
    assert ckpt.latest_checkpoint(tmp_path) == "step-0000002"
    assert not (ckpt.checkpoint_dir(tmp_path) / "step-0000004").exists()
    restored = nn.Linear(3, 2)
    ckpt.load_weights(restored, ckpt.resolve_checkpoint(tmp_path))
    assert torch.equal(restored.weight, good)
    assert ckpt.load_state(ckpt.resolve_checkpoint(tmp_path)) == {"progress": 2}


def test_no_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(HopeError, match="has no checkpoint yet"):
        ckpt.resolve_checkpoint(tmp_path)


def test_metrics_log_skips_a_torn_line_and_truncates(tmp_path):
    path = tmp_path / "metrics.jsonl"
    log = MetricsLog(path)
    for step in (1, 2, 3):
        log.write({"kind": "step", "step": step})
    log.close()
    with open(path, "a") as f:
        f.write('{"kind": "st')  # crash mid-line
    assert [r["step"] for r in MetricsLog.read(path)] == [1, 2, 3]
    MetricsLog.truncate(path, lambda r: r["step"] <= 2)
    assert [r["step"] for r in MetricsLog.read(path)] == [1, 2]
