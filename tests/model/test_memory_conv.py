"""Short convolutions after the memories' q, k and v: the chunked path against the per-token
reference, causality on both axes, the history carried across chunks and calls, and the
sequence-axis convolution against torch's depthwise conv1d (fla's ShortConvolution)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from hopecli.model.memory import SelfModifyingTitan, TitanConfig
from hopecli.model.memory.conv import causal_conv

DIM, FRAME, FRAMES, BATCH = 24, 7, 6, 2  # 7 tokens a frame: the time axis has dilation 7
LENGTH = FRAME * FRAMES


@dataclasses.dataclass(frozen=True)
class Case:
    kind: str
    rule: str
    heads: int
    static_q: bool
    axis: str
    size: int

    @property
    def id(self) -> str:
        return f"{self.kind}-{self.rule}-h{self.heads}-{self.axis}{self.size}" + ("-static_q" if self.static_q else "")


CASES = [
    Case("mlp", "dgd", 3, False, "time", 3),
    Case("mlp", "gd", 1, True, "time", 2),
    Case("linear", "gd", 3, False, "time", 4),
    Case("mlp", "dgd", 3, False, "sequence", 4),
    Case("linear", "gd", 1, True, "sequence", 2),
]


def make(case: Case, seed: int = 0) -> SelfModifyingTitan:
    cfg = TitanConfig(dim=DIM, heads=case.heads, hidden_mult=2.0, kind=case.kind, update_rule=case.rule,
                      static_q=case.static_q, eta_max=0.9, eta_init=0.3, alpha_init=0.9,
                      conv_size=case.size, conv_axis=case.axis)
    torch.manual_seed(seed)
    titan = SelfModifyingTitan(cfg, frame_tokens=FRAME).double()
    with torch.no_grad():  # taps and rates that differ visibly from their start
        titan.conv_weight.normal_(0.0, 0.7)
        for p in (titan.eta_proj, titan.alpha_proj):
            p.normal_(0.0, 0.3)
    return titan


def inputs(length: int = LENGTH, seed: int = 1) -> torch.Tensor:
    torch.manual_seed(seed)
    return torch.randn(BATCH, length, DIM, dtype=torch.float64)


def rel_rms(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).square().mean().sqrt() / b.square().mean().sqrt().clamp_min(1e-30)).item()


def run_with_grads(titan, x, chunk_size, impl):
    titan.zero_grad()
    x = x.clone().requires_grad_(True)
    y, state, _ = titan(x, chunk_size=chunk_size, impl=impl)
    gen = torch.Generator().manual_seed(7)
    loss = (y * torch.randn(y.shape, generator=gen, dtype=y.dtype)).sum()
    for t in (*state.layers, state.conv):
        loss = loss + (t * torch.randn(t.shape, generator=gen, dtype=t.dtype)).sum()
    loss.backward()
    grads = {name: p.grad.clone() for name, p in titan.named_parameters()}
    grads["x"] = x.grad.clone()
    return y.detach(), state, grads


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
@pytest.mark.parametrize("chunk_size", [1, FRAME, 2 * FRAME + 3])
def test_chunked_matches_naive(case: Case, chunk_size: int) -> None:
    """Outputs, final weights, the carried history and every gradient (the taps included)."""
    titan = make(case)
    x = inputs()
    y_ref, s_ref, g_ref = run_with_grads(titan, x, chunk_size, "naive")
    y, s, g = run_with_grads(titan, x, chunk_size, "chunked")
    assert rel_rms(y, y_ref) < 1e-12
    for w, w_ref in zip((*s.layers, s.conv), (*s_ref.layers, s_ref.conv)):
        assert rel_rms(w.detach(), w_ref.detach()) < 1e-12
    assert titan.conv_weight.grad is not None and g["conv_weight"].abs().sum() > 0
    for name in g_ref:
        assert rel_rms(g[name], g_ref[name]) < 1e-10, name


@pytest.mark.parametrize("case", [CASES[0], CASES[3]], ids=[CASES[0].id, CASES[3].id])
def test_a_future_token_changes_no_earlier_output(case: Case) -> None:
    titan = make(case)
    x = inputs()
    t = 3 * FRAME + 2
    changed = x.clone()
    changed[:, t] += 5.0
    with torch.no_grad():
        y, _, _ = titan(x, chunk_size=FRAME)
        y2, _, _ = titan(changed, chunk_size=FRAME)
    assert torch.equal(y[:, :t], y2[:, :t])
    assert not torch.allclose(y[:, t:], y2[:, t:])


def test_time_axis_taps_read_the_same_patch_a_frame_back() -> None:
    """With only the one-frame-back tap of k, changing token t moves token t + FRAME's key,
    so the read of t + FRAME changes while the tokens in between read as before from their
    own q and v (chunk 1, so a write of t reaches later reads only through the memory)."""
    case = Case("linear", "gd", 1, False, "time", 2)
    titan = make(case)
    with torch.no_grad():
        titan.conv_weight.zero_()
        titan.conv_weight[0, 0] = 1.0  # q: current
        titan.conv_weight[1, 1] = 1.0  # k: one frame back
        titan.conv_weight[2, 0] = 1.0  # v: current
    x = inputs()
    hist = titan.init_state(BATCH)
    assert hist.conv.shape == (BATCH, 3, 1, FRAME, DIM)
    with torch.no_grad():
        _, state, _ = titan(x[:, :FRAME], chunk_size=FRAME)
    # the history holds the first frame's raw readouts, in order
    raw_q = x[:, :FRAME] / x[:, :FRAME].norm(dim=-1, keepdim=True)
    s_q = titan.initial_layers[0][2, 0]
    assert torch.allclose(state.conv[:, 0, 0], raw_q @ s_q.T, atol=1e-12)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
@pytest.mark.parametrize("chunk_size, cut", [(FRAME, 2 * FRAME), (1, 2 * FRAME + 5)])
def test_calls_chained_through_the_state_equal_the_whole_stream(case: Case, chunk_size: int, cut: int) -> None:
    """Cut at a chunk boundary (the memories' semantics need that); the second cut is inside
    a frame, so a time-axis history holds tokens of both calls."""
    titan = make(case)
    x = inputs()
    with torch.no_grad():
        y, whole, _ = titan(x, chunk_size=chunk_size)
        y1, mid, _ = titan(x[:, :cut], chunk_size=chunk_size)
        y2, end, _ = titan(x[:, cut:], mid, chunk_size=chunk_size)
    assert rel_rms(torch.cat([y1, y2], dim=1), y) < 1e-12
    for a, b in zip((*end.layers, end.conv), (*whole.layers, whole.conv)):
        assert rel_rms(a, b) < 1e-12


def test_frozen_memories_still_advance_the_history() -> None:
    titan = make(CASES[0])
    x = inputs()
    width = 2 * FRAME  # conv_size 3 on the time axis
    with torch.no_grad():
        _, off, _ = titan(x, chunk_size=FRAME, update=False)
        _, last, _ = titan(x[:, -width:], chunk_size=FRAME, update=False)  # M_0 reads each token alike
    assert off.conv.abs().sum() > 0
    assert torch.allclose(off.conv, last.conv, rtol=0, atol=1e-12)
    assert all(torch.equal(w, w0) for w, w0 in zip(off.layers, titan.init_state(BATCH).layers))


def test_sequence_axis_equals_depthwise_conv1d_then_silu() -> None:
    """fla's ShortConvolution (activation silu) is a causal depthwise Conv1d over the
    sequence; ours, fed in pieces through its history, computes the same."""
    torch.manual_seed(0)
    b, s, h, length, dh, k = 2, 3, 2, 23, 5, 4
    raw = torch.randn(b, s, h, length, dh, dtype=torch.float64)
    weight = torch.randn(s, k, h, dh, dtype=torch.float64)
    channels = raw.permute(0, 1, 2, 4, 3).reshape(b, s * h * dh, length)  # [B, channels, L]
    # Conv1d's kernel index i weighs x[t - (K - 1) + i]: our tap j = K - 1 - i
    kernel = weight.flip(1).permute(0, 2, 3, 1).reshape(s * h * dh, 1, k)
    want = F.silu(F.conv1d(channels, kernel, padding=k - 1, groups=s * h * dh)[..., :length])
    want = want.reshape(b, s, h, dh, length).permute(0, 1, 2, 4, 3)
    history = raw.new_zeros(b, s, h, k - 1, dh)
    parts = []
    for start, end in ((0, 2), (2, 9), (9, 23)):
        out, history = causal_conv(raw[..., start:end, :], history, weight, 1)
        parts.append(out)
    assert rel_rms(torch.cat(parts, dim=-2), want) < 1e-14
    assert torch.equal(history, raw[..., -(k - 1):, :])


def test_state_without_history_is_refused() -> None:
    titan = make(CASES[0])
    state = titan.init_state(BATCH)
    state.conv = None
    with pytest.raises(ValueError, match="short convolutions"):
        titan(inputs(), state, chunk_size=FRAME)


def test_config_validates_the_convolution() -> None:
    with pytest.raises(ValueError, match="conv_size"):
        TitanConfig(dim=8, conv_size=-1)
    with pytest.raises(ValueError, match="conv_axis"):
        TitanConfig(dim=8, conv_size=2, conv_axis="space")
    with pytest.raises(ValueError, match="frame_tokens"):
        SelfModifyingTitan(TitanConfig(dim=8, conv_size=2))
