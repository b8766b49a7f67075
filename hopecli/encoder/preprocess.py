"""V-JEPA 2 input preprocessing: short-side resize, center crop, ImageNet normalisation.

The one preprocessing of the toolkit: `hope extract`, rollout goals and direct callers of
the encoder all go through `preprocess_video`. It follows the transform V-JEPA 2's
released models are used with (transformers' VJEPA2VideoProcessor, the torchvision
transform of facebookresearch/vjepa2's demo): the short side is resized to
crop * 256 / 224 by bilinear interpolation with antialiasing (half-pixel centres; a
downscale averages over the source pixels instead of sampling four of them), the long
side in proportion, then the centre crop, / 255 and the ImageNet mean and std.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resize_short_side(crop: int) -> int:
    """Short side before the center crop: crop * 256 / 224, as V-JEPA 2 evaluates."""
    return int(crop * 256 / 224)


def resize_size(height: int, width: int, crop: int) -> tuple[int, int]:
    """(height, width) after resizing the short side to resize_short_side(crop), the long
    side scaled in proportion (truncated, as torchvision)."""
    short = resize_short_side(crop)
    if width <= height:
        return int(short * height / width), short
    return short, int(short * width / height)


def preprocess_video(frames: Tensor | np.ndarray, crop: int) -> Tensor:
    """uint8 frames [F, H, W, 3] (tensor or array) -> float video [3, F, crop, crop]."""
    if isinstance(frames, np.ndarray):
        frames = torch.from_numpy(np.ascontiguousarray(frames))
    if frames.dim() != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be [F, H, W, 3], got shape {list(frames.shape)}")
    if crop < 1:
        raise ValueError(f"crop must be positive, got {crop!r}")
    size = resize_size(frames.shape[1], frames.shape[2], crop)
    video = frames.permute(0, 3, 1, 2).to(torch.float32)  # [F, 3, H, W]
    if size != tuple(video.shape[2:]):
        video = F.interpolate(video, size=size, mode="bilinear", antialias=True, align_corners=False)
    top = int(round((size[0] - crop) / 2.0))
    left = int(round((size[1] - crop) / 2.0))
    video = video[:, :, top : top + crop, left : left + crop] / 255.0
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return ((video - mean) / std).transpose(0, 1).contiguous()  # [3, F, crop, crop]
