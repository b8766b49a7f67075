"""Self-modifying Titan memory: the fast chunked path against the per-token reference, the
update rules against their equations, gradient flow, causality and state carry."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from hopecli.model.memory import SelfModifyingTitan, TitanConfig, TitanState
from hopecli.model.memory import chunked
from hopecli.model.memory.chunked import chunk_targets, read_memory_box, write_chunk
from hopecli.model.memory.naive import delta_step, memory_read, write_targets

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


EQUIVALENCE = (
    [(case, 1, None) for case in CASES]
    + [(case, chunk, None) for case in (CASES[0], CASES[3], CASES[5], CASES[6]) for chunk in (5, 66)]
    + [(case, chunk, 4) for case in (CASES[0], CASES[1], CASES[6]) for chunk in (5, 66)]
)


@pytest.mark.parametrize(
    "case, chunk_size, block",
    EQUIVALENCE,
    ids=[f"{c.id}-chunk{n}" + (f"-block{b}" if b else "") for c, n, b in EQUIVALENCE],
)
def test_chunked_matches_naive(case: Case, chunk_size: int, block: int | None, monkeypatch) -> None:
    """Chunk size 1: the per-token recurrence; 5 and 66 (> L = 63): the chunk semantics;
    block 4: a chunk solved in blocks of at most 4 tokens (2 and 16 of them)."""
    if block is not None:
        monkeypatch.setattr(chunked, "BLOCK", block)
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


def correlated_stream(length: int, heads: int, head_dim: int, shared: float, dtype, seed: int = 3):
    """Unit keys sharing `shared` of their variance, unit values and queries, rates [B, 1, H, L]."""
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=gen, dtype=dtype)

    common = randn(BATCH, heads, 1, head_dim)
    k = F.normalize(shared**0.5 * common + (1 - shared) ** 0.5 * randn(BATCH, heads, length, head_dim), dim=-1)
    v = F.normalize(randn(BATCH, heads, length, head_dim), dim=-1)
    q = F.normalize(randn(BATCH, heads, length, head_dim), dim=-1)
    eta = torch.rand(BATCH, 1, heads, length, generator=gen, dtype=dtype)
    alpha = 0.5 + 0.5 * torch.rand(BATCH, 1, heads, length, generator=gen, dtype=dtype)
    return k, v, q, eta, alpha


def linear_memory_box(heads: int, head_dim: int, rule: str, dtype, zero_init: bool = False):
    """A lone linear memory box (NB = 1) learning v_t, with M_0 and a state away from it."""
    cfg = TitanConfig(
        dim=heads * head_dim, heads=heads, kind="linear", update_rule=rule, memory_target="value"
    )
    gen = torch.Generator().manual_seed(5)
    m0 = torch.eye(head_dim, dtype=dtype) + 0.3 * torch.randn(1, heads, head_dim, head_dim, generator=gen, dtype=dtype)
    if zero_init:
        m0 = torch.zeros_like(m0)
    s0 = m0 + 0.3 * torch.randn(BATCH, 1, heads, head_dim, head_dim, generator=gen, dtype=dtype)
    return cfg, s0, m0


def chunked_pass(s0, m0, k, v, q, eta, alpha, cfg: TitanConfig, chunk: int, block: int | None = None):
    """The product's chunked write and read (one memory box) over a whole stream."""
    layers, init, ys = (s0,), (m0,), []
    for start in range(0, k.shape[-2], chunk):
        part = slice(start, start + chunk)
        found = chunk_targets(layers, k[..., part, :], v[..., part, :], cfg)
        rates = eta[..., part], alpha[..., part].log()
        layers, chunks = write_chunk(layers, init, found, *rates, cfg, block=block)
        ys.append(read_memory_box(chunks, init, q[..., part, :]))
    return torch.cat(ys, dim=-2), layers[0]


def token_loop(s0, m0, k, v, q, eta, alpha, cfg: TitanConfig):
    """The per-token recurrence of naive.py, one token at a time: o_t = S_t-1 q_t, then write."""
    s, ys = s0[:, 0], []
    for t in range(k.shape[-2]):
        ys.append(memory_read((s,), q[:, :, t]))
        keys, taus, factor, _ = write_targets((s,), k[:, :, t], v[:, :, t], cfg.update_rule)
        s = delta_step(s, m0[0], keys[0], taus[0], factor * eta[:, 0, :, t], alpha[:, 0, :, t])
    return torch.stack(ys, dim=-2), s[:, None]


LINEAR_EXACT = [(rule, chunk, None) for rule in ("gd", "dgd") for chunk in (1, 7, 16, 63)] + [
    (rule, 63, block) for rule in ("gd", "dgd") for block in (8, 20)
]


@pytest.mark.parametrize(
    "rule, chunk, block",
    LINEAR_EXACT,
    ids=[f"{r}-chunk{c}" + (f"-block{b}" if b else "") for r, c, b in LINEAR_EXACT],
)
def test_linear_chunk_is_the_per_token_recurrence(rule: str, chunk: int, block: int | None) -> None:
    """The UT/WY chunk form equals the per-token loop at any chunk size in fp32 (T = 63,
    head dim 48, 90%-shared keys): outputs, final state and every gradient, also when a
    chunk is solved in blocks (8 of 8 tokens, 4 of 16)."""
    cfg, s0, m0 = linear_memory_box(2, 48, rule, torch.float32)
    stream = correlated_stream(63, 2, 48, 0.9, torch.float32)
    gen = torch.Generator().manual_seed(11)
    results = []
    for fn in (lambda *a: chunked_pass(*a, cfg, chunk, block), lambda *a: token_loop(*a, cfg)):
        leaves = [t.clone().requires_grad_(True) for t in (s0, m0, *stream)]
        y, s = fn(*leaves)
        gen.manual_seed(11)
        loss = (y * torch.randn(y.shape, generator=gen)).sum() + (s * torch.randn(s.shape, generator=gen)).sum()
        grads = torch.autograd.grad(loss, leaves)
        results.append((y.detach(), s.detach(), grads))
    (y, s, grads), (y_ref, s_ref, grads_ref) = results
    assert rel_rms(y, y_ref) < 1e-5
    assert rel_rms(s, s_ref) < 1e-5
    for name, g, g_ref in zip(("s0", "m0", "k", "v", "q", "eta", "alpha"), grads, grads_ref):
        assert rel_rms(g, g_ref) < 1e-5, name


def test_a_frame_is_solved_in_blocks_only_where_that_saves_work() -> None:
    """258 tokens: the 6-head memories (64 -> 256 -> 64) in three blocks of 86, one
    full-width memory (384 -> 1536 -> 384) and a short chunk whole."""
    assert chunked.solve_spans(258, 64, 256, 128) == ((0, 86), (86, 172), (172, 258))
    assert chunked.solve_spans(258, 256, 64, 128) == ((0, 86), (86, 172), (172, 258))
    assert chunked.solve_spans(258, 384, 1536, 128) == ((0, 258),)
    assert chunked.solve_spans(258, 1536, 384, 128) == ((0, 258),)
    assert chunked.solve_spans(66, 32, 64, 128) == ((0, 66),)
    assert chunked.blocks(63, 8) == tuple((a, min(a + 8, 63)) for a in range(0, 63, 8))


@pytest.mark.parametrize("zero_init", [True, False], ids=["M0=0", "M0"])
def test_linear_gd_with_values_is_the_gated_delta_rule(zero_init: bool) -> None:
    """S_t = alpha S_t-1 (I - eta k k^T) + eta v k^T (+ (1 - alpha) M_0 (I - eta k k^T), the
    pull toward M_0), written out as an fp32 loop of the published equation."""
    cfg, s0, m0 = linear_memory_box(2, 16, "gd", torch.float32, zero_init=zero_init)
    k, v, q, eta, alpha = correlated_stream(40, 2, 16, 0.5, torch.float32)
    y, s = chunked_pass(s0, m0, k, v, q, eta, alpha, cfg, chunk=16)
    eye = torch.eye(16)
    s_hand, ys = s0[:, 0].clone(), []
    for t in range(40):
        ys.append(torch.einsum("bhij,bhj->bhi", s_hand, q[:, :, t]))
        a, e = alpha[:, 0, :, t, None, None], eta[:, 0, :, t, None, None]
        kk = k[:, :, t, :, None] * k[:, :, t, None, :]
        erase = eye - e * kk
        s_hand = a * s_hand @ erase + e * v[:, :, t, :, None] * k[:, :, t, None, :] + (1 - a) * m0[0] @ erase
    assert rel_rms(y, torch.stack(ys, dim=-2)) < 1e-5
    assert rel_rms(s[:, 0], s_hand) < 1e-5


def test_linear_dgd_is_eq93_after_forgetting() -> None:
    """dgd: S' = M_0 + alpha (S - M_0), S_t = S' (I - eta k k^T) - eta (S' k - v) k^T."""
    cfg, s0, m0 = linear_memory_box(2, 16, "dgd", torch.float64)
    k, v, q, eta, alpha = correlated_stream(40, 2, 16, 0.5, torch.float64)
    _, s = chunked_pass(s0, m0, k, v, q, eta, alpha, cfg, chunk=16)
    _, s_gd = chunked_pass(s0, m0, k, v, q, eta, alpha, dataclasses.replace(cfg, update_rule="gd"), chunk=16)
    eye = torch.eye(16, dtype=torch.float64)
    s_hand = s0[:, 0]
    for t in range(40):
        a, e = alpha[:, 0, :, t, None, None], eta[:, 0, :, t, None, None]
        kt, vt = k[:, :, t], v[:, :, t]
        forgotten = m0[0] + a * (s_hand - m0[0])
        err = torch.einsum("bhij,bhj->bhi", forgotten, kt) - vt
        s_hand = forgotten @ (eye - e * kt[..., :, None] * kt[..., None, :]) - e * err[..., :, None] * kt[..., None, :]
    assert rel_rms(s[:, 0], s_hand) < 1e-12
    assert rel_rms(s_gd[:, 0], s_hand) > 1e-2


@pytest.mark.parametrize("kind", ["mlp", "linear"])
def test_a_write_is_the_inner_gradient_step_normalised(kind: str) -> None:
    """Without forgetting, a gd write is W - eta grad l(W) / n: the hand-written inner
    gradients against autograd, n against its definition (naive.py)."""
    torch.manual_seed(4)
    b, h, dh, hid = BATCH, 3, 8, 16
    shapes = [(b, h, hid, dh), (b, h, dh, hid)] if kind == "mlp" else [(b, h, dh, dh)]
    weights = tuple(torch.randn(s, dtype=torch.float64, requires_grad=True) for s in shapes)
    k = F.normalize(torch.randn(b, h, dh, dtype=torch.float64), dim=-1)
    target = torch.randn(b, h, dh, dtype=torch.float64)
    loss = 0.5 * (memory_read(weights, k) - target).square().sum()
    grads = torch.autograd.grad(loss, weights)
    if kind == "mlp":  # n: Gauss-Newton curvature along e, J^T e = dl/dp by autograd
        p = torch.einsum("bhij,bhj->bhi", weights[0], k).detach().requires_grad_(True)
        u = F.gelu(p)
        e = k + torch.einsum("bhij,bhj->bhi", weights[1].detach(), u) - target
        (jte,) = torch.autograd.grad(0.5 * e.square().sum(), p)
        n = u.square().sum(-1) + jte.square().sum(-1) / e.square().sum(-1)
        n = torch.maximum(n, torch.ones_like(n)).detach()  # ||k|| = 1
    else:
        n = torch.ones(b, h, dtype=torch.float64)
    eta = torch.rand(b, h, dtype=torch.float64)
    keys, taus, factor, _ = write_targets(tuple(w.detach() for w in weights), k, target, "gd")
    for w, key, tau, g in zip(weights, keys, taus, grads):
        w = w.detach()
        new = delta_step(w, torch.zeros_like(w[0]), key, tau, factor * eta, torch.ones_like(eta))
        assert rel_rms(new - w, -(eta / n.detach())[..., None, None] * g) < 1e-12


@pytest.mark.parametrize("rule", ["gd", "dgd"])
def test_mlp_writes_at_eta_1_stay_bounded_on_grown_weights(rule: str) -> None:
    """One token written 50 times at eta 1 into an MLP memory whose layers have grown 3x:
    the error stays finite, and gd drives it below 1% of its start (an unnormalised
    step expanded here)."""
    torch.manual_seed(6)
    b, h, dh, hid = BATCH, 3, 16, 64
    w2 = 3 * torch.randn(b, h, hid, dh, dtype=torch.float64) / dh**0.5
    w1 = 3 * torch.randn(b, h, dh, hid, dtype=torch.float64) / hid**0.5
    k = F.normalize(torch.randn(b, h, dh, dtype=torch.float64), dim=-1)
    target = F.normalize(torch.randn(b, h, dh, dtype=torch.float64), dim=-1)
    weights = (w2, w1)
    start = (memory_read(weights, k) - target).norm(dim=-1)
    ones = torch.ones(b, h, dtype=torch.float64)
    for _ in range(50):
        keys, taus, factor, _ = write_targets(weights, k, target, rule)
        weights = tuple(
            delta_step(w, torch.zeros_like(w[0]), key, tau, factor * ones, ones) for w, key, tau in zip(weights, keys, taus)
        )
    end = (memory_read(weights, k) - target).norm(dim=-1)
    assert torch.isfinite(end).all() and all(torch.isfinite(w).all() for w in weights)
    assert (end < 2 * start).all()
    if rule == "gd":
        assert (end < 0.01 * start).all()


def test_forgetting_returns_to_the_meta_learned_state() -> None:
    """alpha < 1 with (almost) no writes pulls the state back to M_0, not to zero."""
    cfg = TitanConfig(dim=DIM, heads=3, hidden_mult=2.0, eta_max=1.0, eta_init=1e-9, alpha_init=0.5)
    torch.manual_seed(0)
    titan = SelfModifyingTitan(cfg).double()
    init = titan.init_state(BATCH)
    away = type(init)(tuple(w + torch.randn_like(w) for w in init.layers), init.step)
    with torch.no_grad():
        _, state, _ = titan(inputs(60), away, chunk_size=7)
    for w, w0 in zip(state.layers, init.layers):
        assert rel_rms(w, w0) < 1e-6
        assert w.norm() > 0.1 * w0.norm()


@pytest.mark.parametrize("case", CASES[:1] + CASES[3:5] + CASES[6:7], ids=lambda c: c.id)
def test_eight_frames_of_correlated_tokens_at_eta_1_stay_bounded(case: Case) -> None:
    """8 one-frame chunks of 258 tokens sharing 90% of their variance, eta 1: finite
    outputs, and every memory stays within a few unit writes of M_0."""
    cfg = TitanConfig(
        dim=64, heads=case.heads if case.heads == 1 else 2, hidden_mult=2.0, kind=case.kind,
        update_rule=case.rule, static_q=case.static_q, eta_max=1.0, eta_init=0.999,
    )
    torch.manual_seed(0)
    titan = SelfModifyingTitan(cfg)
    gen = torch.Generator().manual_seed(1)
    x = 0.9**0.5 * torch.randn(1, 1, 64, generator=gen) + 0.1**0.5 * torch.randn(1, 8 * 258, 64, generator=gen)
    with torch.no_grad():
        y, state, _ = titan(x, chunk_size=258)
    assert torch.isfinite(y).all()
    assert y.abs().max() < 10
    init = titan.init_state(1)
    for w, w0 in zip(state.layers, init.layers):
        drift = (w - w0).flatten(3).norm(dim=-1)  # per memory and head
        assert torch.isfinite(drift).all() and drift.max() < 10 * cfg.head_dim**0.5


LEARNS = [("linear", "gd", 0.9), ("mlp", "gd", 0.85), ("mlp", "dgd", 0.6)]


@pytest.mark.parametrize("kind, rule, least", LEARNS, ids=[f"{k}-{r}" for k, r, _ in LEARNS])
def test_memory_learns_repeated_pairs_in_context(kind: str, rule: str, least: float) -> None:
    """At the shipped eta_init and alpha_init, one-frame chunks of 16 pairs seen 16 times a
    frame with 90%-shared keys: the pair-specific recall error drops by `least` in 8
    frames, the issue's targets (bench/icl.py measures 100% / 95% / 73% at head dim 64;
    dgd's fixed point along a key is half its target, which caps it at 75%)."""
    cfg = TitanConfig(dim=32, heads=1, kind=kind, update_rule=rule, memory_target="value")
    torch.manual_seed(0)
    init = tuple(w.detach()[-1:] for w in SelfModifyingTitan(cfg).initial_layers)
    layers = tuple(w.unsqueeze(0).expand(BATCH, *w.shape).clone() for w in init)
    gen = torch.Generator().manual_seed(2)
    keys = F.normalize(0.9**0.5 * torch.randn(BATCH, 1, 32, generator=gen) + 0.1**0.5 * torch.randn(BATCH, 16, 32, generator=gen), dim=-1)
    values = F.normalize(torch.randn(BATCH, 16, 32, generator=gen), dim=-1)

    def specific_error(layers):
        recall = torch.stack([memory_read(tuple(w[:, 0] for w in layers), keys[:, i, None])[:, 0] for i in range(16)], 1)
        centred = recall - recall.mean(1, keepdim=True) - values + values.mean(1, keepdim=True)
        return centred.square().sum(-1).mean()

    start = specific_error(layers)
    shape = (BATCH, 1, 1, 256)
    for _ in range(8):
        order = torch.stack([torch.randperm(256, generator=gen) % 16 for _ in range(BATCH)])
        k = torch.gather(keys, 1, order[..., None].expand(-1, -1, 32))[:, None]
        v = torch.gather(values, 1, order[..., None].expand(-1, -1, 32))[:, None]
        found = chunk_targets(layers, k, v, cfg)
        eta = torch.full(shape, cfg.eta_start)
        layers, _ = write_chunk(layers, init, found, eta, torch.full(shape, math.log(cfg.alpha_init)), cfg)
    assert 1 - specific_error(layers) / start >= least


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
    assert changed[t:].all()  # itself, the rest of its chunk (running reads) and every later chunk


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


@pytest.mark.parametrize(
    "case, overrides",
    [(CASES[0], {}), (CASES[3], {"memory_target": "value", "conv_size": 2, "conv_axis": "sequence"}),
     (CASES[6], {})],
    ids=["mlp-dgd", "mlp-gd-value-conv", "linear-dgd"],
)
@pytest.mark.parametrize("length", [LENGTH, 60])
def test_dropping_the_state_keeps_the_readouts_and_spares_the_writes(case: Case, overrides: dict,
                                                                      length: int) -> None:
    """keep_state=False (the last step of a planning rollout): the same readouts, no state,
    and fewer FLOPs, the last chunk making only the memory box's write."""
    from torch.utils.flop_counter import FlopCounterMode

    titan = make(case, **overrides)
    x = inputs(length)
    with torch.no_grad():
        start = titan(inputs(7, seed=3), chunk_size=5)[1]  # a state that is not M_0
        flops = {}
        for keep in (True, False):
            with FlopCounterMode(display=False) as counter:
                y, state, diag = titan(x, start, chunk_size=20, keep_state=keep)
            flops[keep] = counter.get_total_flops()
            if keep:
                y_kept = y
        y_ref, state_ref, diag_ref = titan(x, start, chunk_size=20, impl="naive", keep_state=False)
    assert state is None and diag == {} and state_ref is None and diag_ref == {}
    assert rel_rms(y, y_kept) < 1e-13
    assert rel_rms(y_ref, y_kept) < 1e-12
    assert flops[False] < flops[True]


@pytest.mark.parametrize("impl", ["chunked", "naive"])
def test_update_false_freezes_the_state(impl: str) -> None:
    titan = make(Case("linear", "dgd", 3, False))
    x = inputs()
    with torch.no_grad():
        init = titan.init_state(BATCH)
        y, state, diag = titan(x, init, chunk_size=5, update=False, impl=impl)
        y_token, _, _ = titan(x, init, chunk_size=1, update=False, impl=impl)
        y_learning, _, _ = titan(x, init, chunk_size=5, impl=impl)
    for w, w0 in zip(state.layers, init.layers):
        assert torch.equal(w, w0)
    assert torch.equal(state.step, init.step)
    assert rel_rms(y, y_token) < 1e-14  # every token read M_0, whatever the chunking
    assert rel_rms(y, y_learning) > 1e-3
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
    # gd: a dgd write toward half its target can raise the error of a memory that is near
    # its target already (M_v at the start), and the MLP safeguard then drops it
    titan = make(Case("mlp", "gd", 3, static_q))
    y, _, diag = titan(inputs(), chunk_size=5)
    boxes = ["k", "v", "eta", "alpha", "memory"] + ([] if static_q else ["q"])
    names = ["eta_mean", "eta_std", "alpha_mean", "alpha_std", "inner_loss", "update_norm", "state_norm"]
    assert set(diag) == {f"titan/{b}/{n}" for b in boxes for n in names}
    for key, value in diag.items():
        assert value.dim() == 0 and not value.requires_grad, key
    for box in boxes:
        assert 0 < diag[f"titan/{box}/eta_mean"] < titan.cfg.eta_bound
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
        ("eta_init", 0.6, "eta_init must be in (0, eta_max=0.5), got 0.6"),
        ("alpha_init", 1.0, "alpha_init must be in (0, 1), got 1.0"),
        ("memory_target", "key", "memory_target must be one of ('self', 'value'), got 'key'"),
        ("recompute", "some", "recompute must be one of ('selective', 'whole'), got 'some'"),
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
