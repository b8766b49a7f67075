"""Faults of issue 12 on the training side: the device, the run files, the split, resumes
and interruptions. Each test reproduces its fault through the real command."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from hopecli.cli import hope


def _run(*args):
    return CliRunner().invoke(hope, [str(a) for a in args], catch_exceptions=False)


def _train(store, run, *extra):
    return _run("train", store, "--out", run, "--preset", "vit_tiny", "--tasks", "a", "--steps", "1",
                "--batch-size", "2", "--horizon", "1", *extra)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_one_line_and_writes_nothing(store_path, tmp_path):
    run = tmp_path / "run"
    result = _train(store_path, run, "--device", "cuda")
    assert result.exit_code == 1
    assert result.output == "Error: --device cuda: no CUDA device is available on this machine\n"
    assert not run.exists()
    assert _train(store_path, run, "--device", "cpu").exit_code == 0  # nothing left in the way


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_resume_on_another_device(store_path, tmp_path):
    run = tmp_path / "run"
    assert _train(store_path, run, "--device", "cpu").exit_code == 0
    config = json.loads((run / "config.json").read_text())
    config["train"]["device"] = "cuda"  # as if trained on a GPU machine
    (run / "config.json").write_text(json.dumps(config))
    result = _run("train", store_path, "--out", run, "--resume")
    assert result.exit_code == 1
    assert result.output == ("Error: --device cuda: no CUDA device is available on this machine; the run was "
                             "saved with device 'cuda': add --device cpu (or auto) to --resume on this machine\n")
    result = _run("train", store_path, "--out", run, "--resume", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "on cpu" in result.output
