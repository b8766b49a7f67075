"""Fast Titan memory: the function of naive.py with every token of a chunk at once.

Per chunk, every memory x head x sample works in the same batched products: the weights
of all memories are stacked into TitanState.layers [B, NB, H, out, in], so there is no
Python loop over memories, heads, batch or tokens, only over chunks.

Inside a chunk each layer follows the gated delta rule on D = W - M_0 (naive.py),

    D_t = alpha_t D_t-1 (I - beta_t kappa_t kappa_t^T) + beta_t w_t kappa_t^T,   w_t = tau_t - M_0 kappa_t,

whose C steps collapse into one triangular solve (the UT/WY form). With the in-chunk
decay gamma_t = prod_{s<=t} alpha_s, every D_t is

    D_t = gamma_t D_0 + sum_{s<=t} (gamma_t / gamma_s) d_s kappa_s^T,

and the write vectors d_t solve the unit lower-triangular system

    d_t + sum_{s<t} beta_t (gamma_t / gamma_s) (kappa_t . kappa_s) d_s = beta_t (w_t - gamma_t D_0 kappa_t),

i.e. (I + A) d = beta (w - gamma K D_0^T) with A strictly lower, one C x C solve per
layer, memory, head and sample. Any vector r_t read by the state right before token t is

    D_t-1 r_t = gamma_t-1 D_0 r_t + sum_{s<t} (gamma_t-1 / gamma_s) (kappa_s . r_t) d_s,

which gives the memory box's output o_t = M_memory,t-1(q_t) layer by layer.

Where it saves work (solve_spans) the chunk is solved in blocks of at most BLOCK
tokens, by blocks of the same system: the writes of the earlier blocks enter a block
as one matrix U = sum_{s<a} (gamma_a-1 / gamma_s) d_s kappa_s^T (a the block's first
token), so its right-hand side loses beta_t (gamma_t / gamma_a-1) U kappa_t and its
reads gain (gamma_t-1 / gamma_a-1) U r_t; the Gram matrix, the solve and the reads
then cost C x block instead of C^2. For the 6-head memories on a frame of 258 tokens
this cut the H block's forward + backward from 157.5 to 140.2 GFLOP (bench/blocks.py,
batch 1 x 8 frames). The decay
ratios are taken as exp of differences of cumulative log alpha, masked before the exp,
so nothing overflows. Every product of the memory runs in the state's dtype (fp32) even
under autocast: an inner error is a small difference of two reads, and bf16 reads made
the memories drift from fp32 by up to 25% of their output over 32 frames. With
config.checkpoint_chunks each chunk is recomputed in the backward (torch.utils.checkpoint)
instead of storing its activations. The chunk step runs through torch.compile where
compiled.py's policy (`--compile`) says so, eager otherwise; both compute this function.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from hopecli.model.memory.activation import gelu, gelu_grad
from hopecli.model.memory.compiled import CompiledStep
from hopecli.model.memory.config import GUARD_SCALES, TRUST_RADIUS, TitanConfig
from hopecli.model.memory.conv import causal_conv
from hopecli.model.memory.diagnostics import DiagnosticsAccumulator
from hopecli.model.memory.naive import NORM_EPS
from hopecli.model.memory.state import TitanGates, TitanState

BLOCK = 128  # most tokens per block of a chunk's solve (solve_spans)


def _t(w: Tensor) -> Tensor:
    return w.transpose(-1, -2)


def _read(layers: tuple[Tensor, ...], z: Tensor) -> Tensor:
    """M(z) for stacked memories: layers [..., out, in], z [..., C, head_dim] (broadcast)."""
    if len(layers) == 2:
        w2, w1 = layers
        return z + gelu(z @ _t(w2)) @ _t(w1)
    (s,) = layers
    return z @ _t(s)


def _decay(rows: Tensor, cols: Tensor) -> Tensor:
    """exp(rows_t - cols_s) for s < t, else 0: rows, cols [..., C] -> [..., C, C]."""
    size = rows.shape[-1]
    later = torch.ones(size, size, dtype=torch.bool, device=rows.device).triu()  # s >= t
    return (rows[..., :, None] - cols[..., None, :]).masked_fill(later, float("-inf")).exp()


def blocks(size: int, block: int) -> tuple[tuple[int, int], ...]:
    """[start, end) of the fewest blocks of at most `block` tokens, as equal as can be."""
    count = -(-size // block)
    step = -(-size // count)
    return tuple((a, min(a + step, size)) for a in range(0, size, step))


class BlockDecay(NamedTuple):
    """The forgetting of one block [start, end) of a chunk, shared by every layer."""

    start: int
    end: int
    ratio: Tensor  # gamma_t / gamma_s for s < t in the block [..., c, c]
    since: Tensor | None  # gamma_t / gamma_start-1 [..., c]; None for the chunk's first block
    tail: Tensor  # gamma_end-1 / gamma_s [..., c]


class ChunkDecay:
    """The forgetting inside one chunk, shared by every layer: log_alpha [..., C].

    cum_t = log gamma_t over the whole chunk; the decay of each block is made once per
    cut of the chunk into blocks and shared by the layers that use that cut.
    """

    def __init__(self, log_alpha: Tensor) -> None:
        self.log_alpha = log_alpha
        self.cum = log_alpha.cumsum(-1)  # log gamma_t
        self.gamma = self.cum.exp()  # gamma_t [..., C]
        self._cache: dict[tuple, list] = {}

    def blocks(self, spans: tuple[tuple[int, int], ...]) -> list[BlockDecay]:
        """Every block's decay for this cut of the chunk."""
        if spans not in self._cache:
            cum = self.cum
            self._cache[spans] = [
                BlockDecay(
                    a,
                    b,
                    _decay(cum[..., a:b], cum[..., a:b]),
                    (cum[..., a:b] - cum[..., a - 1 : a]).exp() if a > 0 else None,
                    (cum[..., b - 1 : b] - cum[..., a:b]).exp(),
                )
                for a, b in spans
            ]
        return self._cache[spans]

    def read_ratios(self, spans: tuple[tuple[int, int], ...], box: int) -> list[Tensor]:
        """Per block, gamma_t-1 / gamma_s for s < t of memory `box`: [B, H, c, c]."""
        key = (spans, box)
        if key not in self._cache:
            cum = self.cum[:, box]
            prev = cum - self.log_alpha[:, box]
            self._cache[key] = [_decay(prev[..., a:b], cum[..., a:b]) for a, b in spans]
        return self._cache[key]


def solve_spans(size: int, d_in: int, d_out: int, block: int) -> tuple[tuple[int, int], ...]:
    """How DeltaChunk cuts a chunk of `size` tokens for a layer [d_out, d_in].

    In blocks of c tokens the solve skips the Gram matrix and the triangular products
    between blocks, (size^2 - size c) (d_in + d_out / 2) multiply-adds, and pays
    (size - c) d_in d_out to read the earlier blocks' writes as one matrix: it pays off
    when size (d_in + d_out / 2) > d_in d_out, as for the 6-head memories (head dim 64,
    hidden 256) on a frame of 258 tokens, not for one full-width memory (384, 1536).
    """
    if size <= block or size * (d_in + d_out / 2) <= d_in * d_out:
        return ((0, size),)
    return blocks(size, block)


class DeltaChunk:
    """One layer's chunk of the gated delta rule on D = W - M_0 (module docstring).

    d0 [..., out, in]; keys [..., C, in]; values w [..., C, out]; beta [..., C]. The
    solve goes block by block (solve_spans): inside a block the triangular system, across
    blocks the writes so far as one matrix U (the part of D that is not gamma D_0).
    """

    def __init__(
        self,
        d0: Tensor,
        keys: Tensor,
        values: Tensor,
        beta: Tensor,
        decay: ChunkDecay,
        block: int,
        factors: tuple[Tensor, Tensor] | None = None,
        keys_d0: Tensor | None = None,
    ) -> None:
        """factors (base, scale) with keys = base * scale, base shared by every memory,
        so a block's Gram matrix is (base base^T) * (scale scale^T); keys_d0 (keys @ D_0^T)
        when the caller has it already."""
        self.d0, self.keys, self.decay = d0, keys, decay
        self.spans = solve_spans(keys.shape[-2], d0.shape[-1], d0.shape[-2], block)
        keys_d0 = keys @ _t(d0) if keys_d0 is None else keys_d0
        rhs = beta[..., None] * (values - decay.gamma[..., None] * keys_d0)  # [..., C, out]
        self.before: list[Tensor | None] = []  # U at the start of every block
        ds, u = [], None
        for a, b, ratio, since, tail in decay.blocks(self.spans):
            key = keys[..., a:b, :]
            if factors is None:
                gram = key @ _t(key)
            else:
                base, scale = (f[..., a:b, :] for f in factors)
                gram = (base @ _t(base)) * (scale * _t(scale))
            right = rhs[..., a:b, :]
            if u is not None:  # the earlier blocks' writes, seen through this block's keys
                right = right - (beta[..., a:b] * since)[..., None] * (key @ _t(u))
            # d^T (I + A)^T = rhs^T: the same solve, which LAPACK takes without copying either
            # operand into column-major order (2.4x faster than the left-hand form on the CPU)
            d = torch.linalg.solve_triangular(
                ((beta[..., a:b, None] * ratio) * gram).mT, right.mT, upper=True, left=False, unitriangular=True
            ).mT  # [..., b - a, out]
            self.before.append(u)
            written = _t(d * tail[..., None]) @ key
            u = written if u is None else since[..., -1:, None] * u + written
            ds.append(d)
        self.d = torch.cat(ds, dim=-2) if len(ds) > 1 else ds[0]  # [..., C, out]
        self.written = u

    def final(self) -> Tensor:
        """D after the chunk."""
        return self.decay.gamma[..., -1:, None] * self.d0 + self.written

    def read_before(self, r: Tensor, box: int) -> Tensor:
        """D_t-1 r_t of memory `box` for every token t: r [B, H, C, in] -> [B, H, C, out]."""
        cum = self.decay.cum[:, box]
        prev = cum - self.decay.log_alpha[:, box]  # log gamma_t-1
        ratios = self.decay.read_ratios(self.spans, box)
        parts = []
        for (a, b), ratio, u in zip(self.spans, ratios, self.before):
            part = r[..., a:b, :]
            weights = ratio * (part @ _t(self.keys[:, box, ..., a:b, :]))
            inside = weights @ self.d[:, box, ..., a:b, :]
            if u is not None:
                carry = (prev[..., a:b] - cum[..., a - 1 : a]).exp()  # gamma_t-1 / gamma_a-1
                inside = inside + carry[..., None] * (part @ _t(u[:, box]))
            parts.append(inside)
        inside = torch.cat(parts, dim=-2) if len(parts) > 1 else parts[0]
        return prev.exp()[..., None] * (r @ _t(self.d0[:, box])) + inside


class Targets(NamedTuple):
    """What chunk_targets computes for write_chunk, and what it can reuse.

    keys, taus per layer [B, NB, H, C, in] / [B, NB, H, C, out] (keys shared by every
    memory broadcast over NB); loss [B, NB, H, C]; keys_w per layer: keys @ W_c^T, a
    by-product of the targets; factors per layer: (base, scale) with keys = base * scale,
    base shared by every memory [B, 1, H, C, in] and scale [B, NB, H, C, 1], or None.
    """

    keys: tuple[Tensor, ...]
    taus: tuple[Tensor, ...]
    loss: Tensor
    keys_w: tuple[Tensor, ...]
    factors: tuple[tuple[Tensor, Tensor] | None, ...]
    target: Tensor  # v_hat per memory and token [B, NB, H, C, dh], at W_c


def chunk_targets(layers: tuple[Tensor, ...], k: Tensor, v: Tensor, cfg: TitanConfig) -> Targets:
    """naive.write_targets for every memory and token (shapes in Targets); layers
    [B, NB, H, out, in] (W_c), k, v [B, H, C, dh]."""
    size = k.shape[-2]
    k1 = k.unsqueeze(1)  # [B, 1, H, C, dh]
    kv = torch.cat([k, v], dim=-2).unsqueeze(1)  # [B, 1, H, 2C, dh]
    if len(layers) == 2:
        w2, w1 = layers
        p = kv @ _t(w2)  # [B, NB, H, 2C, hidden]
        pk, pv = p.split(size, dim=-2)
        target = v.unsqueeze(1) + gelu(pv) @ _t(w1)  # M_box(v) [B, NB, H, C, dh]
    else:
        (s,) = layers
        sk, target = (kv @ _t(s)).split(size, dim=-2)  # [B, NB, H, C, dh] each
    if cfg.memory_target == "value":
        target = torch.cat([target[:, :-1], v.unsqueeze(1)], dim=1)
    if len(layers) == 2:
        u = gelu(pk)
        w1u = u @ _t(w1)
        e = k1 + w1u - target
        slope = gelu_grad(pk)
        g2 = (e @ w1) * slope
        along = g2.square().sum(-1, keepdim=True) / (e.square().sum(-1, keepdim=True) + NORM_EPS)
        kk = k1.square().sum(-1, keepdim=True)
        n = torch.maximum(kk, u.square().sum(-1, keepdim=True) + kk * along).clamp_min(NORM_EPS)
        r = n.rsqrt()
        keys, taus = (k1 * r, u * r), ((pk - g2) * r, (w1u - e) * r)
        keys_w, factors = (pk * r, w1u * r), ((k1, r), None)
    else:
        e = sk - target
        r = k1.square().sum(-1, keepdim=True).clamp_min(NORM_EPS).rsqrt()
        keys, taus = (k1 * r,), ((sk - e) * r,)
        keys_w, factors = (sk * r,), (None,)
    if cfg.update_rule == "dgd":
        taus = tuple(t / 2 for t in taus)
    return Targets(keys, taus, 0.5 * e.square().sum(-1), keys_w, factors, target)


def write_chunk(
    layers: tuple[Tensor, ...],
    init: tuple[Tensor, ...],
    keys: tuple[Tensor, ...],
    taus: tuple[Tensor, ...],
    eta: Tensor,
    log_alpha: Tensor,
    cfg: TitanConfig,
    keys_w: tuple[Tensor, ...] | None = None,
    factors: tuple[tuple[Tensor, Tensor] | None, ...] | None = None,
    block: int | None = None,
) -> tuple[tuple[Tensor, ...], list[DeltaChunk]]:
    """Every layer's chunk of writes, in the state's dtype (fp32 even under autocast).

    layers [B, NB, H, out, in] (W_c); init [NB, H, out, in] (M_0); keys, taus per layer
    from chunk_targets; eta, log_alpha [B, NB, H, C]. Returns W_c+1 and the chunks.
    keys_w and factors (Targets) save products: keys @ D_0^T = keys @ W_c^T - keys @ M_0^T
    (used only when keys_w is in the state's dtype: in bf16 the difference would cancel),
    and the Gram matrix of keys = base * scale as (base base^T) * (scale scale^T), the
    product computed once for every memory. block: tokens per block of the solve
    (DeltaChunk), BLOCK when None.
    """
    block = BLOCK if block is None else block
    factor = 2.0 if cfg.update_rule == "dgd" else 1.0
    with torch.autocast(layers[0].device.type, enabled=False):
        dtype = layers[0].dtype
        beta, decay = (factor * eta).to(dtype), ChunkDecay(log_alpha.to(dtype))
        chunks, new = [], []
        for i, (w, w0, key, tau) in enumerate(zip(layers, init, keys, taus)):
            key, tau, w0 = key.to(dtype), tau.to(dtype), w0.to(dtype)
            key_w0 = key @ _t(w0)
            keys_d0 = keys_w[i] - key_w0 if keys_w is not None and keys_w[i].dtype == dtype else None
            pair = None
            if factors is not None and factors[i] is not None:
                pair = tuple(f.to(dtype) for f in factors[i])
            # values tau_t - M_0 kappa_t
            chunk = DeltaChunk(w - w0, key, tau - key_w0, beta, decay, block, pair, keys_d0)
            chunks.append(chunk)
            new.append(w0 + chunk.final())
    return tuple(new), chunks


def guard_write(layers: tuple[Tensor, ...], after: tuple[Tensor, ...], init: tuple[Tensor, ...],
                log_alpha: Tensor, k: Tensor, target: Tensor) -> tuple[Tensor, ...]:
    """naive.guard_write for every memory, head and sample of an MLP chunk at once.

    layers (W_c), after (W') [B, NB, H, out, in]; init (M_0) [NB, H, out, in]; log_alpha
    [B, NB, H, C]; k [B, H, C, dh] the keys; target [B, NB, H, C, dh].
    """
    gamma = log_alpha.to(layers[0].dtype).sum(-1).exp()[..., None, None]  # [B, NB, H, 1, 1]
    w2, w1 = (w0 + gamma * (w - w0) for w, w0 in zip(layers, init))  # F: the forgetting alone
    d2, d1 = after[0] - w2, after[1] - w1
    k1 = k.unsqueeze(1).to(w2.dtype)  # [B, 1, H, C, dh]
    target = target.to(w2.dtype)
    p0, dp = k1 @ _t(w2), k1 @ _t(d2)  # [B, NB, H, C, hidden]
    start = 0.5 * (k1 + gelu(p0) @ _t(w1) - target).square().sum((-1, -2))  # [B, NB, H]
    scales = torch.tensor(GUARD_SCALES, dtype=w2.dtype, device=w2.device)[:, None, None, None, None, None]
    act = gelu(p0 + scales * dp)  # [S, B, NB, H, C, hidden]
    trial_w1 = w1 + scales * d1  # [S, B, NB, H, dh, hidden]
    err = k1 + act @ _t(trial_w1) - target
    ok = 0.5 * err.square().sum((-1, -2)) <= start  # [S, B, NB, H]
    for w, d, w0 in zip((w2, w1), (d2, d1), init):
        dev = (w - w0) + scales * d  # [S, B, NB, H, out, in]
        ok = ok & (dev.square().sum((-1, -2)).sqrt() <= TRUST_RADIUS * w.shape[-2] ** 0.5)
    chosen = torch.zeros_like(start)
    for i in reversed(range(len(GUARD_SCALES))):  # the largest passing scale is set last
        chosen = torch.where(ok[i], scales[i, ..., 0, 0, 0], chosen)
    return tuple(w + chosen[..., None, None] * d for w, d in zip((w2, w1), (d2, d1)))


def read_memory_box(chunks: list[DeltaChunk], init: tuple[Tensor, ...], q: Tensor) -> Tensor:
    """o_t = M_memory,t-1(q_t) through the memory box's chunk, layer by layer: q [B, H, C, dh]."""
    with torch.autocast(q.device.type, enabled=False):
        dtype = chunks[0].d.dtype
        q = q.to(dtype)
        m0 = [w[-1].to(dtype) for w in init]
        if len(chunks) == 2:
            act = gelu(q @ _t(m0[0]) + chunks[0].read_before(q, -1))
            return q + act @ _t(m0[1]) + chunks[1].read_before(act, -1)
        return q @ _t(m0[0]) + chunks[0].read_before(q, -1)


def _chunk_step(
    x: Tensor,
    eta_proj: Tensor,
    eta_bias: Tensor,
    alpha_proj: Tensor,
    alpha_bias: Tensor,
    q_weight: Tensor | None,
    conv_weight: Tensor | None,
    history: Tensor | None,
    *tensors: Tensor,
    cfg: TitanConfig,
    update: bool,
    dilation: int,
) -> tuple[Tensor, tuple[Tensor, ...], tuple[Tensor, Tensor, Tensor], Tensor | None]:
    """One chunk x [B, C, D] from W_c = layers; returns y [B, C, D], W_c+1, detached stats
    and the short convolutions' history after the chunk (None without them).

    tensors: the state's layers [B, NB, H, out, in], then M_0's [NB, H, out, in].
    """
    layers, init = tensors[: len(tensors) // 2], tensors[len(tensors) // 2 :]
    batch, size, dim = x.shape
    heads, head_dim = cfg.heads, cfg.head_dim
    nb = len(cfg.boxes)
    xh = F.normalize(x.reshape(batch, size, heads, head_dim), dim=-1).transpose(1, 2)  # [B, H, C, dh]

    # readouts of x_t by every memory but M_memory, all at W_c
    r = _read(tuple(w[:, :-1] for w in layers), xh.unsqueeze(1))  # [B, NB-1, H, C, dh]
    k, v = r[:, 0], r[:, 1]  # [B, H, C, dh]
    if q_weight is None:
        q = r[:, 2]
    else:
        flat = xh.transpose(1, 2).reshape(batch, size, dim)
        q = (flat @ _t(q_weight)).view(batch, size, heads, head_dim).transpose(1, 2)
    if conv_weight is not None:
        mixed, history = causal_conv(torch.stack([q, k, v], dim=1), history, conv_weight, dilation)
        q, k, v = mixed.unbind(1)
    k, v, q = (F.normalize(t, dim=-1) for t in (k, v, q))
    eta_logit = torch.einsum("bhcd,nhd->bnhc", r[:, -2], eta_proj) + eta_bias[..., None]
    alpha_logit = torch.einsum("bhcd,nhd->bnhc", r[:, -1], alpha_proj) + alpha_bias[..., None]
    eta = cfg.eta_bound * torch.sigmoid(eta_logit)  # [B, NB, H, C]
    log_alpha = F.logsigmoid(alpha_logit)  # [B, NB, H, C]
    found = chunk_targets(layers, k, v, cfg)
    loss = found.loss

    if update:
        new, chunks = write_chunk(
            layers, init, found.keys, found.taus, eta, log_alpha, cfg, found.keys_w, found.factors
        )
        y = read_memory_box(chunks, init, q)
        if cfg.kind == "mlp":
            new = guard_write(layers, new, init, log_alpha, k, found.target)
    else:
        new = layers
        y = _read(tuple(w[:, -1] for w in layers), q)  # [B, H, C, dh]
    y = y.transpose(1, 2).reshape(batch, size, dim)
    stats = tuple(t.detach().transpose(0, 1).reshape(nb, -1) for t in (eta, log_alpha.exp(), loss))
    return y, new, stats, history


COMPILED_STEP = CompiledStep(_chunk_step)  # torch.compile where compiled.py's policy says


def titan_chunked(
    x: Tensor,
    state: TitanState,
    gates: TitanGates,
    cfg: TitanConfig,
    *,
    chunk_size: int,
    update: bool,
) -> tuple[Tensor, TitanState, dict[str, Tensor]]:
    """Same signature and result as naive.titan_naive, batched over memories, heads and batch."""
    length = x.shape[1]
    # the initial state is M_0 expanded over the batch (stride 0); one layout for every
    # chunk keeps the compiled step from compiling a second time for the first chunk
    layers = tuple(w.contiguous() for w in state.layers)
    x = x.to(layers[0].dtype)
    step = partial(COMPILED_STEP, cfg=cfg, update=update, dilation=gates.dilation)
    recompute = cfg.checkpoint_chunks and torch.is_grad_enabled()
    gate_args = (gates.eta_proj, gates.eta_bias, gates.alpha_proj, gates.alpha_bias, gates.q_weight,
                 gates.conv_weight)
    history = None if state.conv is None else state.conv.contiguous()
    diag = DiagnosticsAccumulator(cfg.boxes)
    ys = []
    # fp32 under autocast too: with bf16 readouts a linear memory with short convolutions
    # drifted 1.9% from fp32 over 32 frames, a gd MLP memory 25%
    with torch.autocast(x.device.type, enabled=False):
        for start in range(0, length, chunk_size):
            args = (x[:, start : start + chunk_size], *gate_args, history, *layers, *gates.initial_layers)
            if recompute:
                y, new, stats, history = checkpoint(step, *args, use_reentrant=False)
            else:
                y, new, stats, history = step(*args)
            diag.add_rates(*stats)
            diag.add_update(layers, new)
            layers = tuple(new)
            ys.append(y)
    step_count = state.step + length if update else state.step
    return torch.cat(ys, dim=1), TitanState(layers, step_count, history), diag.result(layers)
