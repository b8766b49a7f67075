"""Before training: which preset, how many parameters, and on a CPU a time estimate for big ones."""

from __future__ import annotations

import re

from click.testing import CliRunner

from hopecli.cli import hope
from hopecli.train import estimate


def _train(store_path, run):
    return CliRunner().invoke(hope, [str(a) for a in (
        "train", store_path, "--out", run, "--preset", "vit_tiny", "--tasks", "a,b", "--steps", "2",
        "--batch-size", "2", "--device", "cpu")], catch_exceptions=False)


def test_preset_and_parameters_come_first(store_path, tmp_path):
    result = _train(store_path, tmp_path / "run")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "preset vit_tiny: TT predictor, 73,680 parameters"
    assert not any(line.startswith("warning:") for line in lines)


def test_a_large_model_on_the_cpu_gets_a_time_per_step(store_path, tmp_path, monkeypatch):
    monkeypatch.setattr(estimate, "LARGE_ON_CPU", 50_000)
    result = _train(store_path, tmp_path / "run")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "preset vit_tiny: TT predictor, 73,680 parameters"
    assert re.fullmatch(
        r"warning: preset vit_tiny has 73,680 parameters \(over 50,000\) and will train on the CPU: one step "
        r"of batch 2 takes about \d+\.\d (s|min|h) \(one clip timed\), about \d+\.\d (s|min|h) for the 4 steps "
        r"of this run; a GPU or a CPU-sized preset \(hope_tiny, vit_tiny, hybrid_tiny\) is much faster",
        lines[1]), lines[1]


def test_durations_read_in_the_right_unit():
    assert [estimate.duration(s) for s in (12.34, 300, 7560)] == ["12.3 s", "5.0 min", "2.1 h"]
