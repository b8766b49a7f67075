"""TensorBoard events mirror metrics.jsonl; loss.png at the end; one warning without tensorboard."""

from __future__ import annotations

import json
import sys

import pytest
from click.testing import CliRunner

from hopecli.cli import hope
from hopecli.train.runlog import NO_TENSORBOARD, scalars


def _train(store_path, run, *extra):
    return CliRunner().invoke(hope, [str(a) for a in (
        "train", store_path, "--out", run, "--preset", "vit_tiny", "--tasks", "a,b", "--steps", "2",
        "--batch-size", "2", "--log-every", "1", *extra)], catch_exceptions=False)


def test_every_metrics_scalar_is_a_tensorboard_scalar(store_path, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    result = _train(store_path, run)
    assert result.exit_code == 0, result.output
    assert "tensorboard" not in result.output
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    expected = {}
    for record in records:
        for tag, value in scalars(record).items():
            expected.setdefault(tag, []).append((record["step"], value))
    assert {"loss", "loss/teacher", "lr/other", "grad_norm/total", "clips_per_s",
            "eval/teacher_forcing/a", "eval/jump/b"} <= set(expected)
    events = EventAccumulator(str(run), size_guidance={"scalars": 0})
    events.Reload()
    assert set(events.Tags()["scalars"]) == set(expected)
    for tag, points in expected.items():
        got = [(e.step, e.value) for e in events.Scalars(tag)]
        assert [s for s, _ in got] == [s for s, _ in points], tag
        assert [v for _, v in got] == pytest.approx([v for _, v in points], rel=1e-6), tag
    assert (run / "loss.png").read_bytes()[:4] == b"\x89PNG"


def test_without_tensorboard_training_goes_on_with_one_warning(store_path, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    run = tmp_path / "run"
    result = _train(store_path, run)
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert warnings == ["warning: " + NO_TENSORBOARD.format(run=run)]
    assert not list(run.glob("events.out.tfevents.*"))
    assert (run / "metrics.jsonl").is_file() and (run / "loss.png").is_file()
