"""3D rotary position embedding as V-JEPA 2 applies it to queries and keys.

Each head's dims are split into three blocks of n = 2 * ((head_dim // 3) // 2) dims for
time (frame), height (row) and width (column); whatever is left at the end of the head
stays unrotated (head_dim 64: 20 + 20 + 20 + 4). Inside a block of n dims the angle of
frequency i is pos * omega_i with omega_i = 10000^(-i / (n/2)), i < n/2.

The rotation acts on adjacent pairs (x0, x1) -> (-x1, x0), but the n/2 angles are tiled
with `repeat` (f0 .. f_{n/2-1}, f0 .. f_{n/2-1}) rather than `repeat_interleave`
(f0, f0, f1, f1, ...). So the two members of a pair can turn by different angles. The
released V-JEPA 2 weights were trained with this quirk, so it is kept bit for bit.

A position of 0 on an axis leaves that block unchanged (cos 0 = 1, sin 0 = 0), which is
how action and state tokens at (frame, 0, 0) are rotated on time only.
"""

from __future__ import annotations

import torch
from torch import Tensor

ROPE_BASE = 10000.0


def rope_block_dim(head_dim: int) -> int:
    """Dims per axis block: 2 * ((head_dim // 3) // 2); the rest of the head is unrotated."""
    if head_dim < 1:
        raise ValueError(f"head_dim must be positive, got {head_dim!r}")
    return 2 * ((head_dim // 3) // 2)


def grid_positions(t: int, h: int, w: int, device: torch.device | str | None = None) -> Tensor:
    """Integer (frame, row, column) of every token of a t x h x w grid, ordered t, h, w.

    Returns a LongTensor [t*h*w, 3].
    """
    for name, value in (("t", t), ("h", h), ("w", w)):
        if value < 1:
            raise ValueError(f"grid size {name} must be positive, got {value!r}")
    frames = torch.arange(t, device=device)
    rows = torch.arange(h, device=device)
    cols = torch.arange(w, device=device)
    grid = torch.meshgrid(frames, rows, cols, indexing="ij")  # 3 x [t, h, w]
    return torch.stack(grid, dim=-1).reshape(t * h * w, 3)


def _rotate_block(x: Tensor, pos: Tensor) -> Tensor:
    """Rotate one axis block x [..., N, n] by integer positions pos [..., N]."""
    n = x.shape[-1]
    half = n // 2
    dtype = torch.promote_types(x.dtype, torch.float32)  # angles in at least fp32
    omega = torch.arange(half, dtype=dtype, device=x.device) / half
    omega = 1.0 / ROPE_BASE**omega  # [n/2]
    angle = pos.to(dtype)[..., None] * omega  # [..., N, n/2]
    sin = angle.sin().repeat(*([1] * (angle.dim() - 1)), 2).to(x.dtype)  # [..., N, n]
    cos = angle.cos().repeat(*([1] * (angle.dim() - 1)), 2).to(x.dtype)  # [..., N, n]
    pairs = x.unflatten(-1, (half, 2))  # [..., N, n/2, 2]
    turned = torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)  # [..., N, n]
    return x * cos + turned * sin


def rope_3d(x: Tensor, pos: Tensor) -> Tensor:
    """Apply V-JEPA 2's 3D RoPE to x [..., N, head_dim] at positions pos [N, 3].

    pos holds (frame, row, column) per token (it may carry leading dims that broadcast
    against x's). Returns a tensor of x's shape and dtype.
    """
    if pos.shape[-1] != 3 or pos.shape[-2] != x.shape[-2]:
        raise ValueError(
            f"pos must be [N, 3] with N = {x.shape[-2]} tokens, got shape {tuple(pos.shape)!r}"
        )
    n = rope_block_dim(x.shape[-1])
    if n == 0:
        return x
    blocks = [_rotate_block(x[..., axis * n : (axis + 1) * n], pos[..., axis]) for axis in range(3)]
    rest = x[..., 3 * n :]
    return torch.cat([*blocks, rest], dim=-1)
