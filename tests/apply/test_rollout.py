"""hope rollout: carried state equals recomputing the context, errors per horizon against
the true steps, outputs and the CLI (video clips encoded as the store was: test_clips.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from hopecli.cli import hope
from hopecli.clips import clip_from_store
from hopecli.errors import InputError
from hopecli.rollout import next_states, rollout, rollout_clip, rollout_figure, write_prediction
from hopecli.runs.load import load_run
from hopecli.train.losses import normalize_features
from hopecli.train.losses import rollout as recomputed_rollout

PRESETS = ("hope_tiny", "vit_tiny", "hybrid_tiny")


def _recompute(model, z, a, s, context, steps):
    """Reference: every step re-runs the predictor on the true context and the predictions so far."""
    frames = list(z[:, :context].unbind(1))
    preds = []
    for n in range(steps):
        out = model(torch.stack(frames, 1), a[:, : context + n], s[:, : context + n])
        preds.append(out.pred[:, -1])
        frames.append(normalize_features(preds[-1]))
    return torch.stack(preds, 1)


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("context", [1, 2])
def test_carried_state_equals_recomputing_the_context(runs, store_path, preset, context):
    run = load_run(runs[preset])
    z, a, s = (x[None] for x in clip_from_store(store_path, 0, run).tensors(run.device))
    steps = z.shape[1] - context
    pred, _ = rollout(run.model, z, a[:, :-1], s[:, :-1], context)
    with torch.no_grad():
        reference = _recompute(run.model, z, a, s, context, steps)
    assert pred.shape == reference.shape == (1, steps, *z.shape[2:])
    torch.testing.assert_close(pred, reference, rtol=1e-4, atol=1e-5)


def test_context_one_matches_the_training_rollout(runs, store_path):
    run = load_run(runs["hope_tiny"])
    z, a, s = (x[None] for x in clip_from_store(store_path, 1, run).tensors(run.device))
    pred, _ = rollout(run.model, z, a[:, :-1], s[:, :-1], 1)
    with torch.no_grad():
        reference = recomputed_rollout(run.model, z, a, s, z.shape[1] - 1)
    torch.testing.assert_close(pred, reference, rtol=1e-4, atol=1e-5)


def test_error_per_horizon_is_l1_against_the_true_steps(runs, store_path):
    run = load_run(runs["hybrid_tiny"])
    clip = clip_from_store(store_path, 2, run)
    result = rollout_clip(run.model, clip, 2)
    T = clip.features.shape[0]
    truth = normalize_features(torch.from_numpy(clip.features)).numpy()
    assert result.pred.shape[0] == T - 2
    expected = [float(np.abs(result.pred[h] - truth[2 + h]).mean()) for h in range(T - 2)]
    np.testing.assert_allclose(result.errors, expected, rtol=1e-5)
    np.testing.assert_array_equal(result.actions, clip.actions[1 : T - 1])
    # the baselines from the same two context steps: step 1, and the mean of steps 0 and 1
    copy = [float(np.abs(truth[1] - truth[2 + h]).mean()) for h in range(T - 2)]
    mean = [float(np.abs(truth[:2].mean(0) - truth[2 + h]).mean()) for h in range(T - 2)]
    np.testing.assert_allclose(result.baselines["copy_last"], copy, rtol=1e-5)
    np.testing.assert_allclose(result.baselines["context_mean"], mean, rtol=1e-5)
    summary = result.to_dict()
    assert summary["mean_l1_vs_copy"] == pytest.approx(np.mean(expected) / np.mean(copy) - 1, rel=1e-5)


def test_given_actions_step_the_robot_state_and_have_no_ground_truth(runs, store_path):
    run = load_run(runs["vit_tiny"])
    clip = clip_from_store(store_path, 0, run)
    given = np.full((5, 2), 0.01, np.float32)  # runs past the clip's 4 steps
    result = rollout_clip(run.model, clip, 2, actions=given, frames_per_step=run.frames_per_step)
    assert result.errors is None and not result.own_actions
    assert result.pred.shape[0] == 5
    s = torch.tensor([[0.5, 0.25]])
    torch.testing.assert_close(next_states(s, torch.tensor([[0.01, -0.02]]), 2), torch.tensor([[0.52, 0.21]]))
    assert torch.equal(next_states(s, torch.zeros(1, 3), 2), s)  # other dims: the state is held


def test_rollout_longer_than_max_frames_is_refused(runs, store_path):
    run = load_run(runs["hope_tiny"])
    clip = clip_from_store(store_path, 0, run)
    with pytest.raises(InputError, match="exceeds the run's max_frames 32"):
        rollout_clip(run.model, clip, 1, actions=np.zeros((40, 2), np.float32))


def test_outputs_png_npy_and_zarr(runs, store_path, tmp_path):
    import zarr

    run = load_run(runs["hope_tiny"])
    clip = clip_from_store(store_path, 1, run)
    result = rollout_clip(run.model, clip, 1)
    png = rollout_figure(clip, result, tuple(run.model.config.grid), tmp_path / "r.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    np.testing.assert_array_equal(np.load(write_prediction(result, tmp_path / "p.npy")), result.pred)
    group = zarr.open_group(str(write_prediction(result, tmp_path / "p.zarr")), mode="r")
    np.testing.assert_array_equal(group["pred"][:], result.pred)
    np.testing.assert_allclose(group["l1_per_horizon"][:], result.errors, rtol=1e-6)
    assert group.attrs["context"] == 1


def test_cli_rollout_from_store(runs, store_path, tmp_path):
    out, png = tmp_path / "pred.npy", tmp_path / "r.png"
    result = CliRunner().invoke(hope, ["rollout", "--run", str(runs["hybrid_tiny"]), "--store", str(store_path),
                                       "--index", "3", "--context", "2", "--out", str(out), "--png", str(png),
                                       "--device", "cpu", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["rollout"]["predicted_steps"] == [2, 3]
    assert len(report["rollout"]["l1_per_horizon"]) == 2
    assert np.load(out).shape == (2, 64, 192) and png.exists()
    # the verdict: against the better of copy-last and context-mean, by the paired test
    rollout = report["rollout"]
    best = min(rollout["baselines"], key=lambda k: np.mean(rollout["baselines"][k]))
    versus = rollout["vs_best_baseline"]
    assert versus["reference"] == best.replace("_", "-") and versus["items"] == 2
    assert versus["outcome"] == "no clear difference"  # 2 horizons: p >= 1/2 whatever the errors
    assert (f"mean L1 {100 * versus['relative']:+.3g}% vs {versus['reference']}: no clear difference (paired "
            f"sign-flip test over 2 horizons, p = {versus['p_value']:.2g})") in " ".join(result.stderr.split())


def test_cli_plan_toward_a_goal_video(runs, clips_dir):
    result = CliRunner().invoke(hope, ["rollout", "--run", str(runs["hope_tiny"]), "--clip",
                                       str(clips_dir / "clip1.mp4"), "--context", "2", "--plan", "--goal",
                                       str(clips_dir / "clip0.mp4"), "--mpc-steps", "2", "--samples", "6",
                                       "--top-k", "2", "--iterations", "2", "--max-action", "0.05", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    executed = np.array(report["plan"]["executed_actions"])
    assert executed.shape == (2, 2) and np.all(np.abs(executed) <= 0.05)
    assert len(report["plan"]["steps"]) == 2 and report["plan"]["mean_seconds_per_step"] > 0
    assert report["rollout"]["actions"] == report["plan"]["executed_actions"]
    assert "mean time per planning step" in result.stderr


def test_cli_clip_without_sidecar_is_one_error_line(runs, clips_dir, tmp_path):
    video = tmp_path / "lonely.mp4"
    video.write_bytes((clips_dir / "clip0.mp4").read_bytes())
    result = CliRunner().invoke(hope, ["rollout", "--run", str(runs["vit_tiny"]), "--clip", str(video)])
    assert result.exit_code == 1
    assert result.output == (f"Error: {tmp_path / 'lonely.npz'}: sidecar missing (each clip needs a .npz "
                             "with actions and states)\n")


@pytest.mark.parametrize("args, message", [
    ([], "give --clip VIDEO or --store STORE --index I"),
    (["--store", "s.zarr"], "--store needs --index"),
    (["--clip", "c.mp4", "--plan"], "--plan needs --goal GOAL.mp4"),
    (["--clip", "c.mp4", "--out", "p.txt"], "must end in .npy or .zarr"),
], ids=["no-clip", "store-without-index", "plan-without-goal", "bad-out"])
def test_cli_usage_errors(runs, args, message):
    result = CliRunner().invoke(hope, ["rollout", "--run", str(runs["vit_tiny"]), *args])
    assert result.exit_code == 2
    assert message in result.output


def test_cli_actions_file(runs, store_path, tmp_path):
    good, bad = tmp_path / "a.npy", tmp_path / "b.npy"
    np.save(good, np.full((3, 2), 0.02, np.float32))
    np.save(bad, np.zeros((3, 5), np.float32))
    base = ["rollout", "--run", str(runs["vit_tiny"]), "--store", str(store_path), "--index", "0", "--context", "3"]
    result = CliRunner().invoke(hope, [*base, "--actions", str(good), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)["rollout"]
    assert report["predicted_steps"] == [3, 4, 5] and report["l1_per_horizon"] is None
    result = CliRunner().invoke(hope, [*base, "--actions", str(bad)])
    assert result.exit_code == 1
    assert result.output == f"Error: {bad}: actions must be numbers of shape [steps, 2], got [3, 5] of float32\n"
