"""The safeguard of MLP memory writes: no chunk's write raises the memory's error on the
pairs it wrote, and gd stays inside the trust region around M_0 over 64 frames at eta_max
(it ran away within about 30 one-frame chunks before)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hopecli.model.memory import SelfModifyingTitan, TitanConfig
from hopecli.model.memory.chunked import _read, chunk_targets
from hopecli.model.memory.config import TRUST_RADIUS
from hopecli.model.memory.naive import memory_read

FRAME, FRAMES = 18, 64


def chunk_pairs(titan: SelfModifyingTitan, layers, x):
    """Keys [B, H, C, dh] and every memory's targets [B, NB, H, C, dh] of chunk x at W_c."""
    cfg = titan.cfg
    b, c, _ = x.shape
    xh = F.normalize(x.reshape(b, c, cfg.heads, cfg.head_dim), dim=-1).transpose(1, 2)
    r = _read(tuple(w[:, :-1] for w in layers), xh.unsqueeze(1))
    k, v = F.normalize(r[:, 0], dim=-1), F.normalize(r[:, 1], dim=-1)
    return k, chunk_targets(layers, k, v, cfg).target


def pair_error(layers, k, target):
    """Sum over the chunk of 1/2 |M(k_t) - v_hat_t|^2 per sample, memory, head."""
    out = []
    for i in range(target.shape[1]):
        weights = tuple(w[:, i] for w in layers)
        out.append(sum(0.5 * (memory_read(weights, k[:, :, t]) - target[:, i, :, t]).square().sum(-1)
                       for t in range(k.shape[2])))
    return torch.stack(out, 1)  # [B, NB, H]


@pytest.mark.parametrize("rule", ["gd", "dgd"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_write_raises_the_error_on_the_pairs_it_wrote(rule: str, seed: int) -> None:
    """alpha ~ 1, so the state a chunk starts from is what its forgetting leaves."""
    cfg = TitanConfig(dim=16, heads=2, hidden_mult=2.0, update_rule=rule, eta_max=1.0 if rule == "gd" else 0.5,
                      eta_init=0.99 if rule == "gd" else 0.495, alpha_init=1 - 1e-9)
    torch.manual_seed(seed)
    titan = SelfModifyingTitan(cfg).double()
    state = titan.init_state(2)
    gen = torch.Generator().manual_seed(seed)
    common = torch.randn(2, 1, 16, generator=gen, dtype=torch.float64)
    moved = 0
    with torch.no_grad():
        for _ in range(FRAMES):
            x = 2 * common + torch.randn(2, FRAME, 16, generator=gen, dtype=torch.float64)  # correlated keys
            k, target = chunk_pairs(titan, state.layers, x)
            before = pair_error(state.layers, k, target)
            _, state, _ = titan(x, state, chunk_size=FRAME)
            after = pair_error(state.layers, k, target)
            assert (after <= before * (1 + 1e-6) + 1e-12).all()
            moved += int((after < before * (1 - 1e-3)).sum())
    assert moved > FRAMES  # the guard lets writes through: it is not a memory that never learns


@pytest.mark.parametrize("shape", [(64, 2, 2.0), (32, 1, 4.0)], ids=["tiny-2-heads", "full-width-like"])
@pytest.mark.parametrize("target", ["self", "value"])
def test_gd_at_eta_max_stays_bounded_over_64_frames(shape, target: str) -> None:
    dim, heads, mult = shape
    cfg = TitanConfig(dim=dim, heads=heads, hidden_mult=mult, update_rule="gd", memory_target=target,
                      eta_max=1.0, eta_init=0.999)
    torch.manual_seed(0)
    titan = SelfModifyingTitan(cfg)
    state = titan.init_state(2)
    m0 = [w.detach() for w in titan.initial_layers]
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _ in range(FRAMES):
            y, state, _ = titan(torch.randn(2, 66, dim, generator=gen), state, chunk_size=66)
            assert torch.isfinite(y).all()
    for w, w0 in zip(state.layers, m0):
        deviation = (w - w0).square().sum((-1, -2)).sqrt()
        assert (deviation <= TRUST_RADIUS * w.shape[-2] ** 0.5 * (1 + 1e-5)).all()
    assert any((w - w0).abs().max() > 1e-3 for w, w0 in zip(state.layers, m0))  # it did write


@pytest.mark.parametrize("kind, rule, target, conv", [
    ("linear", "gd", "value", 0), ("linear", "gd", "value", 2), ("mlp", "dgd", "self", 0),
    ("mlp", "gd", "value", 2), ("mlp", "gd", "self", 2),
], ids=["L", "L-conv", "H-seeds", "H-value-conv", "H-self-conv"])
def test_bf16_autocast_stays_within_one_percent_over_32_frames(kind, rule, target, conv) -> None:
    """The memory runs in fp32 under autocast (bf16 reads drifted up to 25% by frame 32)."""
    tokens = 34
    cfg = TitanConfig(dim=64, heads=2, hidden_mult=2.0, kind=kind, update_rule=rule, memory_target=target,
                      conv_size=conv)
    torch.manual_seed(0)
    titan = SelfModifyingTitan(cfg, frame_tokens=tokens)
    x = torch.randn(2, 32 * tokens, 64).bfloat16().float()  # what a bf16 producer hands over
    with torch.no_grad():
        want, _, _ = titan(x, chunk_size=tokens)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got, _, _ = titan(x, chunk_size=tokens)
    for frame in (8, 32):
        part = slice((frame - 1) * tokens, frame * tokens)
        rel = (got[:, part].float() - want[:, part]).norm() / want[:, part].norm()
        assert rel < 0.01, (frame, rel.item())
