"""The predictor's blocks, one per pattern letter.

- `T` TransformerBlock: pre-norm block-causal attention with 3D RoPE, then a pre-norm
  MLP (the AC-ViT block of V-JEPA 2-AC).
- `H` HopeBlock: phase A, pre-norm self-modifying Titan memory, output projection,
  residual; phase B, the CMS chain (pre-norm residual levels); phase C, optional
  per-frame spatial mixing.
- `L` the same HopeBlock whose memories are linear with rule `gd` (gated delta rule).

Every block maps (x [B, L, D], context, state) -> (x, new state, diagnostics): state is
the block's KV cache (T) or Titan state (H, L), passed in and returned as a value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from timm.layers import DropPath, Mlp
from torch import Tensor, nn

from hopecli.model.attention import BlockCausalAttention, KVCache, RopeTables
from hopecli.model.cms import ContinuumMemory
from hopecli.model.config import PredictorConfig
from hopecli.model.init import init_layers_, rescale_residual_
from hopecli.model.memory import SelfModifyingTitan, TitanConfig, TitanState
from hopecli.model.mixing import SpatialMixing


@dataclass(frozen=True)
class SequenceContext:
    """What the blocks need to know about the tokens of one forward call."""

    tokens_per_frame: int  # N = P + 2
    positions: Tensor  # [L, 3] (frame, row, col) per token, frames counted from the stream start
    attn_mask: Tensor | None  # [L, L_seen + L] bool, True = may attend; None = all visible
    chunk_size: int  # memory chunk in tokens
    update_memory: bool  # False freezes the memories (ablation)
    keep_state: bool = True  # False: the caller drops the state after these tokens (PredictorOutput.state None)
    rope: RopeTables | None = field(default=None, compare=False)  # of positions, shared by the T blocks


def _drop_path(rate: float) -> nn.Module:
    return DropPath(rate) if rate > 0 else nn.Identity()


class TransformerBlock(nn.Module):
    """`T`: x + Attn(LN(x)), then x + MLP(LN(x)), each branch with drop path."""

    def __init__(
        self, dim: int, num_heads: int, mlp_ratio: float, qkv_bias: bool, drop_path: float, index: int
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = BlockCausalAttention(dim, num_heads, qkv_bias=qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, hidden_features=int(dim * mlp_ratio), act_layer=nn.GELU)
        self.drop_path = _drop_path(drop_path)
        init_layers_(self)
        rescale_residual_(self.attn.proj, index)
        rescale_residual_(self.mlp.fc2, index)

    def forward(
        self, x: Tensor, ctx: SequenceContext, state: KVCache | None = None
    ) -> tuple[Tensor, KVCache, dict[str, Tensor]]:
        y, cache = self.attn(self.norm1(x), ctx.positions, ctx.attn_mask, state, ctx.rope)
        x = x + self.drop_path(y)
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x, cache, {}


class HopeBlock(nn.Module):
    """`H` / `L`: Titan memory (A), CMS (B), spatial mixing (C); all pre-norm residual."""

    def __init__(
        self,
        dim: int,
        memory: TitanConfig,
        cms_hidden_mults: Sequence[float],
        cms_periods: Sequence[int],
        tokens_per_frame: int,
        spatial_mixing: bool,
        drop_path: float,
        index: int,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.memory = SelfModifyingTitan(memory, frame_tokens=tokens_per_frame)
        self.proj = nn.Linear(dim, dim)
        self.drop_path = _drop_path(drop_path)
        init_layers_(self.norm1, self.proj)
        rescale_residual_(self.proj, index)
        self.cms = ContinuumMemory(dim, cms_hidden_mults, cms_periods, drop_path)
        for level in self.cms.levels:
            rescale_residual_(level.fc2, index)
        self.mixing = (
            SpatialMixing(tokens_per_frame, dim, drop_path) if spatial_mixing else None
        )

    def forward(
        self, x: Tensor, ctx: SequenceContext, state: TitanState | None = None
    ) -> tuple[Tensor, TitanState, dict[str, Tensor]]:
        y, state, diag = self.memory(
            self.norm1(x), state=state, chunk_size=ctx.chunk_size, update=ctx.update_memory,
            keep_state=ctx.keep_state,
        )
        x = x + self.drop_path(self.proj(y))
        x, cms_diag = self.cms(x)
        if self.mixing is not None:
            x = self.mixing(x)
        return x, state, {**diag, **cms_diag}


def build_block(letter: str, cfg: PredictorConfig, index: int, drop_path: float) -> nn.Module:
    """The block for one pattern letter at depth `index`."""
    if letter == "T":
        return TransformerBlock(cfg.dim, cfg.num_heads, cfg.mlp_ratio, cfg.qkv_bias, drop_path, index)
    if letter in ("H", "L"):
        return HopeBlock(
            cfg.dim,
            cfg.memory_config(letter),
            cfg.cms_hidden_mults,
            cfg.cms_periods,
            cfg.tokens_per_frame,
            cfg.spatial_mixing,
            drop_path,
            index,
        )
    raise ValueError(f"unknown block letter {letter!r}; use T, H or L")
