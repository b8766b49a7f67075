"""Fast Titan memory: the chunk semantics of naive.py with one batched product per step.

Per chunk, every memory x head x sample works in the same matmul: the weights of all
memories are stacked into TitanState.layers [B, NB, H, out, in], so there is no Python
loop over memories, heads or batch, only over chunks. The inner backward is written out
(no autograd inside the forward) and evaluated for all tokens of the chunk at once:

    gd reads the keys at alpha_t W_c by scaling per token: p = alpha_t W2 k,
    out = k + alpha_t W1 gelu(p), which equals the memory with weights alpha_t W_c;
    dgd's preconditioner term W_c u u^T reuses products already at hand
    (W2 k = p, W1 gelu(p) = out - k, S k), so it costs no extra matmul;
    sum_t (prod_{s>t} alpha_s) eta_t T_t is one matmul per layer, since every T_t is
    an outer product g_t u_t^T.

The state stays in its own dtype (fp32); under autocast the products run in the autocast
dtype and their results are added to the fp32 state. With config.checkpoint_chunks each
chunk is recomputed in the backward (torch.utils.checkpoint) instead of storing its
activations.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from hopecli.model.memory.activation import gelu, gelu_grad
from hopecli.model.memory.config import TitanConfig
from hopecli.model.memory.diagnostics import DiagnosticsAccumulator
from hopecli.model.memory.state import TitanGates, TitanState


def _t(w: Tensor) -> Tensor:
    return w.transpose(-1, -2)


def _read(layers: tuple[Tensor, ...], z: Tensor) -> Tensor:
    """M(z) for stacked memories: layers [..., out, in], z [..., C, head_dim] (broadcast)."""
    if len(layers) == 2:
        w2, w1 = layers
        return z + gelu(z @ _t(w2)) @ _t(w1)
    (s,) = layers
    return z @ _t(s)


def _chunk_step(
    x: Tensor,
    eta_proj: Tensor,
    eta_bias: Tensor,
    alpha_proj: Tensor,
    alpha_bias: Tensor,
    q_weight: Tensor | None,
    *layers: Tensor,
    cfg: TitanConfig,
    update: bool,
) -> tuple[Tensor, tuple[Tensor, ...], tuple[Tensor, Tensor, Tensor]]:
    """One chunk x [B, C, D] read at W_c = layers; returns y [B, C, D], W_c+1, detached stats."""
    batch, size, dim = x.shape
    heads, head_dim = cfg.heads, cfg.head_dim
    nb = len(cfg.boxes)
    xh = x.reshape(batch, size, heads, head_dim).transpose(1, 2)  # [B, H, C, dh]

    # readouts of x_t by every memory but M_memory, all at W_c
    r = _read(tuple(w[:, :-1] for w in layers), xh.unsqueeze(1))  # [B, NB-1, H, C, dh]
    k = F.normalize(r[:, 0], dim=-1)  # [B, H, C, dh]
    v = F.normalize(r[:, 1], dim=-1)
    if q_weight is None:
        q = r[:, 2]
    else:
        q = (x @ _t(q_weight)).view(batch, size, heads, head_dim).transpose(1, 2)
    q = F.normalize(q, dim=-1)
    eta_logit = torch.einsum("bhcd,nhd->bnhc", r[:, -2], eta_proj) + eta_bias[..., None]
    alpha_logit = torch.einsum("bhcd,nhd->bnhc", r[:, -1], alpha_proj) + alpha_bias[..., None]
    eta = cfg.eta_max * torch.sigmoid(eta_logit)  # [B, NB, H, C]
    log_alpha = F.logsigmoid(alpha_logit)  # [B, NB, H, C]
    alpha = log_alpha.exp()
    y = _read(tuple(w[:, -1] for w in layers), q)  # [B, H, C, dh]
    y = y.transpose(1, 2).reshape(batch, size, dim)

    # every memory on the keys (inner loss) and on the values (its own targets v_hat)
    k1 = k.unsqueeze(1)  # [B, 1, H, C, dh]
    kv = torch.cat([k, v], dim=-2).unsqueeze(1)  # [B, 1, H, 2C, dh]
    a = alpha[..., None] if cfg.update_rule == "gd" else 1.0  # weights alpha_t W_c for gd
    if len(layers) == 2:
        w2, w1 = layers
        p = kv @ _t(w2)  # [B, NB, H, 2C, hidden]
        pk, pv = p.split(size, dim=-2)
        target = v.unsqueeze(1) + gelu(pv) @ _t(w1)  # [B, NB, H, C, dh]
        pk = a * pk
        u = gelu(pk)
        w1u = u @ _t(w1)
        e = k1 + a * w1u - target  # dl/d out
        d2 = a * (e @ w1) * gelu_grad(pk)  # dl/d p
        grads_out = (d2, e)  # per layer (w2, w1)
        inputs = (k1, u)
        if cfg.update_rule == "dgd":  # + W_c u u^T: W2 k = p, W1 gelu(W2 k) = w1u
            grads_out = (d2 + pk, e + w1u)
    else:
        (s,) = layers
        sk, target = (kv @ _t(s)).split(size, dim=-2)  # [B, NB, H, C, dh] each
        e = a * sk - target
        grads_out = (e + sk,) if cfg.update_rule == "dgd" else (e,)
        inputs = (k1,)
    loss = 0.5 * e.square().sum(-1)  # [B, NB, H, C]

    if update:
        total = log_alpha.sum(-1, keepdim=True)  # [B, NB, H, 1]
        coef = (eta * (total - log_alpha.cumsum(-1)).exp())[..., None]  # eta_t prod_{s>t} alpha_s
        gamma = total.exp()[..., None]  # [B, NB, H, 1, 1]
        new = tuple(
            gamma * w - (_t(coef * g) @ u).to(w.dtype) for w, g, u in zip(layers, grads_out, inputs)
        )
    else:
        new = layers
    stats = tuple(t.detach().transpose(0, 1).reshape(nb, -1) for t in (eta, alpha, loss))
    return y, new, stats


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
    layers = state.layers
    x = x.to(layers[0].dtype)
    step = partial(_chunk_step, cfg=cfg, update=update)
    recompute = cfg.checkpoint_chunks and torch.is_grad_enabled()
    gate_args = (gates.eta_proj, gates.eta_bias, gates.alpha_proj, gates.alpha_bias, gates.q_weight)
    diag = DiagnosticsAccumulator(cfg.boxes)
    ys = []
    for start in range(0, length, chunk_size):
        args = (x[:, start : start + chunk_size], *gate_args, *layers)
        if recompute:
            y, new, stats = checkpoint(step, *args, use_reentrant=False)
        else:
            y, new, stats = step(*args)
        diag.add_rates(*stats)
        diag.add_update(layers, new)
        layers = tuple(new)
        ys.append(y)
    step_count = state.step + length if update else state.step
    return torch.cat(ys, dim=1), TitanState(layers, step_count), diag.result(layers)
