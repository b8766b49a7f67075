"""Reference Titan memory: a plain fp32 loop over tokens and memories (the specification).

Reads. The L tokens are cut into chunks of `chunk_size` tokens (the last one may be
shorter). Let W_c be the weights of every memory when chunk c starts and M_0 the
meta-learned initial weights. Every token t of the chunk is first normalised per head,
x_t <- x_t / ||x_t|| (the memories learn on unit-norm keys and values, so they read
unit-norm inputs too), and then generates its write with W_c:

    k_t = norm(M_k(x_t)),  v_t = norm(M_v(x_t)),  q_t = norm(M_q(x_t))  (or norm(W_q x_t)),
    eta_t,box,h   = eta_max * sigmoid(<eta_proj[box,h],   M_eta(x_t)_h>   + eta_bias[box,h]),
    alpha_t,box,h = sigmoid(<alpha_proj[box,h], M_alpha(x_t)_h> + alpha_bias[box,h]),
    v_hat_box,t = M_box(v_t)   (each memory's own target; with memory_target "value" the
                               memory box learns v_t itself),

where norm is the L2 norm per head. With short convolutions (conv.py) the raw readouts
M_q(x_t), M_k(x_t), M_v(x_t) are first replaced by silu(sum_j w_j r_{t - j d}) over the
same readouts of earlier tokens (each computed with its own chunk's W_c), before the
norm. The output o_t = M_memory,t-1(q_t) reads the memory
box as it is right before token t: the state after every earlier token, also those of
the same chunk. Chunk size 1 is the per-token recurrence.

Writes. Every layer of every memory takes a delta-rule step per token, with forgetting
that pulls the layer back toward its meta-learned self M_0 (not toward zero):

    W' = M_0 + alpha_t (W_t-1 - M_0),    W_t = W' - beta_t (W' kappa_t - tau_t) kappa_t^T.

kappa_t is the layer's normalised input and tau_t the output the layer should give it,
both from the linearisation of the inner loss l_t(W) = 1/2 ||M_W(k_t) - v_hat_t||^2 at
W_c. With the layer input u_t, the gradient signal g_t = dl_t / d(layer output) at W_c,
and one normaliser n_t per token and memory:

    kappa_t = u_t / sqrt(n_t),   tau_t = W_c kappa_t - g_t / sqrt(n_t),

so that at W' = W_c the step is W_c - beta_t g_t u_t^T / n_t: gradient descent with a
step normalised by the input (NLMS). The layers and their n_t:

    linear  M(z) = S z:              u = k,  g = e = S k - v_hat,            n = ||k||^2 (= 1)
    mlp     M(z) = z + W1 gelu(W2 z): W2: u = k,  g = J^T e,  J = W1 diag(gelu'(p)),  p = W2 k
                                      W1: u = gelu(p), g = e = M(k) - v_hat
                                      n = max(||k||^2, ||gelu(p)||^2 + ||k||^2 ||J^T e||^2 / ||e||^2)

For the MLP, n is the Gauss-Newton curvature of the memory's output in both layers'
weights along the error e (||u||^2 from W1, ||k||^2 ||J^T e||^2 / ||e||^2 from W2), so the
joint first-order step of the two layers removes exactly beta of the error along e: the
normalised step of the whole memory, not of each layer (which together would remove up
to twice that). The max with ||k||^2 keeps every layer's normalised key at most unit
length (n >= ||u||^2 for both layers), so each layer's sequence of steps inside a chunk
is a contraction. Measured (bench/icl.py, 16 pairs with 90%-shared keys, 8 one-frame
chunks, eta 0.5): the Frobenius bound ||J||_F^2 in place of the curvature along e made
the writes too small (MLP dgd 57% instead of 74% of the pair-specific error
removed); without the max, a memory whose gelu(W2 k) had died out (n -> 0) wrote W2 with
keys of norm 1 / sqrt(n) and blew up within two one-frame chunks (2e9); the unnormalised
step of the first version diverged once W2 had grown.

The rules differ in beta and tau:

    gd:  beta = eta,    target tau         (forget, then a delta step)
    dgd: beta = 2 eta,  target tau / 2     (delta gradient descent, Eq. 88 / 93: at W' the
         step W'(I - eta kappa kappa^T) - eta (W' kappa - tau) kappa^T, i.e. the
         preconditioner (I - eta kappa kappa^T) on the layer's input plus the gradient;
         its fixed point along a key is half the target)

Along its normalised key a layer's deviation from M_0 is scaled by alpha (1 - beta ||kappa||^2),
which lies in (-1, 1) for every eta <= 1 and both rules: no chunk size and no key
correlation can make the recurrence expand.

Why a chunk is exact. Inside a chunk, kappa_t, tau_t, beta_t and alpha_t are fixed
before any write (they come from W_c). The recurrence is then the gated delta rule on
D = W - M_0 with values tau_t - M_0 kappa_t,

    D_t = alpha_t D_t-1 (I - beta_t kappa_t kappa_t^T) + beta_t (tau_t - M_0 kappa_t) kappa_t^T,

which the chunked path evaluates for all tokens at once with one triangular solve (the
UT/WY form of chunk_gated_delta_rule) and which equals this loop at every chunk size.
For a linear memory kappa = k and tau = v_hat, so gd is exactly the gated delta rule
S_t = alpha_t S_t-1 (I - eta_t k_t k_t^T) + eta_t v_hat_t k_t^T + (1 - alpha_t) M_0 (I - eta_t k_t k_t^T)
(the last term is the pull toward M_0; with M_0 = 0 it is GatedDeltaNet's rule, and with
memory_target "value" v_hat = v_t). For an MLP memory only the linearisation point is
shared by a chunk: each layer's chunk write is the exact sequence of normalised per-token
steps of that layer with its inputs fixed, preconditioned by the chunk's own key Gram
matrix through the solve, so C correlated keys cannot pile C steps onto one direction.

The safeguard of MLP writes. A chunk linearised at W_c can overshoot once both layers
move toward its targets, and a memory that learns its own readout M(v) from a residual
MLP is pulled to cancel the identity, so its weights grow without bound under gd
(measured: |W - M_0| / |M_0| 0.8 -> 4.6 -> 21 -> 1e6 by frames 1, 8, 16, 31, one-frame
chunks, 3 of 3 seeds). Every MLP memory therefore keeps its chunk's write only as far as
it helps. With W' the state the chunk's per-token steps reach, F = M_0 + gamma (W_c - M_0)
the state its forgetting alone would leave (gamma the product of the chunk's alphas) and
Delta = W' - F its writes, the state carried to the next chunk is F + s Delta for the
largest s in GUARD_SCALES (else s = 0) such that

    sum_t l_t(F + s Delta) <= sum_t l_t(F)           (the written pairs' error, targets at W_c)
    |F + s Delta - M_0|_F <= TRUST_RADIUS sqrt(out)  (every layer: a trust region around M_0)

per sample, memory and head. So no write raises the memory's error on what it wrote, and
no stream can carry a memory further than the trust region from its meta-learned
self. The reads inside the chunk see the per-token steps (a token's read cannot depend
on later tokens); the guard acts on the state carried out of the chunk. Linear memories
need no guard: their chunk write is the exact per-token recurrence on fixed targets.

Nothing is detached: the outer loss differentiates through every write, the targets and
the normalisers included, back to M_0 and the rate read-outs.

Shapes: x [B, L, D] -> y [B, L, D]; TitanState.layers as documented there; the inner
tensors of one token are [B, H, head_dim] per memory, its rates [B, NB, H].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from hopecli.model.memory.activation import gelu, gelu_grad
from hopecli.model.memory.config import GUARD_SCALES, TRUST_RADIUS, TitanConfig
from hopecli.model.memory.diagnostics import DiagnosticsAccumulator
from hopecli.model.memory.state import TitanGates, TitanState

NORM_EPS = 1e-12  # floor of n_t (a key of norm 0)


def _matvec(w: Tensor, z: Tensor) -> Tensor:
    return torch.einsum("bhij,bhj->bhi", w, z)


def _outer(a: Tensor, b: Tensor) -> Tensor:
    return torch.einsum("bhi,bhj->bhij", a, b)


def memory_read(weights: tuple[Tensor, ...], z: Tensor) -> Tensor:
    """M(z) of one memory: weights [B, H, out, in] each (w2, w1 or s), z [B, H, head_dim]."""
    if len(weights) == 2:
        w2, w1 = weights
        return z + _matvec(w1, gelu(_matvec(w2, z)))
    (s,) = weights
    return _matvec(s, z)


def write_targets(
    weights: tuple[Tensor, ...], k: Tensor, target: Tensor, rule: str
) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...], Tensor, Tensor]:
    """One token's write into one memory, linearised at `weights` (module docstring).

    weights [B, H, out, in] each; k, target [B, H, head_dim]. Returns per layer the
    normalised key kappa [B, H, in] and the rule's target [B, H, out] (tau, or tau / 2
    for dgd), the rule's beta factor (1 or 2) and the inner loss [B, H].
    """
    if len(weights) == 2:
        w2, w1 = weights
        p = _matvec(w2, k)
        u = gelu(p)
        w1u = _matvec(w1, u)
        e = k + w1u - target
        slope = gelu_grad(p)
        g2 = torch.einsum("bhij,bhi->bhj", w1, e) * slope
        along = g2.square().sum(-1) / (e.square().sum(-1) + NORM_EPS)  # |J^T e|^2 / |e|^2
        kk = k.square().sum(-1)
        n = torch.maximum(kk, u.square().sum(-1) + kk * along).clamp_min(NORM_EPS)
        r = n.rsqrt()[..., None]
        keys, taus = (k * r, u * r), ((p - g2) * r, (w1u - e) * r)
    else:
        (s,) = weights
        sk = _matvec(s, k)
        e = sk - target
        r = k.square().sum(-1).clamp_min(NORM_EPS).rsqrt()[..., None]
        keys, taus = (k * r,), ((sk - e) * r,)
    beta_factor = 2.0 if rule == "dgd" else 1.0
    taus = tuple(t / beta_factor for t in taus)
    return keys, taus, beta_factor, 0.5 * e.square().sum(-1)


def delta_step(w: Tensor, w0: Tensor, key: Tensor, target: Tensor, beta: Tensor, alpha: Tensor) -> Tensor:
    """W' = M_0 + alpha (W - M_0), then W' - beta (W' key - target) key^T.

    w [B, H, out, in], w0 [H, out, in], key [B, H, in], target [B, H, out], beta, alpha [B, H].
    """
    forgotten = w0 + alpha[..., None, None] * (w - w0)
    err = _matvec(forgotten, key) - target
    return forgotten - beta[..., None, None] * _outer(err, key)


def guard_write(before: tuple[Tensor, ...], after: tuple[Tensor, ...], m0: tuple[Tensor, ...],
                keys: list[Tensor], targets: list[Tensor]) -> tuple[Tensor, ...]:
    """The safeguard of one MLP memory's chunk write (module docstring).

    before (F, the chunk's forgetting alone), after (W') [B, H, out, in] each; m0
    [H, out, in] each; keys, targets: the chunk's tokens, [B, H, dh] each.
    """
    def error(weights):
        return sum(0.5 * (memory_read(weights, k) - v).square().sum(-1) for k, v in zip(keys, targets))

    start = error(before)
    chosen = torch.zeros_like(start)  # [B, H]
    for scale in reversed(GUARD_SCALES):  # the largest passing scale is set last
        trial = tuple(b + scale * (a - b) for b, a in zip(before, after))
        ok = error(trial) <= start
        for w, w0 in zip(trial, m0):
            ok = ok & ((w - w0).square().sum((-1, -2)).sqrt() <= TRUST_RADIUS * w.shape[-2] ** 0.5)
        chosen = torch.where(ok, torch.full_like(chosen, scale), chosen)
    return tuple(b + chosen[..., None, None] * (a - b) for b, a in zip(before, after))


def titan_naive(
    x: Tensor,
    state: TitanState,
    gates: TitanGates,
    cfg: TitanConfig,
    *,
    chunk_size: int,
    update: bool,
    keep_state: bool = True,
) -> tuple[Tensor, TitanState | None, dict[str, Tensor]]:
    """Readouts y [B, L, D], the state after the sequence, diagnostics (module docstring);
    keep_state False returns None and no diagnostics in their place (the readouts are the
    same: the reference computes every write anyway)."""
    batch, length, _ = x.shape
    heads, head_dim = cfg.heads, cfg.head_dim
    boxes = cfg.boxes
    diag = DiagnosticsAccumulator(boxes)
    with torch.autocast(x.device.type, enabled=False):
        dtype = state.layers[0].dtype
        x = F.normalize(x.to(dtype).reshape(batch, length, heads, head_dim), dim=-1)
        init = [tuple(w[i].to(dtype) for w in gates.initial_layers) for i in range(len(boxes))]
        layers = state.layers
        history = None if state.conv is None else list(state.conv.to(dtype).unbind(3))
        ys = []
        for start in range(0, length, chunk_size):
            base = [tuple(w[:, i] for w in layers) for i in range(len(boxes))]  # W_c per memory
            running = list(base)
            written = [([], []) for _ in boxes]  # keys and targets of the chunk, per memory
            kept = torch.ones(batch, len(boxes), heads, dtype=dtype, device=x.device)  # prod of alphas
            for t in range(start, min(start + chunk_size, length)):
                xt = x[:, t]  # [B, H, dh]
                read = {box: memory_read(base[i], xt) for i, box in enumerate(boxes) if box != "memory"}
                if cfg.static_q:
                    read["q"] = (xt.reshape(batch, -1) @ gates.q_weight.T).reshape(batch, heads, head_dim)
                if history is not None:  # short convolutions: tap j reads `dilation` x j tokens back
                    history.append(torch.stack([read["q"], read["k"], read["v"]], dim=1))  # [B, 3, H, dh]
                    mixed = sum(gates.conv_weight[None, :, j] * history[-1 - j * gates.dilation]
                                for j in range(cfg.conv_size))
                    read["q"], read["k"], read["v"] = F.silu(mixed).unbind(1)
                k = F.normalize(read["k"], dim=-1)
                v = F.normalize(read["v"], dim=-1)
                q = F.normalize(read["q"], dim=-1)
                eta_logit = torch.einsum("bhd,nhd->bnh", read["eta"], gates.eta_proj) + gates.eta_bias
                alpha_logit = torch.einsum("bhd,nhd->bnh", read["alpha"], gates.alpha_proj) + gates.alpha_bias
                eta = cfg.eta_bound * torch.sigmoid(eta_logit)  # [B, NB, H]
                alpha = torch.sigmoid(alpha_logit)  # [B, NB, H]
                ys.append(memory_read(running[-1], q).reshape(batch, -1))
                losses = []
                for i, box in enumerate(boxes):
                    if box == "memory" and cfg.memory_target == "value":
                        target = v
                    else:
                        target = memory_read(base[i], v)
                    keys, taus, factor, loss = write_targets(base[i], k, target, cfg.update_rule)
                    written[i][0].append(k)
                    written[i][1].append(target)
                    running[i] = tuple(
                        delta_step(w, w0, key, tau, factor * eta[:, i], alpha[:, i])
                        for w, w0, key, tau in zip(running[i], init[i], keys, taus)
                    )
                    losses.append(loss)
                kept = kept * alpha
                diag.add_rates(
                    eta.transpose(0, 1).reshape(len(boxes), -1),
                    alpha.transpose(0, 1).reshape(len(boxes), -1),
                    torch.stack(losses).reshape(len(boxes), -1),
                )
                if not update:
                    running = list(base)
            if update:
                if cfg.kind == "mlp":
                    forgotten = [tuple(w0 + kept[:, i, :, None, None] * (w - w0) for w, w0 in zip(base[i], init[i]))
                                 for i in range(len(boxes))]
                    running = [guard_write(forgotten[i], running[i], init[i], *written[i]) for i in range(len(boxes))]
                new = tuple(torch.stack([r[j] for r in running], dim=1) for j in range(len(layers)))
            else:
                new = layers
            diag.add_update(layers, new)
            layers = new
        y = torch.stack(ys, dim=1)  # [B, L, D]
    step = state.step + length if update else state.step
    conv = None
    if history is not None:  # the last W raw readouts, whether or not the memories wrote
        width = state.conv.shape[3]
        conv = torch.stack(history[len(history) - width :], dim=3) if width else state.conv
    if not keep_state:
        return y, None, {}
    return y, TitanState(layers, step, conv), diag.result(layers)
