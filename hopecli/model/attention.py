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

from hopecli.encoder.rope import rope_3d


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
        self, x: Tensor, positions: Tensor, attn_mask: Tensor | None, cache: KVCache | None = None
    ) -> tuple[Tensor, KVCache]:
        """x [B, L, D] at positions [L, 3]; attn_mask [L, L_seen + L] bool or None.

        Returns the attention output [B, L, D] and the cache extended by these tokens.
        """
        B, L, D = x.shape
        qkv = self.qkv(x).view(B, L, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each [B, heads, L, head_dim]
        q = rope_3d(q, positions)
        k = rope_3d(k, positions)
        if cache is not None:
            k = torch.cat([cache.k, k], dim=2)
            v = torch.cat([cache.v, v], dim=2)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)  # [B, heads, L, hd]
        y = y.transpose(1, 2).reshape(B, L, D)
        return self.proj(y), KVCache(k, v)
