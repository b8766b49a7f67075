"""The V-JEPA 2 vision transformer: tubelet embedding, RoPE attention blocks, final norm.

Parameter names follow facebookresearch/vjepa2 after its `module.` / `backbone.` prefixes
are stripped (patch_embed.proj, blocks.{i}.norm1 / attn.qkv / attn.proj / norm2 /
mlp.fc1 / mlp.fc2, norm), so official weights load by name. The model is only ever run
frozen, so it has no dropout or stochastic depth.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from timm.layers import Mlp
from torch import Tensor, nn

from hopecli.encoder.config import EncoderConfig
from hopecli.encoder.rope import grid_positions, rope_3d

INIT_STD = 0.02


class TubeletEmbed(nn.Module):
    """Conv3d with kernel = stride = (tubelet, patch, patch); tokens ordered t, h, w."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        kernel = (config.tubelet_size, config.patch_size, config.patch_size)
        self.proj = nn.Conv3d(config.in_chans, config.embed_dim, kernel_size=kernel, stride=kernel)

    def forward(self, video: Tensor) -> Tensor:
        return self.proj(video).flatten(2).transpose(1, 2)  # [B, t*h*w, D]


class RoPEAttention(nn.Module):
    """Multi-head self-attention, fused qkv, 3D RoPE on queries and keys."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.num_heads = config.num_heads
        self.qkv = nn.Linear(config.embed_dim, 3 * config.embed_dim, bias=config.qkv_bias)
        self.proj = nn.Linear(config.embed_dim, config.embed_dim)

    def forward(self, x: Tensor, pos: Tensor) -> Tensor:
        # x [B, N, D], pos [N, 3]
        qkv = self.qkv(x).unflatten(-1, (3, self.num_heads, -1)).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each [B, H, N, head_dim]
        q, k = rope_3d(q, pos), rope_3d(k, pos)
        y = F.scaled_dot_product_attention(q, k, v)  # [B, H, N, head_dim]
        return self.proj(y.transpose(1, 2).flatten(2))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(config.embed_dim, eps=config.norm_eps)
        self.attn = RoPEAttention(config)
        self.norm2 = nn.LayerNorm(config.embed_dim, eps=config.norm_eps)
        self.mlp = Mlp(config.embed_dim, config.mlp_hidden_dim, act_layer=nn.GELU)

    def forward(self, x: Tensor, pos: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x), pos)
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    """Frozen V-JEPA 2 video encoder.

    forward(video [B, C, F, H, W], ImageNet-normalised) -> features [B, F/2 * H/16 * W/16, D],
    the output of the final LayerNorm. RoPE positions are the integer (frame, row, column)
    indices of the actual input grid, so any frame count and resolution that the tubelet
    tiles can be encoded.
    """

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.patch_embed = TubeletEmbed(config)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.depth))
        self.norm = nn.LayerNorm(config.embed_dim, eps=config.norm_eps)

    def forward(self, video: Tensor) -> Tensor:
        if video.dim() != 5 or video.shape[1] != self.config.in_chans:
            raise ValueError(
                f"video must be [B, {self.config.in_chans}, F, H, W], got {tuple(video.shape)!r}"
            )
        t, h, w = self.config.token_grid(*video.shape[2:])
        pos = grid_positions(t, h, w, device=video.device)  # [N, 3]
        x = self.patch_embed(video)  # [B, N, D]
        for block in self.blocks:
            x = block(x, pos)
        return self.norm(x)


def init_deterministic(model: VisionTransformer, seed: int) -> VisionTransformer:
    """Fill model with weights that depend on seed only, bit for bit on every machine.

    The scheme follows the reference initialisation (weights of std 0.02, zero biases,
    unit LayerNorms, the output projections of block i scaled by 1/sqrt(2 (i+1))), but
    draws uniform values from numpy's PCG64 stream, whose float64 output is exact integer
    arithmetic, so no platform-dependent transcendental function touches the weights.
    """
    rng = np.random.Generator(np.random.PCG64(seed))
    bound = INIT_STD * math.sqrt(3.0)  # uniform(-b, b) has std 0.02
    norms = {id(p) for m in model.modules() if isinstance(m, nn.LayerNorm) for p in m.parameters()}
    with torch.no_grad():
        for name, param in model.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if id(param) in norms:
                param.fill_(1.0 if leaf == "weight" else 0.0)
            elif leaf == "bias":
                param.zero_()
            else:
                values = rng.random(param.numel(), dtype=np.float64) * (2 * bound) - bound
                param.copy_(torch.from_numpy(values.astype(np.float32)).view_as(param))
        for i, block in enumerate(model.blocks):
            scale = 1.0 / math.sqrt(2.0 * (i + 1))
            block.attn.proj.weight.mul_(scale)
            block.mlp.fc2.weight.mul_(scale)
    return model
