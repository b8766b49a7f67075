"""Short causal convolutions after the memories' q, k and v (Titans; GatedDeltaNet's conv).

Each channel of q, k and v is convolved with its own K taps over earlier tokens and
passed through SiLU, as fla's ShortConvolution does before the gated delta rule:

    c_t = silu(sum_{j<K} w_j * r_{t - j d}),

r the raw readout (M_q(x), M_k(x), M_v(x)) and d the dilation. On the time axis
d = tokens per frame, so the taps of a patch are that patch's own earlier steps: a key can
hold a patch's previous step while its value holds the current one, which is how a
memory can store the clip's transition and a query read the next step. On the sequence
axis d = 1 (the text models' layout: the previous tokens in raster order).

The last (K - 1) d raw readouts are carried as state, so a stream cut into chunks or
calls gives the same c_t as the whole stream; tokens before the stream are zeros.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def history_length(conv_size: int, dilation: int) -> int:
    """Raw readouts a stream must carry: (K - 1) x dilation."""
    return (conv_size - 1) * dilation


def causal_conv(raw: Tensor, history: Tensor, weight: Tensor, dilation: int) -> tuple[Tensor, Tensor]:
    """raw [B, S, H, C, dh] (S streams), history [B, S, H, W, dh], weight [S, K, H, dh]
    -> (silu of the convolution [B, S, H, C, dh], the history after these C tokens)."""
    width, size = history.shape[-2], raw.shape[-2]
    full = torch.cat([history.to(raw.dtype), raw], dim=-2)  # [B, S, H, W + C, dh]
    out = None
    for j in range(weight.shape[1]):
        start = width - j * dilation
        term = weight[:, j, :, None, :].to(raw.dtype) * full[..., start : start + size, :]
        out = term if out is None else out + term
    return F.silu(out), full[..., full.shape[-2] - width :, :]
