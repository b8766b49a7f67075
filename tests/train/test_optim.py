"""Schedule, parameter groups and multi-rate (CMS) stepping."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from hopecli.model.presets import build_predictor
from hopecli.train.losses import LossConfig, WorldModelObjective
from hopecli.train.optim import OptimConfig, build_optimizer, check_covers, lr_factor, optimizer_step


@dataclass
class Group:
    name: str
    kind: str
    period: int
    params: list


def test_warmup_then_cosine():
    cfg = OptimConfig(warmup_steps=4, min_lr_ratio=0.1)
    f = [lr_factor(s, 20, cfg) for s in range(20)]
    assert f[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert f[4] == pytest.approx(1.0)  # cosine over the 16 steps after warm-up
    assert f[12] == pytest.approx(0.1 + 0.9 * 0.5)  # halfway
    assert f[-1] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 15 / 16)))
    assert f[-1] > 0.1  # the last step still learns
    assert all(a > b for a, b in zip(f[4:], f[5:]))


def test_wsd_values_at_the_fraction_boundaries():
    """20 steps, warm-up 0.1 (2 steps), decay 0.2 (4 steps): constant from step 2 to 15."""
    cfg = OptimConfig(schedule="wsd", warmup_fraction=0.1, decay_fraction=0.2, min_lr_ratio=0.0)
    f = [lr_factor(s, 20, cfg) for s in range(20)]
    assert f[:2] == pytest.approx([0.5, 1.0])  # warm-up: (s + 1) / 2
    assert f[2:16] == [1.0] * 14  # constant: the first step after warm-up to the last before decay
    assert f[16:] == pytest.approx([1.0, 0.75, 0.5, 0.25])  # decay: 1 - k / 4, reaching 0 one step late
    low = OptimConfig(schedule="wsd", warmup_fraction=0.1, decay_fraction=0.2, min_lr_ratio=0.2)
    assert lr_factor(19, 20, low) == pytest.approx(0.2 + 0.8 * 0.25)
    # floors, as the seeds' int(pct * total): 0.29 * 100 is 28.999... in floats and still 29 steps
    odd = OptimConfig(schedule="wsd", warmup_fraction=0.29, decay_fraction=0.1)
    assert lr_factor(28, 100, odd) == pytest.approx(1.0) and lr_factor(27, 100, odd) == pytest.approx(28 / 29)
    assert lr_factor(89, 100, odd) == 1.0 and lr_factor(90, 100, odd) == 1.0 and lr_factor(91, 100, odd) == 0.9
    # fractions too small for a whole step: no warm-up, no decay
    tiny = OptimConfig(schedule="wsd", warmup_fraction=0.1, decay_fraction=0.1)
    assert [lr_factor(s, 5, tiny) for s in range(5)] == [1.0] * 5


def test_warmup_fraction_also_sets_the_cosine_warmup():
    cfg = OptimConfig(warmup_fraction=0.25, warmup_steps=99)
    assert [lr_factor(s, 8, cfg) for s in range(3)] == pytest.approx([0.5, 1.0, 1.0])


def test_schedule_config_is_validated():
    with pytest.raises(ValueError, match="schedule must be one of"):
        OptimConfig(schedule="linear")
    with pytest.raises(ValueError, match=r"warmup_fraction \+ decay_fraction must be <= 1, got 0.6 \+ 0.5"):
        OptimConfig(schedule="wsd", warmup_fraction=0.6, decay_fraction=0.5)
    with pytest.raises(ValueError, match="decay_fraction must be in"):
        OptimConfig(decay_fraction=1.5)


def test_groups_split_decay_and_keep_period_and_scale():
    lin = nn.Linear(3, 3)
    cfg = OptimConfig(lr=1e-3, lr_scale_titan=0.3, weight_decay=0.05)
    opt = build_optimizer([Group("titan", "titan", 1, list(lin.parameters()))], cfg)
    decay = {g["weight_decay"] for g in opt.param_groups}
    assert decay == {0.05, 0.0}  # matrix decayed, bias not
    assert all(g["lr"] == pytest.approx(3e-4) and g["period"] == 1 for g in opt.param_groups)
    with pytest.raises(ValueError, match="in no parameter group"):
        check_covers(nn.Sequential(lin, nn.Linear(3, 1)), [Group("titan", "titan", 1, list(lin.parameters()))])


def test_slow_group_steps_on_mean_of_accumulated_gradients():
    """A period-3 parameter moves only at steps 3 and 6, by AdamW on the mean gradient."""
    torch.manual_seed(0)
    fast, slow = nn.Parameter(torch.randn(4)), nn.Parameter(torch.randn(4))
    cfg = OptimConfig(lr=0.1, warmup_steps=0, weight_decay=0.0, grad_clip=0.0)
    opt = build_optimizer([Group("fast", "other", 1, [fast]), Group("cms1", "cms", 3, [slow])], cfg)
    ref_param = nn.Parameter(slow.detach().clone())
    ref = torch.optim.AdamW([ref_param], lr=0.1, weight_decay=0.0)
    grads = []
    for step in range(1, 7):
        before = slow.detach().clone()
        g = torch.randn(4)
        grads.append(g)
        (fast * torch.randn(4)).sum().add((slow * g).sum()).backward()
        logs = optimizer_step(opt, step, 1.0, cfg)
        if step % 3:
            assert torch.equal(slow, before) and "grad_norm/cms1" not in logs
            assert torch.allclose(slow.grad, sum(grads[-(step % 3):]))  # still accumulating
        else:
            ref_param.grad = torch.stack(grads[-3:]).mean(0)
            ref.step()
            torch.testing.assert_close(slow.detach(), ref_param.detach())
            assert slow.grad is None
            assert logs["grad_norm/cms1"] == pytest.approx(float(ref_param.grad.norm()), rel=1e-5)


def test_clipping_is_global_over_due_groups_and_non_finite_stops_before_update():
    p = nn.Parameter(torch.zeros(2))
    cfg = OptimConfig(lr=1.0, warmup_steps=0, weight_decay=0.0, grad_clip=1.0)
    opt = build_optimizer([Group("other", "other", 1, [p])], cfg)
    p.grad = torch.tensor([30.0, 40.0])
    logs = optimizer_step(opt, 1, 1.0, cfg)
    assert logs["grad_norm/total"] == pytest.approx(50.0)  # reported before clipping
    p.grad = torch.tensor([float("nan"), 1.0])
    before = p.detach().clone()
    with pytest.raises(FloatingPointError, match="nan"):
        optimizer_step(opt, 2, 1.0, cfg)
    assert torch.equal(p.detach(), before)


def test_cms_levels_count_optimizer_steps_not_forward_calls():
    """hope_tiny: every training step runs the predictor three times (teacher forcing,
    rollout, jump); the period-4 CMS level still changes only at optimizer step 4."""
    torch.manual_seed(0)
    model = build_predictor("hope_tiny", input_dim=16, action_dim=2, state_dim=2, patches_per_step=4,
                            memory={"checkpoint_chunks": False})
    groups = model.parameter_groups()
    check_covers(model, groups)
    slow = next(g for g in groups if g.period == 4)
    assert slow.kind == "cms"
    cfg = OptimConfig(warmup_steps=0)
    opt = build_optimizer(groups, cfg)
    objective = WorldModelObjective(model, LossConfig())
    calls = 0

    def count(*_):
        nonlocal calls
        calls += 1

    model.register_forward_hook(count)
    start = copy.deepcopy([p.detach() for p in slow.params])
    other = next(g for g in groups if g.name == "other").params[0]
    for step in range(1, 5):
        x, a = torch.randn(2, 4, 4, 16), torch.randn(2, 4, 2)
        loss, _, _ = objective(x, a, a, torch.tensor([1, 3]))
        loss.backward()
        before_other = other.detach().clone()
        optimizer_step(opt, step, 1.0, cfg)
        assert not torch.equal(other.detach(), before_other)  # period 1: every step
        unchanged = all(torch.equal(p.detach(), s) for p, s in zip(slow.params, start))
        assert unchanged == (step < 4), f"step {step}"
    assert calls == 12 and math.isfinite(loss.item())
