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
instead of storing its activations: whole when eager, selectively when compiled (SAVE_INNER).
The chunk step runs through torch.compile where
compiled.py's policy (`--compile`) says so, eager otherwise; both compute this function.

The safeguard of MLP writes (naive.py) only chooses a number per memory, so it runs
after the step, outside the recomputed chunk and without gradients, on products the
step has made anyway (W2_c k, D2_0 k), trying the smaller step sizes only where the
full one fails. Measured on the CPU, 1 thread, hope_multihead's memory at batch 1 x 8
frames (bench/memory.py --memory preset, side by side): with the right-hand sides
taken as beta ((1 - gamma) D_0 kappa - pull) (DeltaChunk), J^T e in one pass and no
M_memory(v) for a memory box that stores v, the forward + backward took 4.08 s instead
of 5.34 s eager and 3.32 s instead of 3.80 s compiled.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import CheckpointPolicy, checkpoint, create_selective_checkpoint_contexts

from hopecli.model.memory.activation import gelu, gelu_grad_times
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


def _square_norm(z: Tensor) -> Tensor:
    """|z|^2 over the last dim, kept. z * z: its forward + backward took 3.8 ms where
    z.square() took 4.7 and a squared vector_norm 6.1 on [36 memory-heads, 258, 224]."""
    return (z * z).sum(-1, keepdim=True)


def _rate_logits(layers: tuple[Tensor, ...], z: Tensor, proj: Tensor) -> Tensor:
    """<proj_n, M(z)> for the rate memories M_eta, M_alpha and every memory n: layers
    [B, 2, H, out, in], z [B, H, C, dh], proj [2, NB, H, dh] -> [B, 2, NB, H, C].

    <p, z + W1 gelu(W2 z)> = <p, z> + <W1^T p, gelu(W2 z)> (<S^T p, z> for S z): the rate
    memories' second layer meets the NB projections before the C tokens, so it costs NB
    columns instead of a head's width."""
    p = proj.permute(0, 2, 3, 1)  # [2, H, dh, NB]
    z1 = z.unsqueeze(1)  # [B, 1, H, C, dh]
    if len(layers) == 2:
        w2, w1 = layers
        logits = z1 @ p + gelu(z1 @ _t(w2)) @ (_t(w1) @ p)  # W1^T p [B, 2, H, hidden, NB]
    else:
        (s,) = layers
        logits = z1 @ (_t(s) @ p)  # S^T p [B, 2, H, dh, NB]
    return logits.permute(0, 1, 4, 2, 3).contiguous()  # [B, 2, NB, H, C]


def _decay(rows: Tensor, cols: Tensor) -> Tensor:
    """exp(rows_t - cols_s) for s < t, else 0: rows, cols [..., C] -> [..., C, C]."""
    size = rows.shape[-1]
    later = torch.ones(size, size, dtype=torch.bool, device=rows.device).triu()  # s >= t
    # one pass for the mask: masked_fill copies the difference first (16.1-16.9 -> 13.5-13.7
    # ms at a planning step's [100, 6, 2, 66, 66], eager, 1 thread), and in-place ops have
    # no place in a chunk that a compiled selective checkpoint recomputes
    return torch.where(later, float("-inf"), rows[..., :, None] - cols[..., None, :]).exp()


def blocks(size: int, block: int) -> tuple[tuple[int, int], ...]:
    """[start, end) of the fewest blocks of at most `block` tokens, as equal as can be."""
    count = -(-size // block)
    step = -(-size // count)
    return tuple((a, min(a + step, size)) for a in range(0, size, step))


class BlockDecay(NamedTuple):
    """The forgetting of one block [start, end) of a chunk, shared by every layer."""

    start: int
    end: int
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
        self.spent = -torch.expm1(self.cum)  # 1 - gamma_t, exact where gamma_t is near 1
        self._cache: dict[tuple, list] = {}

    def blocks(self, spans: tuple[tuple[int, int], ...]) -> list[BlockDecay]:
        """Every block's decay for this cut of the chunk."""
        if spans not in self._cache:
            cum = self.cum
            self._cache[spans] = [
                BlockDecay(
                    a,
                    b,
                    (cum[..., a:b] - cum[..., a - 1 : a]).exp() if a > 0 else None,
                    (cum[..., b - 1 : b] - cum[..., a:b]).exp(),
                )
                for a, b in spans
            ]
        return self._cache[spans]

    def solve_weights(self, spans: tuple[tuple[int, int], ...], beta: Tensor, scale: Tensor) -> list[Tensor]:
        """Per block, beta_t (gamma_t / gamma_s) scale_t scale_s for s < t: what the Gram
        matrix of the block's inputs is multiplied by to give A (DeltaChunk). beta [..., C]
        and scale [..., C, 1] are the same for every layer of a memory, so are these: made
        once, they spare an MLP memory's second layer three passes over the C x C matrices
        (eager, 1 thread, side by side: the 6-head memory's forward + backward at 1 x 8
        frames 3.74-3.84 -> 3.63-3.66 s together with guard_scale's fused residual; the
        compiled graph fuses these passes anyway)."""
        key = (spans, "solve")
        if key not in self._cache:
            cum = self.cum
            self._cache[key] = [
                _decay(cum[..., a:b], cum[..., a:b])
                * ((beta[..., a:b, None] * scale[..., a:b, :]) * _t(scale[..., a:b, :]))
                for a, b in spans
            ]
        return self._cache[key]

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

    d0 [..., out, in] (D_0 = W_c - M_0); the keys kappa_t = base_t * scale_t, base [..., C,
    in] (the layer's input u_t, shared by every memory where it broadcasts over NB) and
    scale [..., C, 1] (1 / sqrt(n_t)); pull [..., C, out] (Targets); beta [..., C]. The
    right-hand side beta_t (w_t - gamma_t D_0 kappa_t), w_t = tau_t - M_0 kappa_t, is
    beta_t ((1 - gamma_t) D_0 kappa_t - pull_t), since tau_t = W_c kappa_t - pull_t: no
    product with M_0 and no difference of two near-equal reads. The solve goes block by
    block (solve_spans): inside a block the triangular system, across blocks the writes
    so far as one matrix U (the part of D that is not gamma D_0).
    """

    def __init__(
        self,
        d0: Tensor,
        base: Tensor,
        scale: Tensor,
        pull: Tensor,
        beta: Tensor,
        decay: ChunkDecay,
        block: int,
    ) -> None:
        self.d0, self.decay = d0, decay
        self.spans = solve_spans(base.shape[-2], d0.shape[-1], d0.shape[-2], block)
        sizes = [b - a for a, b in self.spans]
        self.base_d0 = base @ _t(d0)  # u_t D_0^T [..., C, out]
        rhs = (beta * decay.spent)[..., None] * scale * self.base_d0 - beta[..., None] * pull  # [..., C, out]
        # per block, split once (the backward of a split is one concatenation, of a slice a
        # zero-filled copy of the whole tensor)
        self.bases, self.scales = base.split(sizes, -2), scale.split(sizes, -2)
        self.before: list[Tensor | None] = []  # U at the start of every block
        self.ds: list[Tensor] = []  # the write vectors d_t of every block [..., c, out]
        u = None
        for (a, b, since, tail), weights, base_b, scale_b, right, beta_b in zip(
            decay.blocks(self.spans), decay.solve_weights(self.spans, beta, scale), self.bases, self.scales,
            rhs.split(sizes, -2), beta.split(sizes, -1)
        ):
            if u is not None:  # the earlier blocks' writes, seen through this block's keys
                right = right - (beta_b * since)[..., None] * scale_b * (base_b @ _t(u))
            # A = weights * the Gram matrix of the inputs (ChunkDecay.solve_weights, shared
            # by the layers). d^T (I + A)^T = rhs^T: the same solve, which LAPACK takes without
            # copying either operand into column-major order (2.4x faster than the left-hand
            # form on the CPU)
            d = torch.linalg.solve_triangular(
                (weights * (base_b @ _t(base_b))).mT, right.mT, upper=True, left=False, unitriangular=True
            ).mT  # [..., b - a, out]
            self.before.append(u)
            written = _t(d * (tail[..., None] * scale_b)) @ base_b
            u = written if u is None else since[..., -1:, None] * u + written
            self.ds.append(d)
        self.written = u  # the chunk's writes: D after the chunk minus gamma_C D_0

    def forgotten(self) -> Tensor:
        """gamma_C D_0: D after the chunk's forgetting alone."""
        return self.decay.gamma[..., -1:, None] * self.d0

    def final(self) -> Tensor:
        """D after the chunk."""
        return self.forgotten() + self.written

    def read_before(self, r: Tensor, box: int) -> Tensor:
        """D_t-1 r_t of memory `box` for every token t: r [B, H, C, in] -> [B, H, C, out]."""
        cum = self.decay.cum[:, box]
        prev = cum - self.decay.log_alpha[:, box]  # log gamma_t-1
        ratios = self.decay.read_ratios(self.spans, box)
        parts = []
        for (a, b), part, ratio, u, base, scale, d in zip(
            self.spans, r.split([b - a for a, b in self.spans], -2), ratios, self.before, self.bases, self.scales,
            self.ds,
        ):
            weights = ratio * ((part @ _t(base[:, box])) * _t(scale[:, box]))
            inside = weights @ d[:, box]
            if u is not None:
                carry = (prev[..., a:b] - cum[..., a - 1 : a]).exp()  # gamma_t-1 / gamma_a-1
                inside = inside + carry[..., None] * (part @ _t(u[:, box]))
            parts.append(inside)
        inside = torch.cat(parts, dim=-2) if len(parts) > 1 else parts[0]
        return prev.exp()[..., None] * (r @ _t(self.d0[:, box])) + inside


class Targets(NamedTuple):
    """What chunk_targets computes for write_chunk and the safeguard.

    Per layer, the write's keys kappa_t = inputs * scale: inputs [B, NB, H, C, in] (the
    layer's input u_t: k_t, or gelu(p_t) for an MLP's second layer; k_t is shared by
    every memory, [B, 1, H, C, dh]) and scale [B, NB, H, C, 1] (1 / sqrt(n_t)); pulls
    [B, NB, H, C, out]: W_c kappa_t minus the rule's target (tau_t for gd, tau_t / 2 for
    dgd), so that one token's step at W_c is W_c - beta pull kappa^T: g_t / sqrt(n_t) for
    gd and (W_c u_t + g_t) / (2 sqrt(n_t)) for dgd. loss [B, NB, H, C]; target v_hat per
    memory and token [B, NB, H, C, dh] at W_c; pre: an MLP's first-layer pre-activations
    at the keys, W2_c k_t [B, NB, H, C, hidden] (the safeguard's start), None for linear.
    """

    inputs: tuple[Tensor, ...]
    scale: Tensor
    pulls: tuple[Tensor, ...]
    loss: Tensor
    target: Tensor
    pre: Tensor | None


def chunk_targets(layers: tuple[Tensor, ...], k: Tensor, v: Tensor, cfg: TitanConfig) -> Targets:
    """naive.write_targets for every memory and token (shapes in Targets); layers
    [B, NB, H, out, in] (W_c), k, v [B, H, C, dh].

    With memory_target "value" the memory box's own M(v) is never computed."""
    k1, v1 = k.unsqueeze(1), v.unsqueeze(1)  # [B, 1, H, C, dh]
    own = slice(None, -1) if cfg.memory_target == "value" else slice(None)  # memories reading M(v)
    if len(layers) == 2:
        w2, w1 = layers
        pk = k1 @ _t(w2)  # [B, NB, H, C, hidden]
        target = v1 + gelu(v1 @ _t(w2[:, own])) @ _t(w1[:, own])  # M_box(v) [B, NB(-1), H, C, dh]
    else:
        (s,) = layers
        sk = k1 @ _t(s)  # [B, NB, H, C, dh]
        target = v1 @ _t(s[:, own])
    if cfg.memory_target == "value":
        target = torch.cat([target, v1], dim=1)
    kk = _square_norm(k1)
    if len(layers) == 2:
        u = gelu(pk)
        w1u = u @ _t(w1)
        e = k1 + w1u - target
        g2 = gelu_grad_times(e @ w1, pk)  # J^T e
        ee = _square_norm(e)
        along = _square_norm(g2) / (ee + NORM_EPS)  # |J^T e|^2 / |e|^2
        n = torch.maximum(kk, _square_norm(u) + kk * along)
        inputs, outputs, signals, pre = (k1, u), (pk, w1u), (g2, e), pk
    else:
        e = sk - target
        ee = _square_norm(e)
        n = kk.expand_as(ee)
        inputs, outputs, signals, pre = (k1,), (sk,), (e,), None
    scale = n.clamp_min(NORM_EPS).rsqrt()
    if cfg.update_rule == "dgd":
        pulls = tuple((w + g) * (scale / 2) for w, g in zip(outputs, signals))
    else:
        pulls = tuple(g * scale for g in signals)
    return Targets(inputs, scale, pulls, 0.5 * ee[..., 0], target, pre)


def write_chunk(
    layers: tuple[Tensor, ...],
    init: tuple[Tensor, ...],
    found: Targets,
    eta: Tensor,
    log_alpha: Tensor,
    cfg: TitanConfig,
    block: int | None = None,
) -> tuple[tuple[Tensor, ...], list[DeltaChunk]]:
    """Every layer's chunk of writes, in the state's dtype (fp32 even under autocast).

    layers [B, NB, H, out, in] (W_c); init [NB, H, out, in] (M_0); found from
    chunk_targets; eta, log_alpha [B, NB, H, C]. Returns W' (the state after the chunk's
    per-token steps, before any safeguard) and the chunks. block: tokens per block of
    the solve (DeltaChunk), BLOCK when None.
    """
    block = BLOCK if block is None else block
    factor = 2.0 if cfg.update_rule == "dgd" else 1.0
    with torch.autocast(layers[0].device.type, enabled=False):
        dtype = layers[0].dtype
        beta, decay = (factor * eta).to(dtype), ChunkDecay(log_alpha.to(dtype))
        scale = found.scale.to(dtype)
        chunks, new = [], []
        for w, w0, base, pull in zip(layers, init, found.inputs, found.pulls):
            w0 = w0.to(dtype)
            chunk = DeltaChunk(w - w0, base.to(dtype), scale, pull.to(dtype), beta, decay, block)
            chunks.append(chunk)
            new.append(w0 + chunk.final())
    return tuple(new), chunks


class PendingWrite(NamedTuple):
    """An MLP chunk's write waiting for its safeguard (naive.guard_write), every memory at once.

    forgotten: F = M_0 + gamma_C (W_c - M_0), the state the chunk's forgetting alone
    leaves, and writes: Delta = W' - F, per layer [B, NB, H, out, in]; k [B, H, C, dh] the
    chunk's keys and target [B, NB, H, C, dh] its targets at W_c; pre F2 k_t, the first
    layer's pre-activations at F [B, NB, H, C, hidden]. k, target and pre carry no
    gradient: they only choose the step size.
    """

    forgotten: tuple[Tensor, ...]
    writes: tuple[Tensor, ...]
    k: Tensor
    target: Tensor
    pre: Tensor


def pending_write(chunks: list[DeltaChunk], init: tuple[Tensor, ...], found: Targets, k: Tensor) -> PendingWrite:
    """The safeguard's inputs from an MLP chunk's writes: F2 k_t = W2_c k_t - (1 - gamma_C)
    D2_0 k_t reuses the products of the targets and the write."""
    first = chunks[0]
    with torch.no_grad():
        pre = found.pre - first.decay.spent[..., -1:, None] * first.base_d0
    return PendingWrite(
        tuple(w0 + c.forgotten() for w0, c in zip(init, chunks)),
        tuple(c.written for c in chunks),
        k.detach(),
        found.target.detach(),
        pre,
    )


@torch.no_grad()
def guard_scale(pending: PendingWrite, init: tuple[Tensor, ...]) -> Tensor:
    """The largest s in GUARD_SCALES (else 0) that raises neither the written pairs' error
    nor any layer's distance from M_0 past the trust region: [B, NB, H].

    The scales are tried largest first; on the CPU the smaller ones only while some
    memory still has none (one sync per chunk, free there; a GPU tries them all, no
    sync). |F - M_0 + s Delta|^2 is expanded in s, so each scale's trust region costs
    three numbers per layer, not a copy of the weights. The residual's constant part
    k_t - v_hat_t is made once and added inside the product (baddbmm): 94 -> 81 ms at a
    planning step's shapes (100 candidates x 6 memories x 2 heads, 66 tokens; 1 thread,
    side by side). It runs eager: compiled, it took
    3% off the compiled memory's forward + backward (1 thread, hope_multihead's memory,
    8 frames), for a second compilation and a graph break at the early stop.
    """
    (f2, f1), (d2, d1) = pending.forgotten, pending.writes
    dtype = f2.dtype
    k1 = pending.k.unsqueeze(1).to(dtype)  # [B, 1, H, C, dh]
    pre = pending.pre.to(dtype)
    batch = pre.shape[:-2]
    # M(k_t) - v_hat_t = W1 act_t - (v_hat_t - k_t): the residual's constant part once, and
    # the product adds it in the GEMM (baddbmm) over the flattened memories
    rest = (k1 - pending.target.to(dtype)).reshape(-1, *k1.shape[-2:])  # [B NB H, C, dh]

    def error(act: Tensor, w1: Tensor) -> Tensor:  # sum over the chunk of 1/2 |M(k_t) - v_hat_t|^2
        e = torch.baddbmm(rest, act.reshape(-1, *act.shape[-2:]), _t(w1.reshape(-1, *w1.shape[-2:])))
        return 0.5 * e.square().sum((-1, -2)).view(batch)

    start = error(gelu(pre), f1)  # [B, NB, H]
    moved = k1 @ _t(d2)  # Delta2 k_t [B, NB, H, C, hidden]
    terms = []
    for f, d, w0 in zip((f2, f1), (d2, d1), init):
        a = f - w0.to(dtype)
        terms.append((a.square().sum((-1, -2)), 2 * (a * d).sum((-1, -2)), d.square().sum((-1, -2)),
                      TRUST_RADIUS**2 * f.shape[-2]))
    chosen = torch.zeros_like(start)
    undecided = torch.ones_like(start, dtype=torch.bool)
    for scale in GUARD_SCALES:
        ok = undecided & (error(gelu(torch.add(pre, moved, alpha=scale)), torch.add(f1, d1, alpha=scale)) <= start)
        for aa, ad, dd, radius in terms:
            ok = ok & (aa + scale * ad + scale * scale * dd <= radius)
        chosen = torch.where(ok, scale, chosen)
        undecided = undecided & ~ok
        if k1.device.type == "cpu" and not bool(undecided.any()):
            break
    return chosen


def guard_write(pending: PendingWrite, init: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    """The state an MLP chunk carries out: F + s Delta, s from guard_scale (differentiable in
    F and Delta; s itself is a choice)."""
    scale = guard_scale(pending, init)[..., None, None]
    return tuple(f + scale * d for f, d in zip(pending.forgotten, pending.writes))


def read_memory_box(chunks: list[DeltaChunk], init: tuple[Tensor, ...], q: Tensor) -> Tensor:
    """o_t = M_memory,t-1(q_t) through the memory box's chunk, layer by layer: q [B, H, C, dh]."""
    with torch.autocast(q.device.type, enabled=False):
        dtype = chunks[0].d0.dtype
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
    keep: bool = True,
) -> tuple[Tensor, tuple[Tensor, ...] | PendingWrite | None, tuple[Tensor, Tensor, Tensor] | None, Tensor | None]:
    """One chunk x [B, C, D] from W_c = layers; returns y [B, C, D], W_c+1 (an MLP
    memory's write as a PendingWrite, which guard_write settles outside the step, so
    that a recomputed chunk does not choose again), detached stats and the short
    convolutions' history after the chunk (None without them).

    keep False: nothing after this chunk reads the state, so of the writes only the memory
    box's is made, the one its output reads inside the chunk (the other five memories are
    read at W_c); W_c+1 and the stats are None. The output is the same.

    tensors: the state's layers [B, NB, H, out, in], then M_0's [NB, H, out, in].
    """
    layers, init = tensors[: len(tensors) // 2], tensors[len(tensors) // 2 :]
    batch, size, dim = x.shape
    heads, head_dim = cfg.heads, cfg.head_dim
    nb = len(cfg.boxes)
    xh = F.normalize(x.reshape(batch, size, heads, head_dim), dim=-1).transpose(1, 2)  # [B, H, C, dh]

    # readouts of x_t by M_k, M_v (and M_q), and the rates from M_eta, M_alpha, all at W_c
    read = nb - 3  # the memories read in full
    r = _read(tuple(w[:, :read] for w in layers), xh.unsqueeze(1))  # [B, 2 or 3, H, C, dh]
    logits = _rate_logits(tuple(w[:, read:-1] for w in layers), xh, torch.stack([eta_proj, alpha_proj]))
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
    eta = cfg.eta_bound * torch.sigmoid(logits[:, 0] + eta_bias[..., None])  # [B, NB, H, C]
    log_alpha = F.logsigmoid(logits[:, 1] + alpha_bias[..., None])  # [B, NB, H, C]
    if update and not keep:  # the memory box's write alone (docstring)
        layers, init = tuple(w[:, -1:] for w in layers), tuple(w[-1:] for w in init)
        eta, log_alpha = eta[:, -1:], log_alpha[:, -1:]
    found = chunk_targets(layers, k, v, cfg)

    if update:
        new, chunks = write_chunk(layers, init, found, eta, log_alpha, cfg)
        y = read_memory_box(chunks, init, q)
        if cfg.kind == "mlp" and keep:
            new = pending_write(chunks, init, found, k)
    else:
        new = layers
        y = _read(tuple(w[:, -1] for w in layers), q)  # [B, H, C, dh]
    y = y.transpose(1, 2).reshape(batch, size, dim)
    if not keep:
        return y, None, None, None
    stats = tuple(t.detach().transpose(0, 1).reshape(nb, -1) for t in (eta, log_alpha.exp(), found.loss))
    return y, new, stats, history


# A compiled chunk that is recomputed in the backward keeps the outputs of its triangular
# solves and of its products over an inner dimension of at least SAVE_INNER (the Gram
# matrices and reads over an MLP memory's hidden units, the writes summed over a block's
# tokens), and recomputes the rest: products over a head's width and elementwise work,
# which the compiled graph fuses. Measured on hope_multihead's memory (bench/peers.py, 1
# thread, batch 1 x 8 frames of 258 tokens, compiled, one run): forward + backward 0.445 s
# per memory instead of 0.505 s for recomputing everything (0.388 s keeping everything),
# keeping 30 MB a chunk and sample instead of 6.4 (155.6). Eager, the same choice saved no
# time (0.630 against 0.627 s side by side: there the recomputation's cost is its
# elementwise work), so an eager chunk is recomputed whole. Inductor's on-disk caches do not
# key on this choice (a changed policy found the graphs of the old one): time a change with
# an empty HOPE_CACHE_DIR.
SAVE_INNER = 128
_aten = torch.ops.aten


def _keep_for_backward(ctx, op, *args, **kwargs) -> CheckpointPolicy:
    """The selective recomputation's choice for one op (SAVE_INNER)."""
    if op is _aten.linalg_solve_triangular.default:
        return CheckpointPolicy.MUST_SAVE
    if op in (_aten.bmm.default, _aten.mm.default) and args[0].shape[-1] >= SAVE_INNER:
        return CheckpointPolicy.MUST_SAVE
    return CheckpointPolicy.PREFER_RECOMPUTE


def _step(*args: Tensor | None, selective: bool = False, **kwargs):
    """_chunk_step, or with `selective` the same step recomputed in the backward keeping
    what _keep_for_backward keeps (the compiled path's recomputation)."""
    if not selective:
        return _chunk_step(*args, **kwargs)
    context = partial(create_selective_checkpoint_contexts, _keep_for_backward)
    return checkpoint(_chunk_step, *args, use_reentrant=False, context_fn=context, **kwargs)


COMPILED_STEP = CompiledStep(_step)  # torch.compile where compiled.py's policy says


def titan_chunked(
    x: Tensor,
    state: TitanState,
    gates: TitanGates,
    cfg: TitanConfig,
    *,
    chunk_size: int,
    update: bool,
    keep_state: bool = True,
) -> tuple[Tensor, TitanState | None, dict[str, Tensor]]:
    """Same signature and result as naive.titan_naive, batched over memories, heads and batch.

    keep_state False: the caller does not need the state after x (the last step of a
    planning rollout), so the last chunk makes only the writes its output reads
    (_chunk_step's keep); the state and the diagnostics come back None and empty."""
    length = x.shape[1]
    # the initial state is M_0 expanded over the batch (stride 0); one layout for every
    # chunk keeps the compiled step from compiling a second time for the first chunk
    layers = tuple(w.contiguous() for w in state.layers)
    x = x.to(layers[0].dtype)
    step = partial(COMPILED_STEP, cfg=cfg, update=update, dilation=gates.dilation)
    recompute = cfg.checkpoint_chunks and torch.is_grad_enabled()
    # compiled, a recomputed chunk is recomputed inside the graph (cfg.recompute, SAVE_INNER)
    selective = recompute and cfg.recompute == "selective" and COMPILED_STEP.will_compile(x.device)
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
            if not keep_state and update and start + chunk_size >= length:
                ys.append(step(*args, keep=False)[0])
                return torch.cat(ys, dim=1), None, {}
            if recompute and not selective:
                y, new, stats, history = checkpoint(step, *args, use_reentrant=False)
            else:
                y, new, stats, history = step(*args, selective=selective)
            if isinstance(new, PendingWrite):
                new = guard_write(new, gates.initial_layers)
            diag.add_rates(*stats)
            diag.add_update(layers, new)
            layers = tuple(new)
            ys.append(y)
    step_count = state.step + length if update else state.step
    return torch.cat(ys, dim=1), TitanState(layers, step_count, history), diag.result(layers)
