"""CEM planning: finds a known minimum, stays inside the action bounds, and the batched
world-model energy equals scoring every candidate on its own."""

from __future__ import annotations

import pytest
import torch

from hopecli.clips import clip_from_store
from hopecli.errors import InputError
from hopecli.plan import CEMConfig, cem, goal_energy, plan_to_goal, rollout_energy
from hopecli.runs.load import load_run
from hopecli.train.losses import normalize_features


def _quadratic(target: torch.Tensor, seen: list | None = None):
    def energy(actions):  # [N, H, A] -> [N]
        if seen is not None:
            seen.append(actions.clone())
        return (actions - target).square().sum((1, 2))

    return energy


def test_cem_finds_the_minimum_of_a_quadratic():
    target = torch.tensor([[0.3, -0.5], [0.1, 0.7]])
    cfg = CEMConfig(samples=200, top_k=20, iterations=15, horizon=2)
    result = cem(_quadratic(target), -torch.ones(2), torch.ones(2), cfg, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(result.actions, target, atol=0.02, rtol=0)
    assert result.best_per_iteration[-1] < result.best_per_iteration[0]
    assert result.energy == pytest.approx(result.best_per_iteration[-1])


def test_cem_respects_the_action_bounds():
    target = torch.tensor([[2.0, -3.0, 0.05]])  # outside the box in two dims
    low, high = torch.tensor([-1.0, -0.5, -0.1]), torch.tensor([1.0, 0.5, 0.1])
    seen: list[torch.Tensor] = []
    cfg = CEMConfig(samples=100, top_k=10, iterations=8, horizon=1)
    result = cem(_quadratic(target, seen), low, high, cfg, generator=torch.Generator().manual_seed(1))
    samples = torch.cat(seen)
    assert bool((samples >= low).all()) and bool((samples <= high).all())
    assert bool((result.actions >= low).all()) and bool((result.actions <= high).all())
    torch.testing.assert_close(result.actions, torch.tensor([[1.0, -0.5, 0.05]]), atol=0.02, rtol=0)


@pytest.mark.parametrize("kwargs, message", [
    ({"top_k": 1}, "top_k must be an integer in"),
    ({"samples": 4, "top_k": 5}, "top_k must be an integer in"),
    ({"horizon": 0}, "horizon must be a positive integer"),
    ({"momentum_std": 1.0}, "momentum_std must be in"),
], ids=["one-elite", "more-elites-than-samples", "no-horizon", "momentum-one"])
def test_cem_config_is_validated(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CEMConfig(**kwargs)


@pytest.mark.parametrize("preset", ["hope_tiny", "vit_tiny"])
def test_batched_energy_equals_one_candidate_at_a_time(runs, store_path, preset):
    """The context state (memory states / KV caches) expanded over candidates gives each
    candidate the energy it gets alone."""
    run = load_run(runs[preset])
    z, a, s = clip_from_store(store_path, 0, run).tensors(run.device)
    with torch.no_grad():
        state = run.model(z[None, :1], a[None, :1], s[None, :1]).state
    energy = rollout_energy(run.model, state, z[1], s[1], z[3], run.frames_per_step)
    candidates = torch.randn(5, 2, 2, generator=torch.Generator().manual_seed(0)) * 0.05
    batched = energy(candidates)
    alone = torch.cat([energy(c[None]) for c in candidates])
    torch.testing.assert_close(batched, alone, rtol=1e-4, atol=1e-6)
    assert batched.std() > 0  # the actions matter to the predicted step


@pytest.mark.parametrize("preset", ["hope_tiny", "vit_tiny"])
def test_shared_context_energy_equals_encoding_the_context_per_candidate(runs, store_path, preset):
    """Planning encodes the context once and expands its state over the candidates; each
    candidate's energy equals rolling it out with the context encoded again, on its own."""
    from hopecli.rollout import next_states, rollout

    run = load_run(runs[preset])
    z, a, s = clip_from_store(store_path, 0, run).tensors(run.device)
    with torch.no_grad():
        state = run.model(z[None, :1], a[None, :1], s[None, :1]).state
    shared = rollout_energy(run.model, state, z[1], s[1], z[3], run.frames_per_step)
    candidates = torch.randn(4, 2, 2, generator=torch.Generator().manual_seed(1)) * 0.05
    after_first = next_states(s[1:2], candidates[:, 0], run.frames_per_step)  # [4, S]
    unshared = []
    for c, s2 in zip(candidates, after_first):
        actions = torch.stack([a[0], c[0], c[1]])[None]  # [1, 3, A]
        states = torch.stack([s[0], s[1], s2])[None]
        pred, _ = rollout(run.model, z[None, :2], actions, states, context=2)
        unshared.append(goal_energy(normalize_features(pred[:, -1]), z[3]))
    torch.testing.assert_close(shared(candidates), torch.cat(unshared), rtol=1e-4, atol=1e-6)


def test_goal_energy_is_mean_l1_of_layer_normed_features():
    pred, goal = torch.randn(3, 4, 8), torch.randn(4, 8) * 5 + 2
    expected = (normalize_features(pred) - normalize_features(goal)).abs().mean((1, 2))
    torch.testing.assert_close(goal_energy(pred, goal), expected)
    assert goal_energy(goal[None] * 3 + 1, goal).item() < 1e-5  # scale and shift do not count


def test_mpc_executes_first_actions_within_bounds(runs, store_path):
    run = load_run(runs["hybrid_tiny"])
    z, a, s = clip_from_store(store_path, 1, run).tensors(run.device)
    bound = torch.tensor([0.05, 0.02])
    cfg = CEMConfig(samples=8, top_k=3, iterations=2, horizon=2)
    calls = []
    result = plan_to_goal(run.model, z[:2], a[:2], s[:2], z[3], -bound, bound, mpc_steps=3,
                          frames_per_step=2, cfg=cfg, generator=torch.Generator().manual_seed(0),
                          on_step=lambda i, step: calls.append(i))
    assert calls == [0, 1, 2]
    executed = torch.tensor(result.executed)
    assert executed.shape == (3, 2) and bool((executed.abs() <= bound).all())
    assert all(len(step.actions) == 2 for step in result.steps)


def test_mpc_past_max_frames_is_refused(runs, store_path):
    run = load_run(runs["vit_tiny"])
    z, a, s = clip_from_store(store_path, 1, run).tensors(run.device)
    with pytest.raises(InputError, match="planning through 33 steps .* exceeds the predictor.s max_frames 32"):
        plan_to_goal(run.model, z[:2], a[:2], s[:2], z[3], -torch.ones(2), torch.ones(2), mpc_steps=31,
                     cfg=CEMConfig(samples=4, top_k=2, iterations=1, horizon=2))
