"""The predictor as a whole: causality, memory inside one forward, jump prediction,
streaming state, and gradients reaching every parameter."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hopecli.model import Predictor, preset_config

D_IN, P, A, S = 16, 4, 2, 2
B, T = 2, 4


def tiny(pattern: str, **overrides) -> Predictor:
    """A tiny predictor (width 64, 2x2 patches) with the given block pattern, in eval mode."""
    torch.manual_seed(0)
    cfg = preset_config("hybrid_tiny", pattern=pattern, input_dim=D_IN, patches_per_step=P, **overrides)
    return Predictor(cfg).eval()


def inputs(frames: int = T, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(B, frames, P, D_IN, generator=g),
        torch.randn(B, frames, A, generator=g),
        torch.randn(B, frames, S, generator=g),
    )


PATTERNS = ["T", "H", "L", "THTLH"]


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("which", ["features", "actions", "states"])
def test_future_frames_do_not_change_past_predictions(pattern: str, which: str) -> None:
    model = tiny(pattern, chunk_size=3)  # a chunk finer than a frame (6 tokens) too
    x = inputs()
    with torch.no_grad():
        before = model(*x).pred
        t = 1
        changed = list(x)
        i = ["features", "actions", "states"].index(which)
        changed[i] = changed[i].clone()
        changed[i][:, t + 1] += 3.0
        after = model(*changed).pred
    torch.testing.assert_close(after[:, : t + 1], before[:, : t + 1], rtol=0, atol=1e-6)
    assert (after[:, t + 1] - before[:, t + 1]).abs().max() > 0  # the change is seen at t+1


@pytest.mark.parametrize("pattern", ["HH", "LL"])
def test_memory_carries_earlier_frames_within_one_forward(pattern: str) -> None:
    """Without attention or spatial mixing every layer but the memory is per token, so
    frame 2 can depend on frame 0 only through memory updates inside the forward (the
    short convolutions are off: they are a path of their own, tested below)."""
    model = tiny(pattern, spatial_mixing=False, memory={"conv_size": 0})
    x = inputs()
    changed = (x[0].clone(), x[1], x[2])
    changed[0][:, 0] += 3.0
    with torch.no_grad():
        delta = (model(*changed).pred[:, 2] - model(*x).pred[:, 2]).abs().max()
        frozen = (
            model(*changed, update_memory=False).pred[:, 2] - model(*x, update_memory=False).pred[:, 2]
        ).abs().max()
    assert delta > 1e-4
    assert frozen == 0


@pytest.mark.parametrize("pattern", ["H", "L"])
def test_time_convolution_reaches_exactly_its_taps_back(pattern: str) -> None:
    """One block, frozen memories, a convolution of 2 taps on the time axis: a frame sees
    the same patch one step back and no further, and never another patch's past."""
    model = tiny(pattern, spatial_mixing=False, memory={"conv_size": 2, "conv_axis": "time"})
    x = inputs()
    with torch.no_grad():
        base = model(*x, update_memory=False).pred
        for frame, reaches in ((1, True), (0, False)):
            changed = (x[0].clone(), x[1], x[2])
            changed[0][:, frame, 0] += 3.0  # patch 0 only
            out = model(*changed, update_memory=False).pred
            moved = (out[:, 2] - base[:, 2]).abs().amax(dim=(0, 2))  # per patch of frame 2
            assert (moved[0] > 1e-4) == reaches
            assert (moved[1:] == 0).all()  # the other patches' step-2 outputs stay put


def test_jump_prediction_depends_on_target_step_and_trains_target_embedding() -> None:
    model = tiny("THT")
    f, a, s = inputs(frames=1)
    out1 = model(f, a, s, target_step=torch.tensor([1, 1]))
    out5 = model(f, a, s, target_step=torch.tensor([5, 5]))
    assert (out1.pred - out5.pred).abs().max() > 1e-4
    (out1.pred.square().mean() + out5.pred.square().mean()).backward()
    grad = model.target_pos_embed.weight.grad
    assert grad[1].abs().sum() > 0 and grad[5].abs().sum() > 0
    assert grad[2].abs().sum() == 0  # only the asked-for steps are touched


@pytest.mark.parametrize("pattern", ["H", "T", "THTLH"])
def test_stream_in_pieces_equals_whole_sequence(pattern: str) -> None:
    model = tiny(pattern, chunk_size=2)
    x = inputs()
    with torch.no_grad():
        whole = model(*x)
        first = model(*(v[:, :2] for v in x))
        second = model(*(v[:, 2:] for v in x), state=first.state)
        state, steps = None, []
        for t in range(T):
            out = model(*(v[:, t : t + 1] for v in x), state=state)
            state = out.state
            steps.append(out.pred)
    assert second.state.frames == T and state.frames == T
    torch.testing.assert_close(torch.cat([first.pred, second.pred], 1), whole.pred, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.cat(steps, 1), whole.pred, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("static_q", [False, True], ids=["memory_q", "static_q"])
def test_every_parameter_gets_a_gradient(static_q: bool) -> None:
    """Teacher forcing + jump loss reaches every parameter: Titan initial states and
    eta/alpha parts, CMS levels, attention, frame and target embeddings (the target
    embedding only through the jump term). The one exception at initialisation is
    spatial mixing's first linear, which sits behind the zero-initialised second one;
    that one is made non-zero first to see it too."""
    model = tiny("THLH", memory={"static_q": static_q}).train()
    for block in model.blocks:
        if getattr(block, "mixing", None) is not None:
            torch.nn.init.normal_(block.mixing.fc2.weight, std=0.1)
    f, a, s = inputs()
    target = F.layer_norm(torch.randn(B, T, P, D_IN), (D_IN,))
    teacher = F.l1_loss(model(f, a, s).pred, target)
    jump = F.l1_loss(model(f[:, :1], a[:, :1], s[:, :1], target_step=torch.tensor([2, 3])).pred[:, 0], target[:, 2])
    (teacher + jump).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert missing == []


def test_memory_initial_states_are_in_the_titan_group() -> None:
    model = tiny("THL")
    groups = {g.name: g for g in model.parameter_groups()}
    assert list(groups) == ["titan", "cms0", "cms1", "other"]
    assert [groups["cms0"].period, groups["cms1"].period] == [1, 4]
    ids = [id(p) for g in groups.values() for p in g.params]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())  # each exactly once
    titan = {id(p) for p in groups["titan"].params}
    for block in (model.blocks[1], model.blocks[2]):
        assert all(id(p) in titan for p in block.memory.initial_state_parameters())


def test_diagnostics_are_named_per_block_and_box() -> None:
    model = tiny("TH")
    with torch.no_grad():
        diag = model(*inputs()).diagnostics
    for box in ("k", "v", "q", "eta", "alpha", "memory"):
        assert f"block1/titan/{box}/eta_mean" in diag
    assert "block1/cms/level1/update_ratio" in diag
    assert not any(k.startswith("block0/") for k in diag)
    assert all(v.dim() == 0 and not v.requires_grad for v in diag.values())


def test_bad_inputs_raise_value_errors() -> None:
    model = tiny("H")
    f, a, s = inputs()
    with pytest.raises(ValueError, match=r"actions must be \[2, 4, 2\], got \(2, 4, 3\)"):
        model(f, torch.zeros(B, T, 3), s)
    with pytest.raises(ValueError, match="exceed max_frames 32"):
        model(torch.zeros(B, 33, P, D_IN), torch.zeros(B, 33, A), torch.zeros(B, 33, S))
    with pytest.raises(ValueError, match=r"target_step values must lie in \[0, 32\), got 3..32"):
        model(f, a, s, target_step=torch.tensor([3, 32]))


@pytest.mark.parametrize("pattern", ["HH", "LL"])
def test_one_frame_jump_prediction_uses_the_memory(pattern: str) -> None:
    """From a single frame the memory still adapts: each token reads what the earlier tokens
    of its frame wrote (DESIGN section 6: no empty memories for one-frame jump prediction)."""
    model = tiny(pattern, spatial_mixing=False)
    f, a, s = inputs(frames=1)
    step = torch.tensor([3, 3])
    with torch.no_grad():
        learning = model(f, a, s, target_step=step).pred
        frozen = model(f, a, s, target_step=step, update_memory=False).pred
    assert (learning - frozen).abs().max() > 1e-4


def test_l_blocks_are_the_gated_delta_rule() -> None:
    cfg = preset_config("hope_multihead", pattern="LH", input_dim=D_IN, patches_per_step=P,
                        memory={"memory_target": "self", "update_rule": "dgd"})
    linear, hope = cfg.memory_config("L"), cfg.memory_config("H")
    assert (linear.kind, linear.update_rule, linear.memory_target) == ("linear", "gd", "value")
    assert (linear.conv_size, linear.conv_axis) == (hope.conv_size, hope.conv_axis) == (2, "time")
    assert (hope.kind, hope.memory_target, hope.update_rule) == ("mlp", "self", "dgd")


@pytest.mark.parametrize("pattern", ["T", "H"])
def test_predict_change_adds_the_input_step_to_the_head(pattern: str) -> None:
    """predict_change: the output is the step read plus the head (teacher forcing and
    jump), so a zero head copies; without it the same weights give the head alone."""
    z, a, s = inputs()
    step = torch.tensor([3, 1])
    change = tiny(pattern, predict_change=True)
    plain = tiny(pattern, predict_change=False)
    plain.load_state_dict(change.state_dict())
    with torch.no_grad():
        for kwargs in ({}, {"target_step": step}):
            frames = z if not kwargs else z[:, :1]
            got = change(frames, a[:, :frames.shape[1]], s[:, :frames.shape[1]], **kwargs).pred
            head = plain(frames, a[:, :frames.shape[1]], s[:, :frames.shape[1]], **kwargs).pred
            torch.testing.assert_close(got, head + frames)
        change.predictor_proj.weight.zero_()
        change.predictor_proj.bias.zero_()
        assert torch.equal(change(z, a, s).pred, z)


def test_tiny_presets_predict_the_change_and_saved_configs_without_it_do_not() -> None:
    from hopecli.model.config import PredictorConfig

    assert all(preset_config(name).predict_change for name in ("vit_tiny", "hope_tiny", "hybrid_tiny"))
    assert not preset_config("vit_baseline").predict_change  # V-JEPA 2-AC predicts the features
    saved = preset_config("vit_tiny").to_dict()
    del saved["predict_change"]  # a run saved before the option existed
    assert PredictorConfig.from_dict(saved).predict_change is False
