"""hope adapt: memories adapt in context (H) and nothing changes without memory (T), CMS
levels learn online at their own periods, and a saved state continues a carried run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from hopecli.adapt import (
    AdaptConfig,
    adapt,
    adapt_figure,
    cms_periods,
    initial_state,
    load_state,
    save_state,
    stream,
    with_state,
)
from hopecli.cli import hope
from hopecli.errors import CheckpointError
from hopecli.rollout import clip_from_store, load_run, rollout_clip


def _clips(run, store_path, indices):
    return [clip_from_store(store_path, i, run) for i in indices]


def test_adapting_differs_from_frozen_for_a_memory_model(runs, store_path):
    run = load_run(runs["hope_tiny"])
    report, state = adapt(run.model, [_clips(run, store_path, [0, 1])], ["clip0"])
    adapting = np.array([s.adapting for s in report.steps])
    frozen = np.array([s.frozen for s in report.steps])
    assert len(report.steps) == 2 * 3  # two windows of 4 steps, 3 predictions each
    assert report.steps[0].adapting == report.steps[0].frozen  # first step reads the initial memory
    assert np.abs(adapting - frozen)[1:].min() > 0
    start = initial_state(run.model)
    assert not torch.equal(state.memories[0].layers[0], start.memories[0].layers[0])


def test_adapting_equals_frozen_without_memory(runs, store_path):
    run = load_run(runs["vit_tiny"])
    report, _ = adapt(run.model, [_clips(run, store_path, [0, 1])], ["clip0"], AdaptConfig(cms_online=True))
    assert [s.adapting for s in report.steps] == [s.frozen for s in report.steps]
    assert report.verdict().startswith("Nothing to adapt")


def test_cms_levels_step_at_their_periods_in_frames(runs, store_path):
    run = load_run(runs["hope_tiny"])  # CMS periods 1 and 4
    periods = cms_periods(run.model)
    assert sorted(set(periods.values())) == [1, 4]
    start = initial_state(run.model)
    clip = clip_from_store(store_path, 0, run)  # 3 predictions: 3 frames learned from
    _, after3 = stream(run.model, clip, start, update_memory=True, learn_cms=True, cms_lr=1e-3)
    assert after3.frames == 3
    for name, period in periods.items():
        changed = not torch.equal(after3.cms[name], start.cms[name])
        assert changed == (period == 1), name
        pending = bool(after3.cms_grads[name].abs().sum() > 0)
        assert pending == (period == 4), name
    _, after6 = stream(run.model, clip_from_store(store_path, 1, run), after3, update_memory=True,
                       learn_cms=True, cms_lr=1e-3)
    for name, period in periods.items():  # the slow level stepped at frame 4
        assert not torch.equal(after6.cms[name], after3.cms[name]), name


def test_cms_online_changes_the_adapting_errors(runs, store_path):
    run = load_run(runs["hope_tiny"])
    clips = [_clips(run, store_path, [0, 1])]
    plain, _ = adapt(run.model, clips, ["c"])
    online, _ = adapt(run.model, clips, ["c"], AdaptConfig(cms_online=True, cms_lr=1e-3))
    assert online.steps[0].adapting == plain.steps[0].adapting  # nothing learned before the first error
    assert online.steps[-1].adapting != plain.steps[-1].adapting
    assert [s.frozen for s in online.steps] == [s.frozen for s in plain.steps]


def test_saved_state_continues_a_carried_run(runs, store_path, tmp_path):
    run = load_run(runs["hybrid_tiny"])
    first, second = _clips(run, store_path, [0, 1]), _clips(run, store_path, [2, 3])
    cfg = AdaptConfig(cms_online=True, cms_lr=1e-3)
    carried, _ = adapt(run.model, [first, second], ["a", "b"], cfg, carry=True)
    _, after_first = adapt(run.model, [first], ["a"], cfg)
    path = save_state(after_first, run.model, tmp_path / "state.safetensors")
    resumed, _ = adapt(run.model, [second], ["b"], cfg, start=load_state(path, run.model))
    assert [s.adapting for s in resumed.steps] == [s.adapting for s in carried.steps[6:]]
    fresh, _ = adapt(run.model, [second], ["b"], cfg)
    assert [s.adapting for s in fresh.steps] != [s.adapting for s in resumed.steps]


def test_rollout_starts_from_an_adapted_state(runs, store_path, tmp_path):
    run = load_run(runs["hope_tiny"])
    _, state = adapt(run.model, [_clips(run, store_path, [0])], ["a"], AdaptConfig(cms_online=True, cms_lr=1e-3))
    model, start = with_state(run.model, load_state(save_state(state, run.model, tmp_path / "s.st"), run.model))
    clip = clip_from_store(store_path, 1, run)
    adapted = rollout_clip(model, clip, 1, state=start)
    plain = rollout_clip(run.model, clip, 1)
    assert adapted.errors != plain.errors
    assert run.model.blocks[0].cms.levels[0].fc1.weight is not model.blocks[0].cms.levels[0].fc1.weight


def test_state_of_another_model_is_refused(runs, tmp_path):
    hope_run, hybrid_run = load_run(runs["hope_tiny"]), load_run(runs["hybrid_tiny"])
    path = save_state(initial_state(hope_run.model), hope_run.model, tmp_path / "s.safetensors")
    with pytest.raises(CheckpointError, match="another configuration"):
        load_state(path, hybrid_run.model)
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_state(tmp_path / "junk.safetensors", hope_run.model)


def test_figure_is_written(runs, store_path, tmp_path):
    run = load_run(runs["hope_tiny"])
    report, _ = adapt(run.model, [_clips(run, store_path, [0])], ["a"], baseline=load_run(runs["vit_tiny"]).model)
    png = adapt_figure(report, tmp_path / "a.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_adapt_with_baseline_save_and_init_state(runs, clips_dir, tmp_path):
    state = tmp_path / "state.safetensors"
    args = ["adapt", "--run", str(runs["hope_tiny"]), "--clip", str(clips_dir / "clip0.mp4"), "--cms-online",
            "--cms-lr", "1e-3", "--json"]
    first = CliRunner().invoke(hope, [*args, "--baseline", str(runs["vit_tiny"]), "--save", str(state),
                                      "--png", str(tmp_path / "a.png")])
    assert first.exit_code == 0, first.output
    report = json.loads(first.stdout)
    assert len(report["steps"]) == 6 and all(s["baseline"] is not None for s in report["steps"])
    assert report["helped"] == (report["mean_adapting"] < report["mean_frozen"])
    assert report["verdict"] in first.stderr and state.exists() and (tmp_path / "a.png").exists()

    carried = CliRunner().invoke(hope, [*args, "--clip", str(clips_dir / "clip1.mp4"), "--carry"])
    resumed = CliRunner().invoke(hope, ["adapt", "--run", str(runs["hope_tiny"]), "--clip",
                                        str(clips_dir / "clip1.mp4"), "--cms-online", "--cms-lr", "1e-3",
                                        "--init-state", str(state), "--json"])
    assert carried.exit_code == 0 and resumed.exit_code == 0, carried.output + resumed.output
    carried_steps = json.loads(carried.stdout)["steps"][6:]
    assert [s["adapting"] for s in json.loads(resumed.stdout)["steps"]] == [s["adapting"] for s in carried_steps]


def test_cli_adapt_errors(runs, clips_dir, tmp_path):
    video = tmp_path / "new_friction.mp4"
    video.write_bytes((clips_dir / "clip0.mp4").read_bytes())
    missing = CliRunner().invoke(hope, ["adapt", "--run", str(runs["hope_tiny"]), "--clip", str(video)])
    assert missing.exit_code == 1
    assert missing.output == (f"Error: {tmp_path / 'new_friction.npz'}: sidecar missing (each clip needs a "
                              ".npz with actions and states)\n")
    one = CliRunner().invoke(hope, ["adapt", "--run", str(runs["hope_tiny"]), "--clip", str(video), "--carry"])
    assert one.exit_code == 2 and "give at least two" in one.output
    no_run = CliRunner().invoke(hope, ["adapt", "--run", str(tmp_path / "nope"), "--clip", str(video)])
    assert no_run.exit_code == 1 and no_run.output == f"Error: {tmp_path / 'nope'}: no such run folder\n"
