"""hope adapt: memories adapt in context (H) and nothing changes without memory (T); TENT
(LayerNorm) adaptation learns only LayerNorms, by Adam, after each step is scored; CMS
levels learn online at their own periods; clips start afresh unless carried, and a saved
state continues a carried run."""

from __future__ import annotations

import copy
import dataclasses
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch.func import functional_call

from hopecli.adapt import (
    AdaptConfig,
    adapt,
    adapt_figure,
    cms_periods,
    initial_state,
    layernorm_names,
    load_state,
    save_state,
    stream,
    with_state,
)
from hopecli.cli import hope
from hopecli.clips import clip_from_store
from hopecli.errors import CheckpointError
from hopecli.model import PredictorState
from hopecli.model.memory import TitanState
from hopecli.rollout import rollout_clip
from hopecli.runs.load import load_run
from hopecli.train.losses import l1_per_clip, normalize_features


def _clips(run, store_path, indices):
    return [clip_from_store(store_path, i, run) for i in indices]


def _column(report, name):
    return np.array([s.errors[name] for s in report.steps])


def test_memory_differs_from_frozen_for_a_memory_model(runs, store_path):
    run = load_run(runs["hope_tiny"])
    report, states = adapt(run.model, [_clips(run, store_path, [0, 1])], ["clip0"])
    memory, frozen = _column(report, "memory"), _column(report, "frozen")
    assert len(report.steps) == 2 * 3  # two windows of 4 steps, 3 predictions each
    # every step differs, the first too: its frame's tokens read what earlier tokens wrote
    assert np.abs(memory - frozen).min() > 0
    start = initial_state(run.model)
    assert not torch.equal(states["memory"].memories[0].layers[0], start.memories[0].layers[0])


def test_without_memory_only_layernorm_adapts(runs, store_path):
    run = load_run(runs["vit_tiny"])
    cfg = AdaptConfig(methods=("memory", "layernorm"), cms_online=True, tta_lr=1e-2)
    report, _ = adapt(run.model, [_clips(run, store_path, [0, 1])], ["clip0"], cfg)
    frozen, layernorm = _column(report, "frozen"), _column(report, "layernorm")
    assert list(_column(report, "memory")) == list(frozen)
    assert layernorm[0] == frozen[0]  # nothing learned before the first step is scored
    assert np.abs(layernorm - frozen)[1:].min() > 0
    assert "memory " in report.verdict() and "nothing to adapt" in report.verdict()


def test_layernorm_changes_only_layernorm_parameters(runs, store_path):
    run = load_run(runs["hybrid_tiny"])  # T and H blocks: attention, memory, CMS, mixing LayerNorms
    before = {n: p.detach().clone() for n, p in run.model.named_parameters()}
    cfg = AdaptConfig(methods=("layernorm",), tta_lr=1e-2)
    _, states = adapt(run.model, [_clips(run, store_path, [0, 1])], ["clip0"], cfg)
    model, _ = with_state(run.model, states["layernorm"])
    norms = {f"{module_name}.{name}" for module_name, m in run.model.named_modules()
             if isinstance(m, torch.nn.LayerNorm) for name, _ in m.named_parameters()}
    assert set(layernorm_names(run.model)) == norms
    assert {"predictor_norm.weight", "predictor_norm.bias", "blocks.1.cms.levels.0.norm.weight"} <= norms
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert "predictor_norm.weight" in changed and "blocks.0.norm1.bias" in changed
    assert changed <= norms  # every other parameter bit-identical
    start = initial_state(run.model)
    for adapted, initial in zip(states["layernorm"].memories, start.memories):  # memory updates frozen
        assert adapted is None or all(torch.equal(a, b) for a, b in zip(adapted.layers, initial.layers))
    assert all(torch.equal(p, before[n]) for n, p in run.model.named_parameters())  # the run's model untouched


def test_tent_matches_a_torch_adam_reference(runs, store_path):
    """`both` without CMS online = memory updates on + torch.optim.Adam on the LayerNorms,
    the gradients summed over tta_every frames, each step's error scored before it learns."""
    run = load_run(runs["hybrid_tiny"])
    windows = _clips(run, store_path, [0, 1])
    cfg = AdaptConfig(methods=("both",), tta_lr=1e-2, tta_every=2)
    report, states = adapt(run.model, [windows], ["clip0"], cfg)

    reference = copy.deepcopy(run.model)
    norms = set(layernorm_names(reference))
    optimizer = torch.optim.Adam([p for n, p in reference.named_parameters() if n in norms], lr=1e-2)
    optimizer.zero_grad()
    memories, errors, frames = initial_state(reference).memories, [], 0
    for clip in windows:
        z, a, s = clip.tensors(torch.device("cpu"))
        state = PredictorState(memories, 0)
        for t in range(z.shape[0] - 1):
            out = reference(z[None, t, None], a[None, t, None], s[None, t, None], state=state)
            error = l1_per_clip(out.pred[:, -1], z[None, t + 1])[0]
            errors.append(error.item())
            error.backward()
            frames += 1
            if frames % 2 == 0:
                optimizer.step()
                optimizer.zero_grad()
            state = out.state.detach()
        memories = tuple(m if isinstance(m, TitanState) else None for m in state.blocks)  # KV caches per window
    np.testing.assert_allclose(_column(report, "both"), errors, rtol=1e-5, atol=1e-7)
    params = dict(reference.named_parameters())
    for name in norms:
        torch.testing.assert_close(states["both"].weights[name], params[name].detach(), rtol=1e-5, atol=1e-7)


def test_every_step_is_scored_before_it_is_learned_from(runs, store_path):
    """The error of the last step must come from the weights learned from the steps
    before it; scoring it after learning from its own target would lower it."""
    run = load_run(runs["hope_tiny"])  # no attention: memories and frame count are the whole stream state
    clip = clip_from_store(store_path, 0, run)
    cfg = AdaptConfig(methods=("both",), tta_lr=1e-1)
    start = initial_state(run.model)
    errors, after = stream(run.model, clip, start, "both", cfg)
    head = dataclasses.replace(clip, features=clip.features[:3], actions=clip.actions[:3], states=clip.states[:3])
    head_errors, before_last = stream(run.model, head, start, "both", cfg)
    assert head_errors == errors[:2]

    z, a, s = clip.tensors(torch.device("cpu"))

    def last_error(weights):
        with torch.no_grad():
            out = functional_call(run.model, weights, (z[None, 2, None], a[None, 2, None], s[None, 2, None]),
                                  {"state": PredictorState(before_last.memories, 2)})
        return l1_per_clip(out.pred[:, -1], z[None, 3])[0].item()

    assert errors[2] == pytest.approx(last_error(before_last.weights), rel=1e-6)
    assert last_error(after.weights) < errors[2] * (1 - 1e-3)  # what peeking would have reported


def test_each_clip_starts_afresh_unless_carried(runs, store_path):
    run, vit = load_run(runs["hope_tiny"]), load_run(runs["vit_tiny"]).model
    first, second = _clips(run, store_path, [0, 1]), _clips(run, store_path, [2, 3])
    cfg = AdaptConfig(methods=("layernorm", "both"), tta_lr=1e-2)
    fresh, fresh_states = adapt(run.model, [first, second], ["a", "b"], cfg, baseline=vit)
    alone, alone_states = adapt(run.model, [second], ["b"], cfg, baseline=vit)
    carried, _ = adapt(run.model, [first, second], ["a", "b"], cfg, carry=True, baseline=vit)
    for column in ("layernorm", "both", "baseline"):
        assert list(_column(fresh, column)[6:]) == list(_column(alone, column)), column
        assert list(_column(carried, column)[6:]) != list(_column(alone, column)), column
    for method in cfg.methods:
        for name, w in alone_states[method].weights.items():
            assert torch.equal(fresh_states[method].weights[name], w), (method, name)


def test_both_differs_from_each_alone_for_a_memory_model(runs, store_path):
    run = load_run(runs["hope_tiny"])
    cfg = AdaptConfig(methods=("memory", "layernorm", "both"), tta_lr=1e-2)
    report, _ = adapt(run.model, [_clips(run, store_path, [0, 1])], ["clip0"], cfg)
    assert report.columns == ["frozen", "memory", "layernorm", "both", "copy_last", "context_mean"]
    models = report.columns[:4]
    columns = {c: _column(report, c) for c in models}
    # at the first step no gradient step has been taken: layernorm reads the trained model
    # as frozen does, and both read what the memory wrote inside the first frame
    assert columns["layernorm"][0] == columns["frozen"][0]
    assert columns["both"][0] == columns["memory"][0] != columns["frozen"][0]
    for i, one in enumerate(models):
        for other in models[i + 1:]:
            assert np.abs(columns[one] - columns[other])[1:].min() > 0, (one, other)


def test_cms_levels_step_at_their_periods_in_frames(runs, store_path):
    run = load_run(runs["hope_tiny"])  # CMS periods 1 and 4
    periods = cms_periods(run.model)
    assert sorted(set(periods.values())) == [1, 4]
    cfg = AdaptConfig(cms_online=True, cms_lr=1e-3)
    start = initial_state(run.model)
    clip = clip_from_store(store_path, 0, run)  # 3 predictions: 3 frames learned from
    _, after3 = stream(run.model, clip, start, "memory", cfg)
    assert after3.frames == 3
    for name, period in periods.items():
        changed = not torch.equal(after3.weights[name], start.weights[name])
        assert changed == (period == 1), name
        pending = bool(after3.grads[name].abs().sum() > 0)
        assert pending == (period == 4), name
    _, after6 = stream(run.model, clip_from_store(store_path, 1, run), after3, "memory", cfg)
    for name, period in periods.items():  # the slow level stepped at frame 4
        assert not torch.equal(after6.weights[name], after3.weights[name]), name


def test_cms_online_changes_the_memory_errors(runs, store_path):
    run = load_run(runs["hope_tiny"])
    clips = [_clips(run, store_path, [0, 1])]
    plain, _ = adapt(run.model, clips, ["c"])
    online, _ = adapt(run.model, clips, ["c"], AdaptConfig(cms_online=True, cms_lr=1e-3))
    assert online.steps[0].errors["memory"] == plain.steps[0].errors["memory"]  # nothing learned yet
    assert online.steps[-1].errors["memory"] != plain.steps[-1].errors["memory"]
    assert list(_column(online, "frozen")) == list(_column(plain, "frozen"))


def test_saved_state_continues_a_carried_run(runs, store_path, tmp_path):
    run = load_run(runs["hybrid_tiny"])
    first, second = _clips(run, store_path, [0, 1]), _clips(run, store_path, [2, 3])
    cfg = AdaptConfig(methods=("both",), cms_online=True, cms_lr=1e-3, tta_lr=1e-2, tta_every=2)
    carried, _ = adapt(run.model, [first, second], ["a", "b"], cfg, carry=True)
    _, after_first = adapt(run.model, [first], ["a"], cfg)
    path = save_state(after_first["both"], run.model, tmp_path / "state.safetensors")
    resumed, _ = adapt(run.model, [second], ["b"], cfg, start=load_state(path, run.model))
    assert list(_column(resumed, "both")) == list(_column(carried, "both")[6:])
    fresh, _ = adapt(run.model, [second], ["b"], cfg)
    assert list(_column(fresh, "both")) != list(_column(resumed, "both"))


def test_rollout_starts_from_an_adapted_state(runs, store_path, tmp_path):
    run = load_run(runs["hope_tiny"])
    cfg = AdaptConfig(methods=("both",), cms_online=True, cms_lr=1e-3, tta_lr=1e-2)
    _, states = adapt(run.model, [_clips(run, store_path, [0])], ["a"], cfg)
    saved = save_state(states["both"], run.model, tmp_path / "s.st")
    model, start = with_state(run.model, load_state(saved, run.model))
    clip = clip_from_store(store_path, 1, run)
    adapted = rollout_clip(model, clip, 1, state=start)
    plain = rollout_clip(run.model, clip, 1)
    assert adapted.errors != plain.errors
    assert run.model.blocks[0].cms.levels[0].fc1.weight is not model.blocks[0].cms.levels[0].fc1.weight
    assert torch.equal(model.predictor_norm.weight, states["both"].weights["predictor_norm.weight"])


def test_state_of_another_model_is_refused(runs, tmp_path):
    hope_run, hybrid_run = load_run(runs["hope_tiny"]), load_run(runs["hybrid_tiny"])
    path = save_state(initial_state(hope_run.model), hope_run.model, tmp_path / "s.safetensors")
    with pytest.raises(CheckpointError, match="another configuration"):
        load_state(path, hybrid_run.model)
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_state(tmp_path / "junk.safetensors", hope_run.model)


@pytest.mark.parametrize("kwargs, message", [
    (dict(methods=("tent",)), "unknown adaptation method 'tent'"),
    (dict(methods=()), "at least one"),
    (dict(methods=("both", "both")), "must not repeat"),
    (dict(methods=("layernorm",), cms_online=True), "cms_online needs the memory or both method"),
    (dict(tta_lr=0.0), "tta_lr must be positive, got 0.0"),
    (dict(tta_every=0), "tta_every must be an integer >= 1, got 0"),
], ids=["unknown", "none", "repeated", "cms-without-memory", "lr", "every"])
def test_bad_config_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AdaptConfig(**kwargs)


def test_figure_draws_one_line_per_column(runs, store_path, tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    figures, savefig = [], Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda fig, *a, **k: (figures.append(fig), savefig(fig, *a, **k)))
    run, vit = load_run(runs["hope_tiny"]), load_run(runs["vit_tiny"]).model
    cfg = AdaptConfig(methods=("memory", "layernorm", "both"))
    report, _ = adapt(run.model, [_clips(run, store_path, [0])], ["a"], cfg, baseline=vit)
    png = adapt_figure(report, tmp_path / "a.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = [line for line in figures[0].axes[0].get_lines() if not line.get_label().startswith("_")]
    assert [line.get_label().split(" (")[0] for line in lines] == [
        "frozen", "memory", "layernorm", "both", "ViT baseline frozen", "ViT baseline + layernorm",
        "copy-last", "context-mean"]
    assert list(lines[2].get_ydata()) == list(_column(report, "layernorm"))
    top, bottom = figures[0].axes
    assert top.get_ylabel() == "next-step L1 error" and "a" in top.get_title()
    assert bottom.get_ylabel() == "change vs frozen (%)"
    changes = {line.get_label().split(" (")[0]: line.get_ydata() for line in bottom.get_lines()}
    np.testing.assert_allclose(changes["layernorm"],
                               100 * (_column(report, "layernorm") / _column(report, "frozen") - 1))


def test_copy_and_context_mean_are_scored_on_the_same_steps(runs, store_path):
    run = load_run(runs["vit_tiny"])
    windows = _clips(run, store_path, [0, 1])
    report, _ = adapt(run.model, [windows], ["c"])
    for k, clip in enumerate(windows):
        z = normalize_features(torch.from_numpy(clip.features)).numpy()  # [T, P, D]
        T = z.shape[0]
        steps = report.steps[k * (T - 1):(k + 1) * (T - 1)]
        copy = [float(np.abs(z[t] - z[t + 1]).mean()) for t in range(T - 1)]
        mean = [float(np.abs(z[: t + 1].mean(0) - z[t + 1]).mean()) for t in range(T - 1)]
        np.testing.assert_allclose([s.errors["copy_last"] for s in steps], copy, rtol=1e-5)
        np.testing.assert_allclose([s.errors["context_mean"] for s in steps], mean, rtol=1e-5)
    assert report.to_dict()["change_vs_copy"]["frozen"] == pytest.approx(
        report.mean("frozen") / report.mean("copy_last") - 1)


def test_cli_adapt_both_with_baseline_save_and_init_state(runs, clips_dir, tmp_path):
    state = tmp_path / "state.safetensors"
    args = ["adapt", "--run", str(runs["hope_tiny"]), "--clip", str(clips_dir / "clip0.mp4"), "--method", "both",
            "--cms-online", "--cms-lr", "1e-3", "--tta-lr", "1e-2", "--json"]
    first = CliRunner().invoke(hope, [*args, "--baseline", str(runs["vit_tiny"]), "--save", str(state),
                                      "--png", str(tmp_path / "a.png")])
    assert first.exit_code == 0, first.output
    report = json.loads(first.stdout)
    cols = ["frozen", "both", "baseline_frozen", "baseline", "copy_last", "context_mean"]
    assert report["columns"] == cols and report["methods"] == ["both"]
    assert report["baseline_layernorm"] is True and report["tta_lr"] == 1e-2 and report["tta_every"] == 1
    assert len(report["steps"]) == 6
    assert all(set(s) == {"clip", "step", *cols} for s in report["steps"])
    assert set(report["mean"]) == set(cols)
    assert report["helped"] == {"both": report["outcome"]["both"] == "helped"}
    assert set(report["p_value"]) == {"both", "baseline"}
    assert report["verdict"] in first.stderr and state.exists() and (tmp_path / "a.png").exists()

    carried = CliRunner().invoke(hope, [*args, "--clip", str(clips_dir / "clip1.mp4"), "--carry"])
    resumed = CliRunner().invoke(hope, ["adapt", "--run", str(runs["hope_tiny"]), "--clip",
                                        str(clips_dir / "clip1.mp4"), "--method", "both", "--cms-online",
                                        "--cms-lr", "1e-3", "--tta-lr", "1e-2", "--init-state", str(state),
                                        "--json"])
    assert carried.exit_code == 0 and resumed.exit_code == 0, carried.output + resumed.output
    carried_steps = json.loads(carried.stdout)["steps"][6:]
    assert [s["both"] for s in json.loads(resumed.stdout)["steps"]] == [s["both"] for s in carried_steps]


def test_cli_adapt_errors(runs, clips_dir, tmp_path):
    video = tmp_path / "new_friction.mp4"
    video.write_bytes((clips_dir / "clip0.mp4").read_bytes())
    run = ["adapt", "--run", str(runs["hope_tiny"]), "--clip", str(video)]
    missing = CliRunner().invoke(hope, run)
    assert missing.exit_code == 1
    assert missing.output == (f"Error: {tmp_path / 'new_friction.npz'}: sidecar missing (each clip needs a "
                              ".npz with actions and states)\n")
    one = CliRunner().invoke(hope, [*run, "--carry"])
    assert one.exit_code == 2 and "give at least two" in one.output
    no_run = CliRunner().invoke(hope, ["adapt", "--run", str(tmp_path / "nope"), "--clip", str(video)])
    assert no_run.exit_code == 1 and no_run.output == f"Error: {tmp_path / 'nope'}: no such run folder\n"
    two = CliRunner().invoke(hope, [*run, "--method", "memory", "--method", "both", "--save", str(tmp_path / "s")])
    assert two.exit_code == 2 and "--save writes the state of one method; give a single --method" in two.output
    cms = CliRunner().invoke(hope, [*run, "--method", "layernorm", "--cms-online"])
    assert cms.exit_code == 2 and "cms_online needs the memory or both method" in cms.output
