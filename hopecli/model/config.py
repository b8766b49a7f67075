"""The predictor's configuration: one typed, validated dataclass with a JSON round trip.

A run folder stores `PredictorConfig.to_dict()` next to the weights, so every later
command rebuilds the same model with `PredictorConfig.from_dict(d)`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from hopecli.model.memory import TitanConfig

BLOCK_LETTERS = {
    "T": "transformer block (block-causal attention + MLP)",
    "H": "HOPE block (self-modifying Titan + CMS + spatial mixing)",
    "L": "linear-memory block (the HOPE block with linear memories, rule gd: gated delta rule)",
}

COND_TOKENS = 2  # action and state token in front of every frame's patches


@dataclass
class PredictorConfig:
    """Shapes of the data, the block pattern, and the settings of each kind of block.

    The memory of `L` blocks is `memory` with kind="linear", update_rule="gd" and
    memory_target="value" (the gated delta rule); `H`
    blocks use `memory` as given. `memory.dim` must equal `dim` (None: TitanConfig's
    defaults at width `dim`).
    """

    # data
    input_dim: int = 1024  # D_in, encoder feature width
    action_dim: int = 2
    state_dim: int = 2
    patches_per_step: int = 256  # P
    grid: tuple[int, int] | None = None  # (rows, cols) of the P patches; None: square
    # trunk
    dim: int = 384  # D
    pattern: str = "HHHHH"  # one letter per block, see BLOCK_LETTERS
    max_frames: int = 64  # size of frame_pos_embed / target_pos_embed
    # output: False, the projection is the predicted features (V-JEPA 2-AC); True, it is
    # the change, added to the input step (so an untrained head predicts about a copy)
    predict_change: bool = False
    drop_path: float = 0.0  # stochastic depth of the last block (linear from 0)
    # T blocks
    num_heads: int = 16
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    # H and L blocks
    memory: TitanConfig | None = None  # a dict of TitanConfig fields is accepted too
    chunk_size: int | None = None  # memory chunk in tokens; None: one frame (P + 2)
    cms_hidden_mults: tuple[float, ...] = (2.0, 2.5, 3.0)
    cms_periods: tuple[int, ...] = (1, 4, 16)
    spatial_mixing: bool = True

    def __post_init__(self) -> None:
        for name in ("input_dim", "action_dim", "state_dim", "patches_per_step", "dim", "max_frames"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.pattern, str) or not self.pattern:
            raise ValueError(f"pattern must be a non-empty string of block letters, got {self.pattern!r}")
        for letter in self.pattern:
            if letter not in BLOCK_LETTERS:
                raise ValueError(
                    f"unknown block letter {letter!r} in pattern {self.pattern!r}; "
                    f"use T (transformer), H (HOPE) or L (linear memory)"
                )
        if self.grid is None:
            side = math.isqrt(self.patches_per_step)
            if side * side != self.patches_per_step:
                raise ValueError(
                    f"patches_per_step {self.patches_per_step!r} is not a square; give grid (rows, cols)"
                )
            self.grid = (side, side)
        self.grid = tuple(int(g) for g in self.grid)
        if len(self.grid) != 2 or self.grid[0] * self.grid[1] != self.patches_per_step:
            raise ValueError(
                f"grid {self.grid!r} does not hold patches_per_step {self.patches_per_step!r} patches"
            )
        if not 0.0 <= self.drop_path < 1.0:
            raise ValueError(f"drop_path must be in [0, 1), got {self.drop_path!r}")
        if "T" in self.pattern:
            if self.num_heads < 1 or self.dim % self.num_heads != 0:
                raise ValueError(f"dim {self.dim!r} is not divisible by num_heads {self.num_heads!r}")
            if self.mlp_ratio <= 0:
                raise ValueError(f"mlp_ratio must be positive, got {self.mlp_ratio!r}")
        if self.memory is None:
            self.memory = TitanConfig(dim=self.dim)
        elif isinstance(self.memory, dict):
            self.memory = titan_config_from_dict(self.memory)
        if self.memory.dim != self.dim:
            raise ValueError(f"memory.dim {self.memory.dim!r} differs from the predictor's dim {self.dim!r}")
        if self.chunk_size is not None and (
            self.chunk_size < 1 or self.tokens_per_frame % self.chunk_size != 0
        ):
            raise ValueError(
                f"chunk_size {self.chunk_size!r} must divide the {self.tokens_per_frame} tokens of a frame"
            )
        self.cms_hidden_mults = tuple(float(m) for m in self.cms_hidden_mults)
        self.cms_periods = tuple(int(p) for p in self.cms_periods)
        if len(self.cms_hidden_mults) != len(self.cms_periods):
            raise ValueError(
                f"need one CMS period per level, got cms_hidden_mults {self.cms_hidden_mults!r} "
                f"and cms_periods {self.cms_periods!r}"
            )
        if any(m <= 0 for m in self.cms_hidden_mults):
            raise ValueError(f"cms_hidden_mults must be positive, got {self.cms_hidden_mults!r}")
        if any(p < 1 for p in self.cms_periods):
            raise ValueError(f"cms_periods must be >= 1, got {self.cms_periods!r}")

    @property
    def tokens_per_frame(self) -> int:
        """N = P + 2: action token, state token, patches."""
        return self.patches_per_step + COND_TOKENS

    @property
    def memory_chunk_size(self) -> int:
        return self.chunk_size if self.chunk_size is not None else self.tokens_per_frame

    def memory_config(self, letter: str) -> TitanConfig:
        """The Titan configuration of an `H` or `L` block."""
        if letter == "L":
            return dataclasses.replace(self.memory, kind="linear", update_rule="gd", memory_target="value")
        return self.memory

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict (tuples become lists in JSON)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["grid"] = list(self.grid)
        d["cms_hidden_mults"] = list(self.cms_hidden_mults)
        d["cms_periods"] = list(self.cms_periods)
        d["memory"] = dataclasses.asdict(self.memory)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PredictorConfig:
        """Inverse of to_dict; unknown keys are an error, missing ones take defaults."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown predictor config key(s) {unknown!r}")
        return cls(**d)


def titan_config_from_dict(d: dict[str, Any]) -> TitanConfig:
    """TitanConfig from a dict; unknown keys are an error."""
    known = {f.name for f in dataclasses.fields(TitanConfig)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"unknown memory config key(s) {unknown!r}")
    return TitanConfig(**d)
