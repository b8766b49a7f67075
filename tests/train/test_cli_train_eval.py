"""`hope train` then `hope eval` through Click, on a real (tiny) store."""

from __future__ import annotations

import json

import click
import pytest
from click.testing import CliRunner

from hopecli.cli import hope
from hopecli.commands import train as train_cmd
from hopecli.eval.metrics import METRIC_KEYS
from hopecli.model.config import PredictorConfig
from hopecli.model.memory.config import TitanConfig
from hopecli.train.config import TrainConfig
from hopecli.train.losses import LossConfig
from hopecli.train.optim import OptimConfig

from .conftest import make_store


def _run(*args):
    return CliRunner().invoke(hope, [str(a) for a in args], catch_exceptions=False)


def test_train_two_tasks_then_eval(store_path, tmp_path):
    run = tmp_path / "run"
    result = _run("train", store_path, "--out", run, "--preset", "hope_tiny", "--tasks", "b,a", "--steps", "2",
                  "--batch-size", "2", "--log-every", "1", "--checkpoint-chunks", "--update-rule", "gd",
                  "--cms-periods", "1,2", "--lr-scale-titan", "0.5")
    assert result.exit_code == 0, result.output
    assert "done:" in result.output
    for name in ("config.json", "metrics.jsonl", "results.json", "checkpoints/experience-0/model.safetensors",
                 "checkpoints/experience-1/state.pt"):
        assert (run / name).is_file(), name
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["pattern"] == "HH" and config["model"]["cms_periods"] == [1, 2]
    assert config["model"]["memory"]["update_rule"] == "gd"
    assert config["model"]["memory"]["checkpoint_chunks"] is True  # the option over the preset's False
    assert config["model"]["input_dim"] == 16 and config["model"]["grid"] == [2, 2]  # from the store
    assert config["train"]["tasks"] == ["b", "a"] and config["train"]["optim"]["lr_scale_titan"] == 0.5
    assert config["store"]["encoder"]["name"] == "test"
    steps = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in steps if r["kind"] == "step"]
    assert [r["step"] for r in steps] == [1, 2, 3, 4]
    assert {"loss/teacher", "loss/rollout", "loss/jump", "lr/titan", "lr/cms1", "grad_norm/titan"} <= set(steps[1])
    assert "grad_norm/cms1" in steps[1] and "grad_norm/cms1" not in steps[0]  # period 2
    assert any(k.startswith("diag/block0/") and k.endswith("/eta_mean") for k in steps[0])

    result = _run("eval", run, "--json", "--horizon", "2", "--store", store_path,
                  "--out-figure", tmp_path / "all.png")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    r = report["runs"][0]
    assert r["tasks"] == ["b", "a"] and r["experiences"] == ["b", "a"]
    assert len(r["R"]["teacher_forcing"]) == 2 and len(r["R"]["jump"][1]) == 2
    for kind in ("teacher_forcing", "jump"):
        assert set(METRIC_KEYS) <= set(r["metrics"][kind])
        assert r["metrics"][kind]["avg_error"] == pytest.approx(sum(r["R"][kind][1]) / 2)
    assert r["horizon"]["steps"] == 2 and len(r["horizon"]["mean"]) == 2
    assert (run / "eval.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "all.png").read_bytes()[:4] == b"\x89PNG"
    assert "Avg Error" in result.stderr


def test_base_then_tasks_with_the_seeds_options_then_both_metric_families(tmp_path):
    store = make_store(tmp_path / "study.zarr", {"base": 4, "a": 3, "b": 3})
    run = tmp_path / "run"
    result = _run("train", store, "--out", run, "--preset", "vit_tiny", "--base-task", "base", "--tasks", "b,a",
                  "--base-steps", "4", "--steps", "2,1", "--batch-size", "2", "--val-clips", "1",
                  "--rollout-weight", "0", "--jump-k", "2", "--schedule", "wsd", "--warmup-fraction", "0.5",
                  "--decay-fraction", "0.5", "--log-every", "1", "--horizon", "1")
    assert result.exit_code == 0, result.output
    config = json.loads((run / "config.json").read_text())["train"]
    assert config["base_task"] == "base" and config["steps"] == [2, 1] and config["val_clips"] == 1
    assert config["loss"]["jump_k"] == 2 and config["optim"]["schedule"] == "wsd"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if r["kind"] == "step"]
    assert [(r["name"], r["exp_step"]) for r in steps] == [
        ("base", 1), ("base", 2), ("base", 3), ("base", 4), ("b", 1), ("b", 2), ("a", 1)]
    # wsd, restarting every experience: base 4 steps, warm-up 2, decay 2 -> 1/2, 1, 1, 1/2;
    # b 2 steps, warm-up 1, decay 1 -> 1, 1; a 1 step, no whole warm-up or decay step -> 1
    assert [r["lr/other"] / 2.5e-4 for r in steps] == pytest.approx([0.5, 1, 1, 0.5, 1, 1, 1])
    assert "loss/rollout" not in steps[0]
    evals = [r for r in records if r["kind"] == "eval"]
    assert [r["experience"] for r in evals] == [-1, 0, 1, 2]
    assert list(evals[1]["errors"]) == ["base", "b", "a"]  # after base: the future tasks measured too
    assert all(e["clips"] == 1 for e in evals[1]["errors"].values())

    result = _run("eval", run, "--json", "--details")
    assert result.exit_code == 0, result.output
    r = json.loads(result.stdout)["runs"][0]
    assert r["base_task"] == "base" and r["tasks"] == ["base", "b", "a"] and r["experiences"] == ["base", "b", "a"]
    for kind in ("teacher_forcing", "jump"):
        R = r["R"][kind]
        assert len(R) == 3 and all(len(row) == 3 and None not in row for row in R)
        stream = r["stream"][kind]
        assert stream["stream_error"][0] == pytest.approx(R[0][0])
        assert stream["forward_transfer"][0] == pytest.approx((R[0][1] + R[0][2]) / 2)
        assert stream["final"]["stream_error"] == pytest.approx(r["metrics"][kind]["avg_error"])
        assert len(stream["experience_forgetting"]) == 3
    assert "Stream" in result.stderr and "Avg Error" in result.stderr and "base partition" in result.stderr


def test_user_errors_are_one_line(store_path, tmp_path):
    run = tmp_path / "run"
    result = _run("train", store_path, "--out", run, "--preset", "vit_tiny", "--tasks", "a,zzz", "--steps", "1")
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == (
        f"Error: {store_path}: no clips with task label(s) ['zzz']; the store has ['a', 'b']")
    result = _run("train", store_path, "--out", run, "--preset", "vit_tiny")
    assert result.exit_code == 2 and "give one of --steps and --epochs" in result.output
    result = _run("train", store_path, "--out", run, "--preset", "vit_tiny", "--steps", "1", "--chunk-size", "5")
    assert result.exit_code == 2 and "chunk_size 5 must divide the 6 tokens of a frame" in result.output
    result = _run("train", store_path, "--out", run, "--resume", "--lr", "0.1", "--memory-heads", "4")
    assert result.exit_code == 2
    assert "--resume continues with the saved configuration; drop --lr, --memory-heads" in result.output
    result = _run("eval", tmp_path)
    assert result.exit_code == 1 and "no results.json" in result.output
    result = _run("train", store_path, "--out", run, "--steps", "1", "--val-clips", "1", "--val-fraction", "0.2")
    assert result.exit_code == 2 and "give one of --val-fraction and --val-clips" in result.output
    result = _run("train", store_path, "--out", run, "--steps", "1", "--base-steps", "2")
    assert result.exit_code == 2 and "they need a base_task" in result.output
    result = _run("train", store_path, "--out", run, "--steps", "1,x")
    assert result.exit_code == 2 and "'1,x' is not a comma-separated list of int" in result.output
    result = _run("train", store_path, "--out", run, "--tasks", "a,b", "--steps", "1,2,3")
    assert result.exit_code == 2 and "one value for each of the 2 tasks, got (1, 2, 3)" in result.output
    result = _run("train", store_path, "--out", run, "--preset", "vit_tiny", "--steps", "1", "--jump-k", "4")
    assert result.exit_code == 1 and "clips of 4 steps allow a jump_k of at most 3, asked 4" in result.output


def test_every_config_field_has_an_option():
    names = {p.name for p in train_cmd.command.params}
    model = {f"model__{f}" for f in PredictorConfig.__dataclass_fields__ if f not in train_cmd.DATA_FIELDS}
    memory = {f"model__memory__{f}" for f in TitanConfig.__dataclass_fields__ if f != "dim"}
    top = {f for f in TrainConfig.__dataclass_fields__ if f not in ("loss", "optim")}
    loss = {f"loss__{f}" for f in LossConfig.__dataclass_fields__}
    optim = {f"optim__{f}" for f in OptimConfig.__dataclass_fields__}
    assert model | memory | top | loss | optim <= names
    flags = {o for p in train_cmd.command.params if isinstance(p, click.Option) for o in p.opts}
    assert {"--pattern", "--dim", "--chunk-size", "--update-rule", "--spatial-mixing",
            "--memory-heads", "--cms-hidden-mults"} <= flags


def test_a_run_from_before_the_exact_write_rule_warns_when_loaded(store_path, tmp_path):
    """A run whose config.json predates memory.memory_target loads with a warning naming it;
    a run trained now, and a ViT run, load silently."""
    import warnings

    from hopecli.runs.checkpoint import StaleRunWarning, load_model

    runs = {}
    for name, preset in (("hope", "hope_tiny"), ("vit", "vit_tiny")):
        runs[name] = tmp_path / name
        result = _run("train", store_path, "--out", runs[name], "--preset", preset, "--tasks", "a",
                      "--steps", "1", "--batch-size", "2", "--threads", "1")
        assert result.exit_code == 0, result.output
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for run in runs.values():
            load_model(run)
    old = tmp_path / "old"
    import shutil
    shutil.copytree(runs["hope"], old)
    config = json.loads((old / "config.json").read_text())
    del config["model"]["memory"]["memory_target"]
    config["model"]["memory"]["eta_max"] = 0.01  # the default of those days
    (old / "config.json").write_text(json.dumps(config))
    with pytest.warns(StaleRunWarning, match=f"{old}: trained before .* eta_max 0.01"):
        load_model(old)
    from hopecli.cli import _plain_warning  # how `hope` prints it: one line, like its other warnings

    assert _plain_warning(f"{old}: trained before", StaleRunWarning, "x.py", 1) == f"warning: {old}: trained before\n"
    assert "x.py:1: UserWarning: other" in _plain_warning("other", UserWarning, "x.py", 1)
