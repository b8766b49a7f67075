"""Values handed between the Titan module and its two implementations (naive, chunked)."""

from __future__ import annotations

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
    """

    layers: tuple[Tensor, ...]
    step: Tensor

    @property
    def batch_size(self) -> int:
        return self.step.shape[0]

    def detach(self) -> TitanState:
        """The same values cut from the autograd graph (truncated backprop through time)."""
        return TitanState(tuple(w.detach() for w in self.layers), self.step)


@dataclass
class TitanGates:
    """Outer (slow) parameters that are not memory state.

    eta_proj, alpha_proj [NB, H, head_dim] and eta_bias, alpha_bias [NB, H] turn the
    readouts of M_eta and M_alpha into one rate per token, head and memory;
    q_weight [D, D] is the static q projection (None unless static_q);
    initial_layers: the meta-learned M_0, one tensor per layer [NB, H, out, in], toward
    which forgetting pulls every memory.
    """

    eta_proj: Tensor
    eta_bias: Tensor
    alpha_proj: Tensor
    alpha_bias: Tensor
    q_weight: Tensor | None
    initial_layers: tuple[Tensor, ...]
