"""Block-causal self-attention with 3D RoPE, as in V-JEPA 2-AC's predictor.

Tokens are laid out frame after frame; a token of frame t may attend to every token of
frames <= t (its own frame included), never to a later frame. Queries and keys are
rotated with the encoder's 3D RoPE at (frame, row, column); action and state tokens sit
at (frame, 0, 0), so only the time block of their heads turns.

For streaming (rollout, planning, adaptation) the keys and values of the frames already
seen are kept in a `KVCache` that is passed in and returned: feeding frames one call at
a time with the cache computes the same outputs as feeding the whole sequence at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hopecli.encoder.rope import ROPE_BASE, rope_3d, rope_block_dim


@dataclass(frozen=True)
class KVCache:
    """Rotated keys and values of every token seen so far by one attention layer."""

    k: Tensor  # [B, heads, L_seen, head_dim]
    v: Tensor  # [B, heads, L_seen, head_dim]

    def detach(self) -> KVCache:
        return KVCache(self.k.detach(), self.v.detach())


def token_positions(
    first_frame: int, frames: int, grid: tuple[int, int], cond_tokens: int = 2,
    device: torch.device | str | None = None,
) -> Tensor:
    """RoPE positions [frames * N, 3] of the token layout [cond tokens, patches] per frame.

    Frame indices start at first_frame (frames already seen); the cond_tokens (action,
    state) sit at (frame, 0, 0), patch (r, c) of the grid at (frame, r, c).
    """
    rows, cols = grid
    rc = torch.stack(
        torch.meshgrid(torch.arange(rows, device=device), torch.arange(cols, device=device), indexing="ij"), -1
    ).reshape(-1, 2)  # [P, 2]
    rc = torch.cat([torch.zeros(cond_tokens, 2, dtype=rc.dtype, device=device), rc])  # [N, 2]
    time = torch.arange(first_frame, first_frame + frames, device=device).repeat_interleave(rc.shape[0])
    return torch.cat([time[:, None], rc.repeat(frames, 1)], dim=1)


def block_causal_mask(
    frames: int, tokens_per_frame: int, past_frames: int = 0, device: torch.device | str | None = None
) -> Tensor | None:
    """Boolean mask [frames*N, (past_frames+frames)*N], True where a query may attend.

    Query frame past_frames + i sees key frames 0 .. past_frames + i. Returns None when
    every query may see every key (a single new frame), so attention can take the
    unmasked kernel.
    """
    if frames < 1 or tokens_per_frame < 1 or past_frames < 0:
        raise ValueError(
            f"need frames >= 1, tokens_per_frame >= 1, past_frames >= 0; got "
            f"{frames!r}, {tokens_per_frame!r}, {past_frames!r}"
        )
    if frames == 1:
        return None
    q_frame = torch.arange(past_frames, past_frames + frames, device=device)
    k_frame = torch.arange(past_frames + frames, device=device)
    mask = k_frame[None, :] <= q_frame[:, None]  # [T, past + T]
    return mask.repeat_interleave(tokens_per_frame, 0).repeat_interleave(tokens_per_frame, 1)


class RopeTables:
    """cos and sin of encoder/rope.py's 3D RoPE at one forward's positions [L, 3], made once
    per head dim and dtype and shared by every attention layer of the forward.

    Per head: three axis blocks of n = rope_block_dim(head_dim) dims, each with the angles
    pos * omega_i tiled by `repeat` as rope_3d tiles them, then the unrotated rest (cos 1,
    sin 0). x * cos + turn(x) * sin is then rope_3d(x) element for element, in the same
    operations on the same values, in four passes over x instead of rope_3d's twenty-odd
    (three blocks of sin, cos, turn, products and a concatenation per call). The sign of
    the turn, (x0, x1) -> (-x1, x0), lives in the sin table (`signed_sin`), so turning is
    one swap of each pair: (-x1) sin = x1 (-sin) exactly.
    """

    def __init__(self, positions: Tensor) -> None:
        self.positions = positions
        self._tables: dict[tuple[int, torch.dtype], tuple[Tensor, Tensor]] = {}

    def get(self, head_dim: int, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """(cos, signed_sin) [L, head_dim] in dtype; signed_sin is -sin on the first member
        of every pair."""
        key = (head_dim, dtype)
        if key not in self._tables:
            n = rope_block_dim(head_dim)
            half = n // 2
            work = torch.promote_types(dtype, torch.float32)  # angles in at least fp32, as rope_3d
            device = self.positions.device
            omega = 1.0 / ROPE_BASE ** (torch.arange(half, dtype=work, device=device) / half)  # [n/2]
            angle = self.positions.to(work)[..., None] * omega  # [L, 3, n/2]
            rest = head_dim - 3 * n
            length = self.positions.shape[0]
            cos = torch.cat([angle.cos().repeat(1, 1, 2).flatten(1), angle.new_ones(length, rest)], -1)
            sin = torch.cat([angle.sin().repeat(1, 1, 2).flatten(1), angle.new_zeros(length, rest)], -1)
            sign = torch.tensor([-1.0, 1.0], dtype=work, device=device).repeat(head_dim // 2 + 1)[:head_dim]
            self._tables[key] = (cos.to(dtype), (sin * sign).to(dtype))
        return self._tables[key]


def apply_rope(x: Tensor, tables: RopeTables) -> Tensor:
    """rope_3d(x, tables.positions) for x [..., L, head_dim] (RopeTables)."""
    head_dim = x.shape[-1]
    if head_dim % 2:  # pairs would straddle the unrotated rest: the reference
        return rope_3d(x, tables.positions)
    cos, signed_sin = tables.get(head_dim, x.dtype)
    swapped = x.unflatten(-1, (head_dim // 2, 2)).flip(-1).flatten(-2)  # (x0, x1) -> (x1, x0)
    return x * cos + swapped * signed_sin


class BlockCausalAttention(nn.Module):
    """Multi-head self-attention with 3D RoPE on q/k and an optional KV cache."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"dim {dim!r} is not divisible by num_heads {num_heads!r}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(
        self, x: Tensor, positions: Tensor, attn_mask: Tensor | None, cache: KVCache | None = None,
        rope: RopeTables | None = None,
    ) -> tuple[Tensor, KVCache]:
        """x [B, L, D] at positions [L, 3]; attn_mask [L, L_seen + L] bool or None; rope:
        the forward's RopeTables at these positions, shared by its layers (None: made here).

        Returns the attention output [B, L, D] and the cache extended by these tokens.
        """
        B, L, D = x.shape
        qkv = self.qkv(x).view(B, L, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k = apply_rope(qkv[:2], rope if rope is not None else RopeTables(positions)).unbind(0)
        v = qkv[2]  # each [B, heads, L, head_dim]
        if cache is not None:
            k = torch.cat([cache.k, k], dim=2)
            v = torch.cat([cache.v, v], dim=2)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)  # [B, heads, L, hd]
        y = y.transpose(1, 2).reshape(B, L, D)
        return self.proj(y), KVCache(k, v)
