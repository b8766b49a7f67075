"""--compile auto on the CPU: a training run long enough to repay the compilation compiles
its gradient steps, and only those; a short run stays eager (compiled.training_run)."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from hopecli.cli import hope
from hopecli.model.memory import chunked, compiled
from hopecli.model.memory.compiled import CompiledStep, set_compile, wants_compile


@pytest.fixture
def recorded(monkeypatch) -> list[bool]:
    """Whether each call of the compiled step recorded gradients (the compiler passes through)."""
    calls: list[bool] = []

    def compiler(fn):
        def call(*args, **kwargs):
            calls.append(torch.is_grad_enabled())
            return fn(*args, **kwargs)

        return call

    monkeypatch.setattr(chunked, "COMPILED_STEP", CompiledStep(chunked._step, compiler))
    monkeypatch.delenv("HOPE_COMPILE", raising=False)
    set_compile("auto")
    yield calls
    set_compile("auto")


def _train(store_path, run, *extra):
    return CliRunner().invoke(hope, [str(a) for a in (
        "train", store_path, "--out", run, "--preset", "hope_tiny", "--tasks", "a,b", "--steps", "2",
        "--batch-size", "2", "--device", "cpu", *extra)], catch_exceptions=False)


def test_a_long_cpu_run_compiles_its_gradient_steps(store_path, tmp_path, monkeypatch, recorded):
    monkeypatch.setattr(compiled, "CPU_TRAIN_STEPS", 4)
    result = _train(store_path, tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert ("compiling the memory's training step (--compile auto: 4 steps on the CPU repay the first "
            "steps' compilation; --compile off skips it)") in result.output
    assert recorded and all(recorded)  # validation and the final evaluation ran eager
    assert not wants_compile(torch.device("cpu"), training=True)  # only inside the run


def test_a_short_cpu_run_and_compile_off_stay_eager(store_path, tmp_path, monkeypatch, recorded):
    monkeypatch.setattr(compiled, "CPU_TRAIN_STEPS", 5)
    result = _train(store_path, tmp_path / "short")
    assert result.exit_code == 0, result.output
    monkeypatch.setattr(compiled, "CPU_TRAIN_STEPS", 4)
    off = _train(store_path, tmp_path / "off", "--compile", "off")
    assert off.exit_code == 0, off.output
    assert recorded == []
    assert "compiling" not in result.output + off.output
