"""V-JEPA 2 input preprocessing: short-side resize, center crop, ImageNet normalisation."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resize_short_side(crop: int) -> int:
    """Short side before the center crop: crop * 256 / 224, as V-JEPA 2 evaluates."""
    return int(crop * 256 / 224)


def preprocess_video(frames: Tensor, crop: int) -> Tensor:
    """uint8 frames [F, H, W, 3] -> float video [3, F, crop, crop] for the encoder.

    Bilinear (antialiased) resize of the short side to crop * 256 / 224, the long side
    scaled in proportion (truncated, as torchvision), a center crop, then / 255 and the
    ImageNet mean and std per channel.
    """
    if frames.dim() != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be [F, H, W, 3], got {tuple(frames.shape)!r}")
    if crop < 1:
        raise ValueError(f"crop must be positive, got {crop!r}")
    height, width = frames.shape[1:3]
    short = resize_short_side(crop)
    if height <= width:
        size = (short, int(short * width / height))
    else:
        size = (int(short * height / width), short)
    video = frames.permute(0, 3, 1, 2).to(torch.float32)  # [F, 3, H, W]
    video = F.interpolate(video, size=size, mode="bilinear", antialias=True, align_corners=False)
    top = int(round((size[0] - crop) / 2.0))
    left = int(round((size[1] - crop) / 2.0))
    video = video[:, :, top : top + crop, left : left + crop] / 255.0
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return ((video - mean) / std).transpose(0, 1).contiguous()  # [3, F, crop, crop]
