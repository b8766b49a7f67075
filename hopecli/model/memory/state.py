"""Values handed between the Titan module and its two implementations (naive, chunked)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor


@dataclass
class TitanState:
    """The fast weights of all memories, per sample: the memory's whole recurrent state.

    layers: the weights of one memory layer each, ordered input to output, every one
    stacked over batch, memory (config.boxes order) and head:
      kind "mlp":    (w2 [B, NB, H, hidden, head_dim], w1 [B, NB, H, head_dim, hidden])
      kind "linear": (s [B, NB, H, head_dim, head_dim],)
    step: [B] int64, tokens written into the memories so far.
    conv: the short convolutions' history [B, 3, H, W, head_dim]: the raw q, k and v of
    the last W = (conv_size - 1) x dilation tokens, oldest first (zeros before the stream
    started); None when the memory has no short convolutions.
    """

    layers: tuple[Tensor, ...]
    step: Tensor
    conv: Tensor | None = None

    @property
    def batch_size(self) -> int:
        return self.step.shape[0]

    def map(self, fn: Callable[[Tensor], Tensor]) -> TitanState:
        """fn applied to every tensor of the state (layers, step, conv history)."""
        return TitanState(tuple(fn(w) for w in self.layers), fn(self.step),
                          None if self.conv is None else fn(self.conv))

    def detach(self) -> TitanState:
        """The same values cut from the autograd graph (truncated backprop through time)."""
        return self.map(lambda t: t.detach())


@dataclass
class TitanGates:
    """Outer (slow) parameters that are not memory state.

    eta_proj, alpha_proj [NB, H, head_dim] and eta_bias, alpha_bias [NB, H] turn the
    readouts of M_eta and M_alpha into one rate per token, head and memory;
    q_weight [D, D] is the static q projection (None unless static_q);
    initial_layers: the meta-learned M_0, one tensor per layer [NB, H, out, in], toward
    which forgetting pulls every memory; conv_weight [3, K, H, head_dim]: the depthwise
    taps of the q, k and v short convolutions (tap j weighs the input j x dilation
    tokens back), None without them; dilation: tokens between two taps (a frame's
    tokens on the time axis, 1 on the sequence axis).
    """

    eta_proj: Tensor
    eta_bias: Tensor
    alpha_proj: Tensor
    alpha_bias: Tensor
    q_weight: Tensor | None
    initial_layers: tuple[Tensor, ...]
    conv_weight: Tensor | None = None
    dilation: int = 1
