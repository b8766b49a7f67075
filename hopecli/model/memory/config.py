"""Configuration of the self-modifying Titan memory (HOPE phase A)."""

from __future__ import annotations

import math
from dataclasses import dataclass

BOXES = ("k", "v", "q", "eta", "alpha", "memory")
KINDS = ("mlp", "linear")
RULES = ("dgd", "gd")
TARGETS = ("self", "value")
CONV_AXES = ("time", "sequence")
RECOMPUTES = ("selective", "whole")
# the largest eta each rule keeps a non-oscillating contraction along every key:
# a write scales a layer's deviation from M_0 along its key by alpha (1 - beta), with
# beta = eta for gd and 2 eta for dgd
RULE_ETA_MAX = {"gd": 1.0, "dgd": 0.5}
# the safeguard of MLP writes (naive.py): the step sizes tried, largest first, and the
# radius of the trust region around M_0, per layer, in multiples of sqrt(out dim)
GUARD_SCALES = (1.0, 0.5, 0.25)
TRUST_RADIUS = 4.0


@dataclass
class TitanConfig:
    """Shapes and update rule of the six memories M_box, box in BOXES.

    kind "mlp": M(z) = z + W1 gelu(W2 z) per head (W2 [hidden, head_dim], W1 [head_dim,
    hidden], hidden = hidden_mult * head_dim); kind "linear": M(z) = S z per head
    (S [head_dim, head_dim]). heads=1 is one full-width memory per box; heads=H splits
    every token into H heads of dim/H features, each with its own small memory.

    update_rule "gd": forget toward M_0, then a normalised delta step on every layer;
    "dgd": delta gradient descent, the same with the preconditioner (I - eta u u^T) on
    each layer's input u (naive.py has the equations). static_q replaces M_q by a plain
    linear projection. memory_target "self": the memory box learns its own target
    M_memory(v_t), as every other memory does; "value": it learns v_t, which makes a
    linear `gd` memory the gated delta rule (the `L` blocks).

    eta = eta_max * sigmoid(.) and alpha = sigmoid(.) are per token, head and memory;
    eta_init and alpha_init set their starting values through the biases. Every write
    is normalised by its layer's input and computed exactly inside a chunk, so along
    every key it scales the memory's deviation from M_0 by alpha (1 - beta), beta = eta
    (gd) or 2 eta (dgd), whatever the chunk size and key correlation. eta_max None is
    the largest value that keeps this in [0, 1): 1 for gd (a write replaces the value
    under its key) and 0.5 for dgd (at 1 a dgd write reflects along its key; measured
    with bench/icl.py, a linear dgd memory's error on 258 distinct pairs grew past 10x
    in 8 frames there). eta_init None is half of eta_max: a write goes halfway to its
    target. alpha is a per-token retention toward M_0: alpha_init 0.9999 keeps 81% of
    what a memory wrote across one clip of 8 frames x 258 tokens (0.999 kept 13%).

    conv_size K > 0 puts a causal depthwise convolution of K taps, then SiLU, after the
    q, k and v readouts (conv.py); 0 is the seeds' layout, where q, k and v come from the
    token alone. conv_axis "time" convolves each patch over its own earlier steps (taps a
    frame apart), "sequence" over the previous tokens (the text models' layout).

    checkpoint_chunks recomputes each chunk inside the backward instead of storing its
    activations (the chunked path only, and only when gradients are recorded). recompute
    "selective": a compiled chunk keeps the outputs of its triangular solves and of its
    products over at least chunked.SAVE_INNER inner units and recomputes the rest (for
    hope_multihead's memory 30 MB a chunk of 258 tokens and a sample, and 0.445 s per
    memory where "whole", which keeps the chunk's inputs alone (6.4 MB), took 0.505 s); an eager chunk is recomputed
    whole either way.
    """

    dim: int = 384
    heads: int = 1
    hidden_mult: float = 4.0
    kind: str = "mlp"
    update_rule: str = "dgd"
    static_q: bool = False
    memory_target: str = "self"
    eta_max: float | None = None  # None: RULE_ETA_MAX of the rule
    eta_init: float | None = None  # None: eta_max / 2
    alpha_init: float = 0.9999
    checkpoint_chunks: bool = True
    recompute: str = "selective"
    conv_size: int = 0
    conv_axis: str = "time"

    def __post_init__(self) -> None:
        for name in ("dim", "heads"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.dim % self.heads != 0:
            raise ValueError(f"dim {self.dim!r} is not divisible by heads {self.heads!r}")
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS!r}, got {self.kind!r}")
        if self.update_rule not in RULES:
            raise ValueError(f"update_rule must be one of {RULES!r}, got {self.update_rule!r}")
        if self.memory_target not in TARGETS:
            raise ValueError(f"memory_target must be one of {TARGETS!r}, got {self.memory_target!r}")
        if not isinstance(self.conv_size, int) or isinstance(self.conv_size, bool) or self.conv_size < 0:
            raise ValueError(f"conv_size must be a non-negative integer, got {self.conv_size!r}")
        if self.recompute not in RECOMPUTES:
            raise ValueError(f"recompute must be one of {RECOMPUTES!r}, got {self.recompute!r}")
        if self.conv_axis not in CONV_AXES:
            raise ValueError(f"conv_axis must be one of {CONV_AXES!r}, got {self.conv_axis!r}")
        if not (isinstance(self.hidden_mult, (int, float)) and self.hidden_mult > 0):
            raise ValueError(f"hidden_mult must be positive, got {self.hidden_mult!r}")
        if self.kind == "mlp" and self.hidden_dim < 1:
            raise ValueError(
                f"hidden_mult {self.hidden_mult!r} gives no hidden units at head_dim {self.head_dim!r}"
            )
        if self.eta_max is not None and not 0.0 < self.eta_max <= 1.0:
            raise ValueError(f"eta_max must be in (0, 1], got {self.eta_max!r}")
        if self.eta_init is not None and not 0.0 < self.eta_init < self.eta_bound:
            raise ValueError(f"eta_init must be in (0, eta_max={self.eta_bound!r}), got {self.eta_init!r}")
        if not 0.0 < self.alpha_init < 1.0:
            raise ValueError(f"alpha_init must be in (0, 1), got {self.alpha_init!r}")

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads

    @property
    def hidden_dim(self) -> int:
        """Hidden units of one head's MLP memory."""
        return int(round(self.hidden_mult * self.head_dim))

    @property
    def boxes(self) -> tuple[str, ...]:
        """The memories, in state order; "memory" is always last, "q" absent with static_q."""
        return tuple(b for b in BOXES if not (self.static_q and b == "q"))

    @property
    def eta_bound(self) -> float:
        """eta_max, resolved: the rule's RULE_ETA_MAX when None."""
        return self.eta_max if self.eta_max is not None else RULE_ETA_MAX[self.update_rule]

    @property
    def eta_start(self) -> float:
        """eta_init, resolved: half of eta_bound when None."""
        return self.eta_init if self.eta_init is not None else self.eta_bound / 2

    @property
    def eta_bias_init(self) -> float:
        """Logit that makes eta_bound * sigmoid(logit) = eta_start."""
        return math.log(self.eta_start / (self.eta_bound - self.eta_start))

    @property
    def alpha_bias_init(self) -> float:
        """Logit that makes sigmoid(logit) = alpha_init."""
        return math.log(self.alpha_init / (1.0 - self.alpha_init))
