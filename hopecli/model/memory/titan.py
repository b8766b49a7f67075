"""Self-modifying Titan memory (HOPE phase A) as a module: meta-learned initial states.

The module owns the outer (slow) parameters: the initial weights M_box,0 of every memory,
meta-learned through the explicit inner updates, the rate read-outs of M_eta and M_alpha,
and with static_q the q projection. The fast weights live in a TitanState value that
forward takes and returns; the math is in naive.py (reference) and chunked.py (fast).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from hopecli.model.memory.chunked import titan_chunked
from hopecli.model.memory.config import TitanConfig
from hopecli.model.memory.conv import history_length
from hopecli.model.memory.naive import titan_naive
from hopecli.model.memory.state import TitanGates, TitanState

IMPLS = {"chunked": titan_chunked, "naive": titan_naive}
GATE_INIT_STD = 0.02


class SelfModifyingTitan(nn.Module):
    """Six memories (k, v, q, eta, alpha, memory) that write themselves while they read.

    Initialisation: MLP memories W2 ~ N(0, 1/head_dim) (fan-in), W1 ~ N(0, 0.02^2), so
    M starts near the identity through its residual; linear memories S = I + N(0, 0.02^2).
    The rate read-outs start small (N(0, 0.02^2)), their biases at eta_init / alpha_init.
    With short convolutions (cfg.conv_size > 0) the taps start as a transition: k reads
    the input one tap back, q and v the current one (plus N(0, 0.02^2)), so on the time
    axis a memory first stores each patch's previous step -> current step.

    frame_tokens: tokens per frame, the dilation of a time-axis convolution.
    """

    def __init__(self, cfg: TitanConfig, frame_tokens: int | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.dilation = 1
        if cfg.conv_size > 0 and cfg.conv_axis == "time":
            if frame_tokens is None or frame_tokens < 1:
                raise ValueError(f"a time-axis convolution needs frame_tokens, got {frame_tokens!r}")
            self.dilation = frame_tokens
        nb, heads, head_dim = len(cfg.boxes), cfg.heads, cfg.head_dim
        if cfg.kind == "mlp":
            w2 = torch.randn(nb, heads, cfg.hidden_dim, head_dim) / math.sqrt(head_dim)
            w1 = torch.randn(nb, heads, head_dim, cfg.hidden_dim) * GATE_INIT_STD
            layers = (w2, w1)
        else:
            eye = torch.eye(head_dim).expand(nb, heads, head_dim, head_dim)
            layers = (eye + torch.randn(nb, heads, head_dim, head_dim) * GATE_INIT_STD,)
        self.initial_layers = nn.ParameterList([nn.Parameter(w) for w in layers])
        self.eta_proj = nn.Parameter(torch.randn(nb, heads, head_dim) * GATE_INIT_STD)
        self.eta_bias = nn.Parameter(torch.full((nb, heads), cfg.eta_bias_init))
        self.alpha_proj = nn.Parameter(torch.randn(nb, heads, head_dim) * GATE_INIT_STD)
        self.alpha_bias = nn.Parameter(torch.full((nb, heads), cfg.alpha_bias_init))
        self.q_proj = nn.Linear(cfg.dim, cfg.dim, bias=False) if cfg.static_q else None
        self.conv_weight = None
        if cfg.conv_size > 0:
            taps = torch.randn(3, cfg.conv_size, heads, head_dim) * GATE_INIT_STD
            taps[0, 0] += 1.0  # q: the current input
            taps[1, min(1, cfg.conv_size - 1)] += 1.0  # k: one tap back
            taps[2, 0] += 1.0  # v: the current input
            self.conv_weight = nn.Parameter(taps)

    def initial_state_parameters(self) -> list[nn.Parameter]:
        """The meta-learned initial weights M_box,0, one tensor per layer (all memories stacked)."""
        return list(self.initial_layers)

    def init_state(self, batch_size: int) -> TitanState:
        """M_box,0 expanded over the batch; differentiable w.r.t. the initial-state parameters."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size!r}")
        layers = tuple(w.unsqueeze(0).expand(batch_size, *w.shape) for w in self.initial_layers)
        step = torch.zeros(batch_size, dtype=torch.long, device=layers[0].device)
        conv = None
        if self.conv_weight is not None:
            width = history_length(self.cfg.conv_size, self.dilation)
            conv = layers[0].new_zeros(batch_size, 3, self.cfg.heads, width, self.cfg.head_dim)
        return TitanState(layers, step, conv)

    def forward(
        self,
        x: Tensor,
        state: TitanState | None = None,
        *,
        chunk_size: int,
        update: bool = True,
        impl: str = "chunked",
        keep_state: bool = True,
    ) -> tuple[Tensor, TitanState | None, dict[str, Tensor]]:
        """x [B, L, D] -> readouts y [B, L, D], the state after x, diagnostics.

        state None starts from init_state; chunk_size tokens share one memory state and
        write it at the chunk's end (naive.py defines the semantics); update=False reads
        only and returns the state unchanged (ablation); impl "naive" is the reference.
        keep_state=False: the state after x is not wanted (None comes back, with no
        diagnostics), which spares the last chunk every write its readouts do not read.
        """
        if x.dim() != 3 or x.shape[-1] != self.cfg.dim or x.shape[1] < 1:
            raise ValueError(f"x must be [B, L >= 1, {self.cfg.dim}], got shape {tuple(x.shape)!r}")
        if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
        if impl not in IMPLS:
            raise ValueError(f"impl must be one of {sorted(IMPLS)!r}, got {impl!r}")
        if state is None:
            state = self.init_state(x.shape[0])
        expected = [(x.shape[0], *w.shape) for w in self.initial_layers]
        got = [tuple(w.shape) for w in state.layers]
        if got != expected:
            raise ValueError(f"state layers have shapes {got!r}, this memory and batch need {expected!r}")
        if (state.conv is None) != (self.conv_weight is None):
            raise ValueError("state and memory disagree on short convolutions: rebuild the state with init_state")
        gates = TitanGates(
            self.eta_proj,
            self.eta_bias,
            self.alpha_proj,
            self.alpha_bias,
            None if self.q_proj is None else self.q_proj.weight,
            tuple(self.initial_layers),
            self.conv_weight,
            self.dilation,
        )
        return IMPLS[impl](x, state, gates, self.cfg, chunk_size=chunk_size, update=update, keep_state=keep_state)
