"""Typed configuration of the V-JEPA 2 video encoder and its named sizes."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from hopecli.encoder.rope import rope_block_dim


@dataclass(frozen=True)
class EncoderConfig:
    """Architecture of one V-JEPA 2 vision transformer (RoPE, no learned position table).

    img_size and num_frames are the nominal input (what `hope extract` crops and samples);
    the model itself accepts any frame count and resolution that the tubelet divides.
    """

    img_size: int = 256
    num_frames: int = 16
    patch_size: int = 16
    tubelet_size: int = 2
    in_chans: int = 3
    embed_dim: int = 1024
    depth: int = 24
    num_heads: int = 16
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    norm_eps: float = 1e-6

    def __post_init__(self) -> None:
        for name in ("img_size", "num_frames", "patch_size", "tubelet_size", "in_chans",
                     "embed_dim", "depth", "num_heads"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.embed_dim % self.num_heads:
            raise ValueError(
                f"embed_dim {self.embed_dim!r} is not divisible by num_heads {self.num_heads!r}"
            )
        if self.img_size % self.patch_size:
            raise ValueError(
                f"img_size {self.img_size!r} is not a multiple of patch_size {self.patch_size!r}"
            )
        if self.num_frames % self.tubelet_size:
            raise ValueError(
                f"num_frames {self.num_frames!r} is not a multiple of tubelet_size "
                f"{self.tubelet_size!r}"
            )
        if not self.mlp_ratio > 0:
            raise ValueError(f"mlp_ratio must be positive, got {self.mlp_ratio!r}")
        if not self.norm_eps > 0:
            raise ValueError(f"norm_eps must be positive, got {self.norm_eps!r}")

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    @property
    def mlp_hidden_dim(self) -> int:
        """Hidden width of each MLP, int(embed_dim * mlp_ratio) as the reference code."""
        return int(self.embed_dim * self.mlp_ratio)

    @property
    def rope_dim(self) -> int:
        """Dims per RoPE axis block (time, height, width) of one head."""
        return rope_block_dim(self.head_dim)

    def token_grid(self, frames: int, height: int, width: int) -> tuple[int, int, int]:
        """(t, h, w) token grid of a video of frames x height x width pixels."""
        if frames % self.tubelet_size or height % self.patch_size or width % self.patch_size:
            raise ValueError(
                f"video of {frames} frames at {height}x{width} px does not tile into "
                f"tubelets of {self.tubelet_size} frames x {self.patch_size}x{self.patch_size} px"
            )
        return frames // self.tubelet_size, height // self.patch_size, width // self.patch_size

    def same_architecture(self, other: EncoderConfig) -> bool:
        """True when both configs build the same weights (nominal input size ignored)."""
        nominal = {"img_size", "num_frames"}
        return all(getattr(self, f.name) == getattr(other, f.name)
                   for f in fields(self) if f.name not in nominal)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EncoderConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown encoder config keys {unknown!r}")
        return cls(**data)


ENCODER_SIZES: dict[str, EncoderConfig] = {
    "vit_large": EncoderConfig(embed_dim=1024, depth=24, num_heads=16, mlp_ratio=4.0),
    "vit_huge": EncoderConfig(embed_dim=1280, depth=32, num_heads=16, mlp_ratio=4.0),
    "vit_giant": EncoderConfig(embed_dim=1408, depth=40, num_heads=22, mlp_ratio=48 / 11),
    # The embedded default: same architecture, small enough for a CPU demo.
    "default": EncoderConfig(img_size=128, num_frames=16, embed_dim=192, depth=4,
                             num_heads=3, mlp_ratio=4.0),
}


def encoder_config(name: str, **overrides: Any) -> EncoderConfig:
    """The named size ("vit_large", "vit_huge", "vit_giant", "default"), fields overridden."""
    if name not in ENCODER_SIZES:
        raise ValueError(f"unknown encoder size {name!r}; choose one of {sorted(ENCODER_SIZES)}")
    return replace(ENCODER_SIZES[name], **overrides)


def size_name(config: EncoderConfig) -> str:
    """Name of the size whose weights config builds, or "custom"."""
    for name, size in ENCODER_SIZES.items():
        if size.same_architecture(config):
            return name
    return "custom"
