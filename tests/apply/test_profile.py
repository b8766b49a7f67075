"""hope profile: every component of every block kind is measured and the JSON says so."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from hopecli.cli import hope
from hopecli.model import build_predictor
from hopecli.profile import ProfileConfig, profile_model

SHAPES = {"input_dim": 16, "patches_per_step": 4, "action_dim": 2, "state_dim": 2}
FAST = ProfileConfig(batch_size=1, frames=2, warmup=0, repeats=1, device="cpu", plan_samples=4, plan_iterations=1)


def _expected(pattern: str, mixing: bool = True) -> list[str]:
    names = ["embedding"]
    for i, letter in enumerate(pattern):
        if letter == "T":
            names += [f"block{i}/attention", f"block{i}/mlp"]
        else:
            names += [f"block{i}/titan_read", f"block{i}/titan_update", f"block{i}/cms"]
            names += [f"block{i}/spatial_mixing"] if mixing else []
    return names + ["decoder"]


@pytest.mark.parametrize("preset", ["hope_tiny", "vit_tiny", "hybrid_tiny"])
def test_every_component_is_measured(preset):
    model = build_predictor(preset, **SHAPES)
    profile = profile_model(preset, model, FAST)
    assert list(profile.components_ms) == _expected(model.config.pattern)
    assert all(ms >= 0 for ms in profile.components_ms.values())
    # the memory's readout function was seen inside every memory block
    assert all(ms > 0 for name, ms in profile.components_ms.items() if name.endswith("titan_read"))
    assert profile.forward_ms > 0 and profile.train_step_ms > 0 and profile.rollout_step_ms > 0
    assert profile.tokens == 1 * 2 * (4 + 2)
    assert all(p.grad is None for p in model.parameters())  # the training step leaves no gradients


def test_linear_memory_blocks_without_mixing():
    model = build_predictor("hope_tiny", pattern="LH", spatial_mixing=False, **SHAPES)
    profile = profile_model("lh", model, FAST)
    assert list(profile.components_ms) == _expected("LH", mixing=False)


def test_frames_past_max_frames_are_refused():
    with pytest.raises(ValueError, match="frames 40 exceed the model's max_frames 32"):
        profile_model("vit", build_predictor("vit_tiny", **SHAPES), ProfileConfig(frames=40, device="cpu"))


def test_cli_profile_json_side_by_side():
    result = CliRunner().invoke(hope, ["profile", "--preset", "hope_tiny", "--preset", "vit_tiny", "--input-dim",
                                       "16", "--patches", "4", "--batch-size", "1", "--frames", "2",
                                       "--repeats", "1", "--warmup", "0", "--device", "cpu",
                                       "--plan-samples", "4", "--plan-iterations", "1", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    for m in report["models"]:  # a planning step, its FLOPs and the time they take at peak
        assert m["plan_step_s"] > 0 and m["plan_gflop"] > 0 and 0 < m["plan_bound_s"]
    assert "planning step / its FLOPs at matmul peak" in result.stderr
    assert report["device"] == "cpu" and report["dtype"] == "float32"
    by_name = {m["name"]: m for m in report["models"]}
    assert list(by_name["hope_tiny"]["components_ms"]) == _expected("HH")
    assert list(by_name["vit_tiny"]["components_ms"]) == _expected("TT")
    assert set(by_name["hope_tiny"]["components_by_kind_ms"]) == {
        "embedding", "titan_read", "titan_update", "cms", "spatial_mixing", "decoder"}
    for m in report["models"]:
        assert set(m["tokens_per_s"]) == {"forward", "train_step", "rollout_step"}
        assert m["peak_memory_mib"] == {"forward": None, "train_step": None}  # CPU
    assert "Titan update" in result.stderr and "attention" in result.stderr


def test_cli_profile_a_run(runs):
    result = CliRunner().invoke(hope, ["profile", "--run", str(runs["hybrid_tiny"]), "--batch-size", "1",
                                       "--frames", "2", "--repeats", "1", "--warmup", "0", "--device", "cpu",
                                       "--json"])
    assert result.exit_code == 0, result.output
    (model,) = json.loads(result.stdout)["models"]
    assert model["pattern"] == "THT" and model["tokens"] == 2 * 66


@pytest.mark.parametrize("args, message", [
    ([], "give at least one --preset or --run"),
    (["--preset", "nope"], "unknown preset 'nope'"),
], ids=["nothing", "unknown-preset"])
def test_cli_profile_usage_errors(args, message):
    result = CliRunner().invoke(hope, ["profile", *args])
    assert result.exit_code == 2
    assert message in result.output


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_profile_uses_events_and_reports_peak_memory():
    profile = profile_model("hope_tiny", build_predictor("hope_tiny", **SHAPES),
                            ProfileConfig(batch_size=2, frames=4, repeats=2, warmup=1, device="cuda"))
    assert list(profile.components_ms) == _expected("HH")
    assert profile.peak_memory_mib["forward"] > 0
    assert profile.peak_memory_mib["train_step"] >= profile.peak_memory_mib["forward"]


def test_planning_flops_count_the_attention_over_the_context():
    """A candidate step of vit_tiny attends to every context step's keys, so its planning
    FLOPs grow with the context (CPU attention counted), while hope_tiny's memories hold a
    fixed-size state: the same FLOPs whatever the context's length."""
    def plan_gflop(preset: str, frames: int) -> float:
        torch.manual_seed(0)
        model = build_predictor(preset, **SHAPES)
        cfg = ProfileConfig(batch_size=1, frames=frames, warmup=0, repeats=1, device="cpu", plan_samples=4,
                            plan_iterations=1)
        return profile_model(preset, model, cfg).plan_gflop

    short, long = plan_gflop("vit_tiny", 2), plan_gflop("vit_tiny", 6)
    assert long > short * 1.05
    assert plan_gflop("hope_tiny", 6) == pytest.approx(plan_gflop("hope_tiny", 2), rel=1e-9)
