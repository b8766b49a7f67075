"""Resuming continues bit for bit; a NaN stops the run and keeps the last good checkpoint."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from hopecli.data.store import FeatureStore
from hopecli.errors import HopeError
from hopecli.model.presets import preset_config
from hopecli.runs.checkpoint import latest_checkpoint, load_model, load_state, resolve_checkpoint
from hopecli.runs.folder import MetricsLog
from hopecli.train import loop
from hopecli.train.config import TrainConfig
from hopecli.train.continual import train
from hopecli.train.loop import TrainingDiverged
from hopecli.train.optim import OptimConfig


def _model_cfg(preset, **overrides):
    return preset_config(preset, input_dim=16, action_dim=2, state_dim=2, patches_per_step=4, **overrides)


def _losses(run):
    return [(r["step"], r["loss"]) for r in MetricsLog.read(run / "metrics.jsonl") if r["kind"] == "step"]


@pytest.mark.parametrize("preset", ["vit_tiny", "hope_tiny", "hybrid_tiny"])
def test_resume_after_a_crash_matches_the_uninterrupted_run(preset, store_path, tmp_path, monkeypatch):
    """Two tasks of 4 steps; a periodic checkpoint at step 5 and a crash at step 6. In the
    HOPE presets the CMS level of period 4 steps at 4 and 8, so the checkpoint holds the
    gradient of step 5, which the step at 8 must still average in."""
    store = FeatureStore.open(store_path)
    model_cfg = _model_cfg(preset)
    cfg = TrainConfig(steps=4, batch_size=2, checkpoint_every=5, log_every=2, horizon=2,
                      optim=OptimConfig(warmup_steps=1))
    full = tmp_path / "full"
    train(store, full, model_cfg, cfg)

    crashed = tmp_path / "crashed"
    real_step = loop.optimizer_step

    def crash_at_6(optimizer, step, *args):
        if step == 6:
            raise KeyboardInterrupt
        return real_step(optimizer, step, *args)

    monkeypatch.setattr(loop, "optimizer_step", crash_at_6)
    with pytest.raises(KeyboardInterrupt):
        train(store, crashed, model_cfg, cfg)
    monkeypatch.undo()
    assert latest_checkpoint(crashed) == "step-0000005"
    assert [s for s, _ in _losses(crashed)] == [1, 2, 3, 4, 5]
    pending = load_state(resolve_checkpoint(crashed))["pending_grads"]
    assert bool(pending) == (preset != "vit_tiny")
    assert all(".cms.levels.1." in k for k in pending)

    train(store, crashed, model_cfg, cfg, resume=True)
    assert _losses(crashed) == _losses(full)
    assert [s for s, _ in _losses(full)] == list(range(1, 9))
    a = load_file(full / "checkpoints" / "experience-1" / "model.safetensors")
    b = load_file(crashed / "checkpoints" / "experience-1" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    ra, rb = (json.loads((r / "results.json").read_text()) for r in (full, crashed))
    assert ra == rb
    evals = [r["experience"] for r in MetricsLog.read(crashed / "metrics.jsonl") if r["kind"] == "eval"]
    assert evals == [-1, 0, 1]  # nothing logged twice


def test_resume_refuses_another_config(store_path, tmp_path):
    store = FeatureStore.open(store_path)
    cfg = TrainConfig(steps=1, batch_size=2, tasks=("a",), horizon=1)
    train(store, tmp_path / "run", _model_cfg("vit_tiny"), cfg)
    with pytest.raises(HopeError, match=r"already holds a run; pass --resume"):
        train(store, tmp_path / "run", _model_cfg("vit_tiny"), cfg)
    other = TrainConfig(steps=1, batch_size=4, tasks=("a",), horizon=1)
    with pytest.raises(HopeError, match=r"--resume needs the saved train config; these differ: \['batch_size'\]"):
        train(store, tmp_path / "run", _model_cfg("vit_tiny"), other, resume=True)


def test_nan_stops_the_run_naming_the_step_and_keeps_the_last_checkpoint(store_path, tmp_path, monkeypatch):
    """A loss that turns NaN at step 3 (a diverging model; NaN features are refused before,
    naming the clip: tests/train/test_reliability.py)."""
    store = FeatureStore.open(store_path)
    cfg = TrainConfig(steps=2, batch_size=2, horizon=1)
    run = tmp_path / "run"
    real_sum, calls = loop.all_sum, []

    def nan_at_step_3(t, world):  # the step loop sums its losses across ranks once per step
        calls.append(None)
        return real_sum(t, world) * (float("nan") if len(calls) == 3 else 1.0)

    monkeypatch.setattr(loop, "all_sum", nan_at_step_3)
    with pytest.raises(TrainingDiverged) as info:
        train(store, run, _model_cfg("vit_tiny"), cfg)
    assert str(info.value) == "training stopped: the loss is nan at step 3 (experience 2 'b', step 1 of 2)"
    assert latest_checkpoint(run) == "experience-0"
    model, config = load_model(run)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    results = json.loads((run / "results.json").read_text())
    assert len(results["R"]["teacher_forcing"]) == 1 and results["complete"] is False


def test_resume_replays_the_compile_decision_of_the_whole_run(store_path, tmp_path, monkeypatch):
    """A run long enough for --compile auto to compile its training step on the CPU,
    interrupted where fewer steps remain than that threshold: the resumed steps still
    run compiled (the decision recorded in config.json), and the losses, weights and
    results equal the uninterrupted run's bit for bit. The compiler passes through,
    recording which calls it served."""
    from hopecli.model.memory import chunked, compiled
    from hopecli.model.memory.compiled import CompiledStep, set_compile

    calls: list[bool] = []

    def compiler(fn):
        def call(*args, **kwargs):
            calls.append(torch.is_grad_enabled())
            return fn(*args, **kwargs)
        return call

    monkeypatch.setattr(chunked, "COMPILED_STEP", CompiledStep(chunked._step, compiler))
    monkeypatch.setattr(compiled, "CPU_TRAIN_STEPS", 6)  # 8 steps in all, 3 left after the crash
    monkeypatch.delenv("HOPE_COMPILE", raising=False)
    set_compile("auto")
    store = FeatureStore.open(store_path)
    model_cfg = _model_cfg("hope_tiny")
    cfg = TrainConfig(steps=4, batch_size=2, checkpoint_every=5, log_every=2, horizon=2,
                      optim=OptimConfig(warmup_steps=1), device="cpu")
    full = tmp_path / "full"
    train(store, full, model_cfg, cfg)
    numerics = json.loads((full / "config.json").read_text())["numerics"]
    assert numerics["compile"] == "auto" and numerics["compile_steps"] == 8 and numerics["compiled_train_step"]

    crashed = tmp_path / "crashed"
    real_step = loop.optimizer_step

    def crash_at_6(optimizer, step, *args):
        if step == 6:
            raise KeyboardInterrupt
        return real_step(optimizer, step, *args)

    with monkeypatch.context() as m:
        m.setattr(loop, "optimizer_step", crash_at_6)
        with pytest.raises(KeyboardInterrupt):
            train(store, crashed, model_cfg, cfg)
    assert latest_checkpoint(crashed) == "step-0000005"
    calls.clear()
    set_compile("off")  # the process's mode now: the run's recorded "auto" is replayed instead
    try:
        train(store, crashed, model_cfg, cfg, resume=True)
    finally:
        set_compile("auto")
    assert calls and all(calls)  # steps 6-8 compiled, as in the uninterrupted run; evaluation eager
    assert _losses(crashed) == _losses(full)
    a = load_file(full / "checkpoints" / "experience-1" / "model.safetensors")
    b = load_file(crashed / "checkpoints" / "experience-1" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    ra, rb = (json.loads((r / "results.json").read_text()) for r in (full, crashed))
    assert ra == rb


@pytest.mark.parametrize("preset, advice", [
    ("hope_tiny", "--checkpoint-chunks"),  # the tiny presets keep their chunks
    ("hope_multihead", "--recompute whole"),
])
def test_out_of_memory_names_the_step_and_what_frees_memory(preset, advice, store_path, tmp_path, monkeypatch):
    store = FeatureStore.open(store_path)
    real_sum, calls = loop.all_sum, []

    def out_of_memory_at_step_2(t, world):
        calls.append(None)
        if len(calls) == 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_sum(t, world)

    monkeypatch.setattr(loop, "all_sum", out_of_memory_at_step_2)
    overrides = {"dim": 64, "memory": {"heads": 2}, "pattern": "H"} if preset == "hope_multihead" else {}
    with pytest.raises(loop.OutOfMemory) as info:
        train(store, tmp_path / "run", _model_cfg(preset, **overrides), TrainConfig(steps=2, batch_size=2, horizon=1))
    assert str(info.value).startswith("training stopped: out of cpu memory in step 2 (experience 1 'a', batch 2); "
                                      "try a smaller --batch-size, or " + advice)
