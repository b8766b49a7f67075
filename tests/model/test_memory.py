"""Self-modifying Titan memory: the fast chunked path against the per-token reference, the
update rules against their equations, gradient flow, causality and state carry."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from hopecli.model.memory import SelfModifyingTitan, TitanConfig, TitanState
from hopecli.model.memory.naive import inner_grads, memory_step

DIM, LENGTH, BATCH = 24, 63, 2


@dataclasses.dataclass(frozen=True)
class Case:
    kind: str
    rule: str
    heads: int
    static_q: bool

    @property
    def id(self) -> str:
        return f"{self.kind}-{self.rule}-h{self.heads}" + ("-static_q" if self.static_q else "")


CASES = [
    Case("mlp", "dgd", 1, False),
    Case("mlp", "dgd", 3, True),
    Case("mlp", "gd", 1, True),
    Case("mlp", "gd", 3, False),
    Case("linear", "gd", 1, False),
    Case("linear", "gd", 3, True),
    Case("linear", "dgd", 1, True),
    Case("linear", "dgd", 3, False),
]


def make(case: Case, seed: int = 0, **overrides) -> SelfModifyingTitan:
    """A tiny fp64 memory with rates large enough that every update matters."""
    cfg = TitanConfig(
        dim=DIM,
        heads=case.heads,
        hidden_mult=2.0,
        kind=case.kind,
        update_rule=case.rule,
        static_q=case.static_q,
        eta_max=0.9,
        eta_init=0.3,
        alpha_init=0.9,
        **overrides,
    )
    torch.manual_seed(seed)
    titan = SelfModifyingTitan(cfg).double()
    with torch.no_grad():  # rate read-outs that vary visibly across tokens
        for p in (titan.eta_proj, titan.alpha_proj):
            p.normal_(0.0, 0.3)
    return titan


def inputs(length: int = LENGTH, seed: int = 1) -> torch.Tensor:
    torch.manual_seed(seed)
    return torch.randn(BATCH, length, DIM, dtype=torch.float64)


def rel_rms(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).square().mean().sqrt() / b.square().mean().sqrt().clamp_min(1e-30)).item()


def run_with_grads(titan: SelfModifyingTitan, x: torch.Tensor, chunk_size: int, impl: str):
    """Outputs, final state and the gradients of a fixed random loss on both."""
    titan.zero_grad()
    x = x.clone().requires_grad_(True)
    y, state, diag = titan(x, chunk_size=chunk_size, impl=impl)
    gen = torch.Generator().manual_seed(7)
    loss = (y * torch.randn(y.shape, generator=gen, dtype=y.dtype)).sum()
    for w in state.layers:
        loss = loss + (w * torch.randn(w.shape, generator=gen, dtype=w.dtype)).sum()
    loss.backward()
    grads = {name: p.grad.clone() for name, p in titan.named_parameters()}
    grads["x"] = x.grad.clone()
    return y.detach(), state, diag, grads


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The tensors here are tiny: threads only add overhead on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


EQUIVALENCE = [(case, 1) for case in CASES] + [
    (case, chunk) for case in (CASES[0], CASES[3], CASES[5], CASES[6]) for chunk in (5, 66)
]


@pytest.mark.parametrize("case, chunk_size", EQUIVALENCE, ids=[f"{c.id}-chunk{n}" for c, n in EQUIVALENCE])
def test_chunked_matches_naive(case: Case, chunk_size: int) -> None:
    """Chunk size 1: the per-token recurrence; 5 and 66 (> L = 63): the chunk semantics."""
    titan = make(case)
    x = inputs()
    y_ref, s_ref, d_ref, g_ref = run_with_grads(titan, x, chunk_size, "naive")
    y, s, d, g = run_with_grads(titan, x, chunk_size, "chunked")
    assert rel_rms(y, y_ref) < 1e-12
    for w, w_ref in zip(s.layers, s_ref.layers):
        assert rel_rms(w.detach(), w_ref.detach()) < 1e-12
    assert torch.equal(s.step, s_ref.step)
    assert set(g) == set(g_ref)
    for name in g_ref:
        assert rel_rms(g[name], g_ref[name]) < 1e-10, name
    for key in d_ref:
        assert torch.allclose(d[key], d_ref[key], rtol=1e-5, atol=1e-7), key


def test_checkpointing_changes_nothing() -> None:
    case = Case("mlp", "dgd", 3, False)
    x = inputs()
    _, s_on, _, g_on = run_with_grads(make(case, checkpoint_chunks=True), x, 5, "chunked")
    _, s_off, _, g_off = run_with_grads(make(case, checkpoint_chunks=False), x, 5, "chunked")
    for w_on, w_off in zip(s_on.layers, s_off.layers):
        assert rel_rms(w_on.detach(), w_off.detach()) < 1e-14
    for name in g_off:
        assert rel_rms(g_on[name], g_off[name]) < 1e-14, name


def random_stream(steps: int, heads: int = 3, head_dim: int = 8, seed: int = 3):
    torch.manual_seed(seed)
    k = torch.nn.functional.normalize(torch.randn(steps, BATCH, heads, head_dim, dtype=torch.float64), dim=-1)
    v = torch.randn(steps, BATCH, heads, head_dim, dtype=torch.float64)
    eta = torch.rand(steps, BATCH, heads, dtype=torch.float64)
    alpha = 0.5 + 0.5 * torch.rand(steps, BATCH, heads, dtype=torch.float64)
    s0 = torch.randn(BATCH, heads, head_dim, head_dim, dtype=torch.float64)
    return k, v, eta, alpha, s0


def test_linear_gd_is_the_gated_delta_rule() -> None:
    k, v, eta, alpha, s0 = random_stream(20)
    eye = torch.eye(k.shape[-1], dtype=torch.float64)
    s_rule, s_hand = (s0,), s0
    for t in range(k.shape[0]):
        s_rule, _ = memory_step(s_rule, s_rule, k[t], v[t], eta[t], alpha[t], "gd")
        for b in range(BATCH):
            for h in range(k.shape[2]):
                kk, a, e = k[t, b, h], alpha[t, b, h], eta[t, b, h]
                s_hand = s_hand.clone()
                gated = a * s_hand[b, h] @ (eye - e * torch.outer(kk, kk))
                s_hand[b, h] = gated + e * torch.outer(v[t, b, h], kk)
    assert rel_rms(s_rule[0], s_hand) < 1e-12


def test_linear_dgd_is_eq93() -> None:
    """M_t = M_t-1 (alpha I - eta k k^T) - eta (M_t-1 k - v) k^T, and it differs from gd."""
    k, v, eta, alpha, s0 = random_stream(20)
    eye = torch.eye(k.shape[-1], dtype=torch.float64)
    s_dgd, s_gd, s_hand = (s0,), (s0,), s0
    for t in range(k.shape[0]):
        s_dgd, _ = memory_step(s_dgd, s_dgd, k[t], v[t], eta[t], alpha[t], "dgd")
        s_gd, _ = memory_step(s_gd, s_gd, k[t], v[t], eta[t], alpha[t], "gd")
        a, e = alpha[t][..., None, None], eta[t][..., None, None]
        kk = k[t][..., :, None] * k[t][..., None, :]  # [B, H, dh, dh]
        sk = torch.einsum("bhij,bhj->bhi", s_hand, k[t])
        s_hand = s_hand @ (a * eye - e * kk) - e * (sk - v[t])[..., :, None] * k[t][..., None, :]
    assert rel_rms(s_dgd[0], s_hand) < 1e-12
    assert rel_rms(s_gd[0], s_hand) > 1e-2


@pytest.mark.parametrize("kind", ["mlp", "linear"])
def test_inner_gradients_equal_autograd(kind: str) -> None:
    torch.manual_seed(4)
    b, h, dh, hid = BATCH, 3, 8, 16
    shapes = [(b, h, hid, dh), (b, h, dh, hid)] if kind == "mlp" else [(b, h, dh, dh)]
    weights = tuple(torch.randn(s, dtype=torch.float64, requires_grad=True) for s in shapes)
    z = torch.randn(b, h, dh, dtype=torch.float64)
    target = torch.randn(b, h, dh, dtype=torch.float64)
    loss, grads = inner_grads(weights, z, target)
    auto = torch.autograd.grad(loss.sum(), weights)
    for g, g_auto in zip(grads, auto):
        assert rel_rms(g, g_auto) < 1e-12


def test_dgd_differs_from_gd_in_the_model() -> None:
    x = inputs()
    y_dgd, _, _ = make(Case("mlp", "dgd", 3, False))(x, chunk_size=5)
    y_gd, _, _ = make(Case("mlp", "gd", 3, False))(x, chunk_size=5)
    assert rel_rms(y_dgd, y_gd) > 1e-3


@pytest.mark.parametrize(
    "case",
    [Case("mlp", "dgd", 3, False), Case("mlp", "gd", 1, True), Case("linear", "gd", 3, False)],
    ids=lambda c: c.id,
)
def test_every_parameter_is_meta_learned(case: Case) -> None:
    """A loss on the readouts alone reaches every initial state (each memory's slice),
    every rate read-out and the static q; no exception."""
    titan = make(case)
    y, _, _ = titan(inputs(), chunk_size=5)
    (y * torch.randn_like(y)).sum().backward()
    for name, p in titan.named_parameters():
        assert p.grad is not None, name
        if p.dim() >= 2 and name != "q_proj.weight":  # [NB, ...]: one slice per memory
            per_box = p.grad.flatten(1).abs().sum(1)
            assert (per_box > 0).all(), f"{name}: no gradient for memories {titan.cfg.boxes}"
        else:
            assert p.grad.abs().sum() > 0, name


def test_memory_evolves_and_is_causal_per_chunk() -> None:
    titan = make(Case("mlp", "dgd", 3, False))
    x = inputs()
    chunk = 5
    with torch.no_grad():
        init = titan.init_state(BATCH)
        _, after_one, _ = titan(x[:, :chunk], chunk_size=chunk)
        for w, w0 in zip(after_one.layers, init.layers):
            assert rel_rms(w, w0) > 1e-3
        y, _, _ = titan(x, chunk_size=chunk)
        t = 2 * chunk + 2  # a token inside chunk 2
        x2 = x.clone()
        x2[:, t] += 1.0
        y2, _, _ = titan(x2, chunk_size=chunk)
    changed = (y2 - y).abs().amax(dim=(0, 2)) > 1e-9  # [L]
    assert not changed[:t].any()  # earlier tokens, same chunk or before
    assert changed[t]
    assert not changed[t + 1 : 3 * chunk].any()  # rest of its chunk reads the chunk's start state
    assert changed[3 * chunk :].all()  # every later chunk sees it


@pytest.mark.parametrize("impl", ["chunked", "naive"])
def test_state_carry_equals_one_pass(impl: str) -> None:
    titan = make(Case("mlp", "gd", 3, True))
    x = inputs()
    with torch.no_grad():
        y, state, _ = titan(x, chunk_size=5, impl=impl)
        y1, mid, _ = titan(x[:, :30], chunk_size=5, impl=impl)
        y2, end, _ = titan(x[:, 30:], mid, chunk_size=5, impl=impl)
    assert rel_rms(torch.cat([y1, y2], dim=1), y) < 1e-13
    for w, w_ref in zip(end.layers, state.layers):
        assert rel_rms(w, w_ref) < 1e-13
    assert end.step.tolist() == state.step.tolist() == [LENGTH] * BATCH


@pytest.mark.parametrize("impl", ["chunked", "naive"])
def test_update_false_freezes_the_state(impl: str) -> None:
    titan = make(Case("linear", "dgd", 3, False))
    x = inputs()
    with torch.no_grad():
        init = titan.init_state(BATCH)
        y, state, diag = titan(x, init, chunk_size=5, update=False, impl=impl)
        y_one_chunk, _, _ = titan(x, init, chunk_size=LENGTH, impl=impl)
    for w, w0 in zip(state.layers, init.layers):
        assert torch.equal(w, w0)
    assert torch.equal(state.step, init.step)
    assert rel_rms(y, y_one_chunk) < 1e-14  # every token read M_0
    assert all(diag[f"titan/{box}/update_norm"] == 0 for box in titan.cfg.boxes)


def test_samples_do_not_share_rates_or_state() -> None:
    titan = make(Case("mlp", "dgd", 3, False))
    x = inputs()
    x2 = x.clone()
    x2[1] = torch.randn_like(x2[1])
    with torch.no_grad():
        y, s, _ = titan(x, chunk_size=5)
        y2, s2, _ = titan(x2, chunk_size=5)
    assert torch.equal(y[0], y2[0])
    assert all(torch.equal(w[0], w2[0]) for w, w2 in zip(s.layers, s2.layers))


@pytest.mark.parametrize("static_q", [False, True])
def test_diagnostics(static_q: bool) -> None:
    titan = make(Case("mlp", "dgd", 3, static_q))
    y, _, diag = titan(inputs(), chunk_size=5)
    boxes = ["k", "v", "eta", "alpha", "memory"] + ([] if static_q else ["q"])
    names = ["eta_mean", "eta_std", "alpha_mean", "alpha_std", "inner_loss", "update_norm", "state_norm"]
    assert set(diag) == {f"titan/{b}/{n}" for b in boxes for n in names}
    for key, value in diag.items():
        assert value.dim() == 0 and not value.requires_grad, key
    for box in boxes:
        assert 0 < diag[f"titan/{box}/eta_mean"] < titan.cfg.eta_max
        assert diag[f"titan/{box}/eta_std"] > 0  # per token, not pooled
        assert 0 < diag[f"titan/{box}/alpha_mean"] < 1
        assert diag[f"titan/{box}/update_norm"] > 0
        assert diag[f"titan/{box}/inner_loss"] > 0


def test_autocast_keeps_the_state_fp32() -> None:
    cfg = TitanConfig(dim=DIM, heads=3, hidden_mult=2.0)
    torch.manual_seed(0)
    titan = SelfModifyingTitan(cfg)
    x = torch.randn(BATCH, 20, DIM)
    y_ref, s_ref, _ = titan(x, chunk_size=5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, s, _ = titan(x, chunk_size=5)
    assert all(w.dtype == torch.float32 for w in s.layers)
    assert rel_rms(y.float(), y_ref) < 3e-2
    for w, w_ref in zip(s.layers, s_ref.layers):
        assert rel_rms(w, w_ref) < 3e-2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_bf16_matches_cpu_reference() -> None:
    case = Case("mlp", "dgd", 3, False)
    titan = make(case)
    x = inputs()
    with torch.no_grad():
        y_ref, s_ref, _ = titan(x, chunk_size=5, impl="naive")
        gpu = titan.float().cuda()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            y, s, _ = gpu(x.float().cuda(), chunk_size=5)
    assert s.layers[0].dtype == torch.float32
    assert rel_rms(y.double().cpu(), y_ref) < 3e-2
    for w, w_ref in zip(s.layers, s_ref.layers):
        assert rel_rms(w.double().cpu(), w_ref) < 3e-2


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("heads", 5, "dim 24 is not divisible by heads 5"),
        ("kind", "conv", "kind must be one of ('mlp', 'linear'), got 'conv'"),
        ("update_rule", "adam", "update_rule must be one of ('dgd', 'gd'), got 'adam'"),
        ("eta_max", 1.5, "eta_max must be in (0, 1], got 1.5"),
        ("alpha_init", 1.0, "alpha_init must be in (0, 1), got 1.0"),
    ],
)
def test_config_rejects_bad_values(field: str, value, message: str) -> None:
    with pytest.raises(ValueError) as info:
        TitanConfig(dim=DIM, **{field: value})
    assert str(info.value) == message


def test_forward_rejects_bad_arguments() -> None:
    titan = SelfModifyingTitan(TitanConfig(dim=DIM, heads=3))
    x = torch.randn(BATCH, 7, DIM)
    with pytest.raises(ValueError, match=r"x must be \[B, L >= 1, 24\], got shape \(2, 7, 12\)"):
        titan(x[..., :12], chunk_size=5)
    with pytest.raises(ValueError, match="chunk_size must be a positive integer, got 0"):
        titan(x, chunk_size=0)
    with pytest.raises(ValueError, match="impl must be one of"):
        titan(x, chunk_size=5, impl="fast")
    with pytest.raises(ValueError, match="state layers have shapes"):
        titan(x, titan.init_state(3), chunk_size=5)


def test_state_is_a_detachable_value() -> None:
    titan = SelfModifyingTitan(TitanConfig(dim=DIM, heads=3))
    state = titan.init_state(BATCH)
    assert all(w.requires_grad for w in state.layers)  # not detached from M_0
    detached = state.detach()
    assert isinstance(detached, TitanState) and not any(w.requires_grad for w in detached.layers)
