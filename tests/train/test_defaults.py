"""Defaults that fit the machine: the preset without --preset, the help examples' split,
--compile on for a run too short to repay it, and several seeds in one command."""

from __future__ import annotations

import json
import shlex

import pytest
import torch
from click.testing import CliRunner

from hopecli.cli import hope
from hopecli.commands.train import EXAMPLES
from hopecli.data.store import FeatureStore
from hopecli.model.memory import chunked, compiled
from hopecli.model.memory.compiled import CompiledStep, set_compile
from hopecli.runs.config import read_run_config
from hopecli.runs.split import held_out, protocol_tasks
from .conftest import make_store

SAMPLE_CLIPS_PER_TASK = 14  # sample_data/: 14 clips of each friction (sample_data/README.md)


def _run(*args):
    return CliRunner().invoke(hope, [str(a) for a in args], catch_exceptions=False)


def test_no_preset_on_a_cpu_trains_the_cpu_sized_one(store_path, tmp_path):
    result = _run("train", store_path, "--out", tmp_path / "run", "--tasks", "a", "--steps", "1",
                  "--batch-size", "2", "--val-clips", "1", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(
        "no --preset: hope_tiny, sized for the CPU (--preset hope_phase5 trains the 43M-parameter predictor")
    assert "preset hope_tiny: HH predictor" in result.output
    assert json.loads((tmp_path / "run" / "config.json").read_text())["preset"] == "hope_tiny"


def test_no_preset_on_a_gpu_is_the_full_size_one(store_path, monkeypatch):
    from hopecli.train import distributed

    monkeypatch.setattr(distributed, "resolve_device", lambda device: torch.device("cuda"))
    result = _run("train", store_path, "--out", "x", "--steps", "1", "--print-config")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["preset"] == "hope_phase5"
    assert json.loads(result.stdout)["model"]["pattern"] == "HHHHH"


@pytest.mark.parametrize("example", [line for _, line in EXAMPLES if "demo_out/sample.zarr" in line],
                         ids=lambda line: shlex.split(line)[4])
def test_help_examples_hold_out_three_clips_a_task_of_the_sample_data(example, tmp_path):
    """On a store shaped like the shipped sample data (14 clips per friction)."""
    store = make_store(tmp_path / "s.zarr", {t: SAMPLE_CLIPS_PER_TASK for t in ("low", "mid", "high")})
    args = shlex.split(example)[2:]
    args[0] = str(store)
    if "--seeds" in args:  # one configuration; the seeds only repeat it
        del args[args.index("--seeds"):args.index("--seeds") + 2]
    result = _run("train", *args, "--print-config")
    assert result.exit_code == 0, result.output
    (tmp_path / "run").mkdir()
    config = json.loads(result.stdout)
    config["store"] = {**config["store"], **{k: v for k, v in FeatureStore.open(store).attrs.items()
                                             if k in ("encoder", "time_mode", "frames_per_clip",
                                                      "tubelet_size", "patches_per_step", "action_dim",
                                                      "state_dim")}}
    (tmp_path / "run" / "config.json").write_text(json.dumps(config))
    cfg = read_run_config(tmp_path / "run").train
    fs = FeatureStore.open(store)
    split = held_out(fs, protocol_tasks(fs, cfg), cfg)
    assert {t: len(v) for t, v in split.val.items()} == {"low": 3, "mid": 3, "high": 3}


def test_compile_on_warns_on_a_cpu_run_too_short_to_repay_it(store_path, tmp_path, monkeypatch):
    monkeypatch.setattr(chunked, "COMPILED_STEP", CompiledStep(chunked._step, lambda fn: fn))
    monkeypatch.setattr(compiled, "CPU_TRAIN_STEPS", 5)
    try:
        result = _run("train", store_path, "--out", tmp_path / "short", "--preset", "hope_tiny", "--tasks", "a,b",
                      "--steps", "2", "--batch-size", "2", "--device", "cpu", "--compile", "on")
        assert result.exit_code == 0, result.output
        assert ("warning: --compile on: 4 steps on the CPU are too few to repay the compilation"
                in " ".join(result.output.split()))
        monkeypatch.setattr(compiled, "CPU_TRAIN_STEPS", 4)
        long = _run("train", store_path, "--out", tmp_path / "long", "--preset", "hope_tiny", "--tasks", "a,b",
                    "--steps", "2", "--batch-size", "2", "--device", "cpu", "--compile", "on")
        assert long.exit_code == 0 and "too few to repay" not in long.output
    finally:
        set_compile("auto")


def test_seeds_train_one_run_per_seed_and_resume_the_unfinished(store_path, tmp_path):
    out = tmp_path / "vit"
    args = ("train", store_path, "--out", out, "--preset", "vit_tiny", "--tasks", "a", "--steps", "2",
            "--batch-size", "2", "--val-clips", "2", "--seeds", "3,5")
    result = _run(*args)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "seeds.json").read_text()) == {"seeds": [3, 5]}
    for seed in (3, 5):
        saved = read_run_config(out / f"seed{seed}")
        assert saved.train.seed == seed
    a, b = (json.loads((out / f"seed{s}" / "results.json").read_text()) for s in (3, 5))
    assert a["R"] != b["R"]  # another initialisation and batch order
    assert f"Error: {out}: already holds a run; pass --resume" in _run(*args).output
    # the second seed's run lost: --resume trains it again, leaves the first as it was
    import shutil

    before = (out / "seed3" / "results.json").read_text()
    shutil.rmtree(out / "seed5")
    resumed = _run("train", "--out", out, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert "seed 5" in resumed.output and "seed 3" not in resumed.output
    assert json.loads((out / "seed5" / "results.json").read_text()) == b
    assert (out / "seed3" / "results.json").read_text() == before
    assert _run(*args[:-4], "--seed", "1", "--seeds", "1,2").output.endswith(
        "Error: give one of --seed and --seeds\n")
