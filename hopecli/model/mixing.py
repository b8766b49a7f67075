"""Spatial mixing (HOPE phase C): MLP-Mixer token mixing inside each frame.

Memories and CMS act on each token alone, so without this a HOPE stack has no
interaction between the patches of a frame (seed 002, root cause 2). Token mixing
applies LN, then Linear(N -> N), GELU, Linear(N -> N) along the token axis of every
frame separately (N = tokens per frame, P + 2), adds the result to the input, and never
mixes tokens of different frames (time is the memory's job, and mixing across frames
would break causality). The second linear starts at zero, so at initialisation the
block is exactly the block without mixing. No biases.
"""

from __future__ import annotations

from timm.layers import DropPath
from torch import Tensor, nn

from hopecli.model.init import init_layers_


class SpatialMixing(nn.Module):
    """x [B, T*N, D] -> x + mix(LN(x)), mixing the N tokens of each frame."""

    def __init__(self, tokens_per_frame: int, dim: int, drop_path: float = 0.0) -> None:
        super().__init__()
        self.tokens_per_frame = tokens_per_frame
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.fc1 = nn.Linear(tokens_per_frame, tokens_per_frame, bias=False)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(tokens_per_frame, tokens_per_frame, bias=False)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        init_layers_(self)
        nn.init.zeros_(self.fc2.weight)

    def forward(self, x: Tensor) -> Tensor:
        B, L, D = x.shape
        N = self.tokens_per_frame
        if L % N != 0:
            raise ValueError(f"sequence of {L} tokens is not a whole number of frames of {N} tokens")
        y = self.norm(x).view(B, L // N, N, D).transpose(2, 3)  # [B, T, D, N]
        y = self.fc2(self.act(self.fc1(y)))  # [B, T, D, N]
        y = y.transpose(2, 3).reshape(B, L, D)
        return x + self.drop_path(y)
