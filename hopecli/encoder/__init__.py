"""Frozen V-JEPA 2 video encoder: 3D RoPE, the vision transformer and its checkpoint loaders."""

from hopecli.encoder.config import ENCODER_SIZES, EncoderConfig, encoder_config, size_name
from hopecli.encoder.loading import LoadedEncoder, file_sha256, load_encoder, save_encoder
from hopecli.encoder.preprocess import IMAGENET_MEAN, IMAGENET_STD, preprocess_video
from hopecli.encoder.rope import grid_positions, rope_3d, rope_block_dim
from hopecli.encoder.vit import VisionTransformer

__all__ = [
    "ENCODER_SIZES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "EncoderConfig",
    "LoadedEncoder",
    "VisionTransformer",
    "encoder_config",
    "file_sha256",
    "grid_positions",
    "load_encoder",
    "preprocess_video",
    "rope_3d",
    "rope_block_dim",
    "save_encoder",
    "size_name",
]
