"""The `L` memory against fla's published reference of the gated delta rule.

    pip install --target /tmp/fla --no-deps fla-core einops
    PYTHONPATH=/tmp/fla .venv/bin/python bench/fla_gdn.py

A linear memory box with rule gd, memory_target "value" and M_0 = 0 runs the product's
chunked path (hopecli.model.memory.chunked) on unit keys sharing 90% of their variance,
random eta and alpha, at several chunk sizes; fla's `naive_recurrent_gated_delta_rule`
runs the same stream one token at a time. fla reads after each write (o_t = S_t q_t),
the memory before it (o_t = S_t-1 q_t), so fla is given the next token's query and its
o_t is compared with our o_t+1. Prints the relative error of the final state and of the
outputs (fp32). Then the same with GatedDeltaNet's short convolution in front (q, k, v
through a causal depthwise conv of 4 taps and SiLU, q and k L2-normalised): fla's math
against hope's `causal_conv` carried across chunks. Not a test: fla-core is not a
dependency of hope.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from fla.ops.gated_delta_rule.naive import naive_recurrent_gated_delta_rule

from hopecli.model.memory import TitanConfig
from hopecli.model.memory.chunked import chunk_targets, read_memory_box, write_chunk
from hopecli.model.memory.conv import causal_conv

B, H, T, DH = 2, 2, 63, 48


def main() -> None:
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    common = torch.randn(B, H, 1, DH, generator=gen)
    k = F.normalize(math.sqrt(0.9) * common + math.sqrt(0.1) * torch.randn(B, H, T, DH, generator=gen), dim=-1)
    v = torch.randn(B, H, T, DH, generator=gen)
    q = F.normalize(torch.randn(B, H, T, DH, generator=gen), dim=-1)
    eta = torch.rand(B, 1, H, T, generator=gen)
    alpha = 0.5 + 0.5 * torch.rand(B, 1, H, T, generator=gen)
    s0 = torch.randn(B, 1, H, DH, DH, generator=gen) / math.sqrt(DH)
    m0 = torch.zeros(1, H, DH, DH)
    cfg = TitanConfig(dim=H * DH, heads=H, kind="linear", update_rule="gd", memory_target="value")
    tr = lambda t: t.transpose(1, 2).contiguous()  # [B, H, T, D] -> [B, T, H, D]
    q_next = torch.roll(q, -1, dims=2)
    o, state = naive_recurrent_gated_delta_rule(
        tr(q_next), tr(k), tr(v), tr(eta[:, 0]), tr(alpha[:, 0].log()), scale=1.0,
        initial_state=s0[:, 0].transpose(-1, -2).contiguous(), output_final_state=True,
    )
    o, state = o.transpose(1, 2), state.transpose(-1, -2)
    rel = lambda a, b: ((a - b).norm() / b.norm()).item()
    for chunk in (1, 7, 16, 63):
        layers, ys = (s0,), []
        for start in range(0, T, chunk):
            part = slice(start, start + chunk)
            found = chunk_targets(layers, k[..., part, :], v[..., part, :], cfg)
            layers, chunks = write_chunk(layers, (m0,), found, eta[..., part], alpha[..., part].log(), cfg)
            ys.append(read_memory_box(chunks, (m0,), q[..., part, :]))
        y = torch.cat(ys, dim=-2)
        print(f"chunk {chunk:2d}: final state rel err {rel(layers[0][:, 0], state):.1e}, "
              f"outputs rel err {rel(y[:, :, 1:], o[:, :, :-1]):.1e}")
    with_convolution(gen, eta, alpha, s0, m0, cfg, rel)


def with_convolution(gen, eta, alpha, s0, m0, cfg, rel) -> None:
    """GatedDeltaNet's layer math from the projections on: q, k, v = silu(causal depthwise
    conv1d of the raw projections, 4 taps) (fla's ShortConvolution, whose triton or CUDA
    kernel computes this; on the CPU it is torch's conv1d), q and k L2-normalised, then
    the rule. Ours: hopecli.model.memory.conv.causal_conv on the sequence axis, its
    history carried from chunk to chunk, into the same chunked path. v is left as the
    convolution gives it on both sides (the `L` block also normalises v, GatedDeltaNet
    does not)."""
    taps = 4
    raw = torch.randn(B, 3, H, T, DH, generator=gen)  # q, k, v projections
    weight = torch.randn(3, taps, H, DH, generator=gen) / math.sqrt(taps)
    channels = raw.permute(0, 1, 2, 4, 3).reshape(B, 3 * H * DH, T)
    kernel = weight.flip(1).permute(0, 2, 3, 1).reshape(3 * H * DH, 1, taps)  # Conv1d's kernel order
    conv = F.silu(F.conv1d(channels, kernel, padding=taps - 1, groups=3 * H * DH)[..., :T])
    q, k, v = conv.reshape(B, 3, H, DH, T).permute(0, 1, 2, 4, 3).unbind(1)
    q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
    tr = lambda t: t.transpose(1, 2).contiguous()
    o, state = naive_recurrent_gated_delta_rule(
        tr(torch.roll(q, -1, dims=2)), tr(k), tr(v), tr(eta[:, 0]), tr(alpha[:, 0].log()), scale=1.0,
        initial_state=s0[:, 0].transpose(-1, -2).contiguous(), output_final_state=True,
    )
    o, state = o.transpose(1, 2), state.transpose(-1, -2)
    for chunk in (1, 7, 16, 63):
        layers, ys = (s0,), []
        history = raw.new_zeros(B, 3, H, taps - 1, DH)
        for start in range(0, T, chunk):
            part = slice(start, start + chunk)
            mixed, history = causal_conv(raw[..., part, :], history, weight, 1)
            qc, kc, vc = mixed.unbind(1)
            qc, kc = F.normalize(qc, dim=-1), F.normalize(kc, dim=-1)
            found = chunk_targets(layers, kc, vc, cfg)
            layers, chunks = write_chunk(layers, (m0,), found, eta[..., part], alpha[..., part].log(), cfg)
            ys.append(read_memory_box(chunks, (m0,), qc))
        y = torch.cat(ys, dim=-2)
        print(f"with the short convolution, chunk {chunk:2d}: final state rel err "
              f"{rel(layers[0][:, 0], state):.1e}, outputs rel err {rel(y[:, :, 1:], o[:, :, :-1]):.1e}")


if __name__ == "__main__":
    main()
