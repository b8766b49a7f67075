"""Reference Titan memory: a plain fp32 loop over tokens and memories (the specification).

Chunk semantics (both implementations compute exactly this):

The L tokens are cut into chunks of `chunk_size` tokens (the last one may be shorter).
Let W_c be the weights of every memory when chunk c starts. Every token t of the chunk
reads with W_c only:

    k_t = norm(M_k(x_t)),  v_t = norm(M_v(x_t)),  q_t = norm(M_q(x_t))  (or norm(W_q x_t)),
    eta_t,box,h   = eta_max * sigmoid(<eta_proj[box,h],   M_eta(x_t)_h>   + eta_bias[box,h]),
    alpha_t,box,h = sigmoid(<alpha_proj[box,h], M_alpha(x_t)_h> + alpha_bias[box,h]),
    o_t = M_memory(q_t)                             (the output y_t),
    v_hat_box,t = M_box(v_t)                        (each memory's own target),

where norm is the L2 norm per head and every M_box reads with W_box,c. Values are
normalised like keys and queries: with self-generated targets v_t is a memory input
too, and a linear memory then steps by S <- S (alpha (I - eta k k^T) + eta v k^T),
whose eigenvalue alpha (1 - eta) + eta v.k can exceed 1 once v.k > 1; unnormalised
values made the recurrence blow up.

Each memory box then writes every token of the chunk with its own inner loss
l_t(W) = 1/2 ||M_W(k_t) - v_hat_box,t||^2. The target v_hat is a constant of the inner
step (its dependence on W is not differentiated), but it stays in the outer graph, as
every other quantity here does: nothing is detached. The update terms are all taken at
W_c, as the per-token rule would take them if the state before the token were W_c, and
are combined by running the rule's forgetting over the chunk:

    A_0 = W_c,   A_t = alpha_t A_{t-1} - eta_t T_t,   W_c+1 = A_last,
    gd:  T_t = grad l_t(alpha_t W_c)                       (forget, then step)
    dgd: T_t = W_c u_t u_t^T + grad l_t(W_c)    per layer, u_t the layer's input
         (k_t for W2 and S, gelu(W2 k_t) for W1)

so W_c+1 = (prod_t alpha_t) W_c - sum_t (prod_{s>t} alpha_s) eta_t T_t. With
chunk_size 1, W_c is the state right before the token and this is the per-token
recurrence: o_t reads M_t-1, then gd steps to M_t = alpha M_t-1 - eta grad l(alpha M_t-1)
and dgd to M_t = M_t-1 (alpha I - eta u u^T) - eta grad l(M_t-1) (Eq. 88; Eq. 93 for a
linear memory). For a linear memory, gd is the gated delta rule
S_t = alpha_t S_t-1 (I - eta_t k_t k_t^T) + eta_t v_hat_t k_t^T.

Shapes: x [B, L, D] -> y [B, L, D]; TitanState.layers as documented there; the inner
tensors of one token are [B, H, head_dim] per memory, its rates [B, NB, H].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from hopecli.model.memory.activation import gelu, gelu_grad
from hopecli.model.memory.config import TitanConfig
from hopecli.model.memory.diagnostics import DiagnosticsAccumulator
from hopecli.model.memory.state import TitanGates, TitanState


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


def inner_grads(weights: tuple[Tensor, ...], z: Tensor, target: Tensor) -> tuple[Tensor, tuple[Tensor, ...]]:
    """l = 1/2 ||M(z) - target||^2 per head [B, H] and dl/dW per layer, target held constant."""
    if len(weights) == 2:
        w2, w1 = weights
        p = _matvec(w2, z)
        u = gelu(p)
        e = z + _matvec(w1, u) - target
        d2 = torch.einsum("bhij,bhi->bhj", w1, e) * gelu_grad(p)
        grads = (_outer(d2, z), _outer(e, u))
    else:
        (s,) = weights
        e = _matvec(s, z) - target
        grads = (_outer(e, z),)
    return 0.5 * e.square().sum(-1), grads


def layer_inputs(weights: tuple[Tensor, ...], z: Tensor) -> tuple[Tensor, ...]:
    """The input u of every layer when the memory reads z: (z, gelu(W2 z)) or (z,)."""
    if len(weights) == 2:
        return z, gelu(_matvec(weights[0], z))
    return (z,)


def memory_step(
    acc: tuple[Tensor, ...],
    base: tuple[Tensor, ...],
    k: Tensor,
    target: Tensor,
    eta: Tensor,
    alpha: Tensor,
    rule: str,
) -> tuple[tuple[Tensor, ...], Tensor]:
    """One token's write into one memory: acc <- alpha acc - eta T, T taken at base.

    acc, base: weights [B, H, out, in] each; k, target [B, H, head_dim]; eta, alpha [B, H].
    gd: T = grad l(alpha base); dgd: T = base u u^T + grad l(base) per layer (see the
    module docstring). Returns the new acc and the inner loss [B, H].
    """
    a = alpha[..., None, None]
    if rule == "gd":
        loss, terms = inner_grads(tuple(a * w for w in base), k, target)
    else:
        loss, grads = inner_grads(base, k, target)
        terms = tuple(
            _outer(_matvec(w, u), u) + g for w, u, g in zip(base, layer_inputs(base, k), grads)
        )
    e = eta[..., None, None]
    return tuple(a * w - e * t for w, t in zip(acc, terms)), loss


def titan_naive(
    x: Tensor,
    state: TitanState,
    gates: TitanGates,
    cfg: TitanConfig,
    *,
    chunk_size: int,
    update: bool,
) -> tuple[Tensor, TitanState, dict[str, Tensor]]:
    """Readouts y [B, L, D], the state after the sequence, diagnostics (module docstring)."""
    batch, length, _ = x.shape
    heads, head_dim = cfg.heads, cfg.head_dim
    boxes = cfg.boxes
    diag = DiagnosticsAccumulator(boxes)
    with torch.autocast(x.device.type, enabled=False):
        x = x.to(state.layers[0].dtype)
        layers = state.layers
        ys = []
        for start in range(0, length, chunk_size):
            base = [tuple(w[:, i] for w in layers) for i in range(len(boxes))]  # W_c per memory
            acc = list(base)
            for t in range(start, min(start + chunk_size, length)):
                xt = x[:, t].reshape(batch, heads, head_dim)
                read = {box: memory_read(base[i], xt) for i, box in enumerate(boxes) if box != "memory"}
                k = F.normalize(read["k"], dim=-1)
                v = F.normalize(read["v"], dim=-1)
                if cfg.static_q:
                    q = (x[:, t] @ gates.q_weight.T).reshape(batch, heads, head_dim)
                else:
                    q = read["q"]
                q = F.normalize(q, dim=-1)
                eta_logit = torch.einsum("bhd,nhd->bnh", read["eta"], gates.eta_proj) + gates.eta_bias
                alpha_logit = torch.einsum("bhd,nhd->bnh", read["alpha"], gates.alpha_proj) + gates.alpha_bias
                eta = cfg.eta_max * torch.sigmoid(eta_logit)  # [B, NB, H]
                alpha = torch.sigmoid(alpha_logit)  # [B, NB, H]
                ys.append(memory_read(base[-1], q).reshape(batch, -1))
                losses = []
                for i in range(len(boxes)):
                    target = memory_read(base[i], v)
                    acc[i], loss = memory_step(
                        acc[i], base[i], k, target, eta[:, i], alpha[:, i], cfg.update_rule
                    )
                    losses.append(loss)
                diag.add_rates(
                    eta.transpose(0, 1).reshape(len(boxes), -1),
                    alpha.transpose(0, 1).reshape(len(boxes), -1),
                    torch.stack(losses).reshape(len(boxes), -1),
                )
            new = tuple(torch.stack([a[j] for a in acc], dim=1) for j in range(len(layers)))
            new = new if update else layers
            diag.add_update(layers, new)
            layers = new
        y = torch.stack(ys, dim=1)  # [B, L, D]
    step = state.step + length if update else state.step
    return y, TitanState(layers, step), diag.result(layers)
