"""Losses: the L1 measure, rollout and jump wiring, gradients reaching the embeddings."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hopecli.model.presets import build_predictor
from hopecli.train.losses import LossConfig, WorldModelObjective, jump, normalize_features, rollout
from hopecli.train.validate import clip_errors

PRESETS = ["vit_tiny", "hope_tiny", "hybrid_tiny"]


def _model(preset):
    torch.manual_seed(0)
    return build_predictor(preset, input_dim=16, action_dim=2, state_dim=2, patches_per_step=4,
                           memory={"checkpoint_chunks": False}).eval()


def _data(B=2, T=4):
    g = torch.Generator().manual_seed(1)
    return (torch.randn(B, T, 4, 16, generator=g) * 3 + 1, torch.randn(B, T, 2, generator=g),
            torch.randn(B, T, 2, generator=g))


@pytest.mark.parametrize("preset", PRESETS)
def test_rollout_feeds_layer_normed_predictions_back(preset):
    model = _model(preset)
    x, a, s = _data()
    z = normalize_features(x)
    with torch.no_grad():
        got = rollout(model, z, a, s, 3)
        frames = [z[:, 0]]
        for n in range(3):  # the definition, written out
            nxt = model(torch.stack(frames, 1), a[:, : n + 1], s[:, : n + 1]).pred[:, -1]
            torch.testing.assert_close(got[:, n], nxt)
            frames.append(F.layer_norm(nxt, (16,)))
        # causality: the teacher-forcing prediction of step 1 is rollout step 1
        tf = model(z[:, :-1], a[:, :-1], s[:, :-1]).pred
        torch.testing.assert_close(rollout(model, z, a, s, 3, first=tf[:, 0]), got, rtol=1e-4, atol=1e-5)
        # only step 0 of the real features is read
        z2 = z.clone()
        z2[:, 1:] = 0
        torch.testing.assert_close(rollout(model, z2, a, s, 3), got)


def test_objective_is_the_weighted_sum_of_the_three_l1_losses():
    model = _model("vit_tiny")
    x, a, s = _data()
    tau = torch.tensor([3, 1])
    cfg = LossConfig(teacher_weight=0.5, rollout_weight=2.0, rollout_steps=2, jump_weight=3.0)
    total, parts, _ = WorldModelObjective(model, cfg)(x, a, s, tau)
    z = F.layer_norm(x, (16,))
    with torch.no_grad():
        teacher = (model(z[:, :3], a[:, :3], s[:, :3]).pred - z[:, 1:]).abs().mean()
        ar = (rollout(model, z, a, s, 2) - z[:, 1:3]).abs().mean()
        j = (jump(model, z, a, s, tau) - z[[0, 1], [3, 1]]).abs().mean()
    torch.testing.assert_close(parts["loss/teacher"], teacher)
    torch.testing.assert_close(parts["loss/rollout"], ar)
    torch.testing.assert_close(parts["loss/jump"], j)
    torch.testing.assert_close(total.detach(), 0.5 * teacher + 2.0 * ar + 3.0 * j)


@pytest.mark.parametrize("preset", ["vit_tiny", "hope_tiny"])
def test_jump_loss_trains_target_pos_embed_and_teacher_forcing_frame_pos_embed(preset):
    model = _model(preset).train()
    x, a, s = _data()
    jump_only = LossConfig(teacher_weight=0, rollout_weight=0)
    loss, _, _ = WorldModelObjective(model, jump_only)(x, a, s, torch.tensor([2, 3]))
    loss.backward()
    assert model.target_pos_embed.weight.grad[[2, 3]].abs().sum() > 0
    model.zero_grad(set_to_none=True)
    loss, _, _ = WorldModelObjective(model, LossConfig(jump_weight=0))(x, a, s, torch.tensor([2, 3]))
    loss.backward()
    assert model.frame_pos_embed.weight.grad[:3].abs().sum(1).gt(0).all()
    assert model.target_pos_embed.weight.grad is None or model.target_pos_embed.weight.grad.abs().sum() == 0


def test_validation_jump_error_averages_the_training_range_of_tau():
    model = _model("vit_tiny")
    x, a, s = _data(T=4)
    z = normalize_features(x)

    def per_tau(tau):
        with torch.no_grad():
            return (jump(model, z, a, s, torch.tensor([tau, tau])) - z[:, tau]).abs().flatten(1).mean(1)

    torch.testing.assert_close(clip_errors(model, x, a, s, jump_k=2)[:, 1], (per_tau(2) + per_tau(3)) / 2)
    torch.testing.assert_close(clip_errors(model, x, a, s)[:, 1], (per_tau(1) + per_tau(2) + per_tau(3)) / 3)


def test_loss_config_is_validated():
    with pytest.raises(ValueError, match="rollout_steps must be >= 1, got 0"):
        LossConfig(rollout_steps=0)
    with pytest.raises(ValueError, match="at least one"):
        LossConfig(teacher_weight=0, rollout_weight=0, jump_weight=0)
    with pytest.raises(ValueError, match="jump_k must be >= 1, got 0"):
        LossConfig(jump_k=0)
