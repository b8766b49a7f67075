"""Preprocessing matches transformers' VJEPA2VideoProcessor up to its uint8 rounding."""

import numpy as np
import pytest
import torch

from hopecli.encoder.preprocess import IMAGENET_STD, preprocess_video, resize_short_side

transformers = pytest.importorskip("transformers")
pytest.importorskip("torchvision")

ONE_LEVEL = 1 / 255 / min(IMAGENET_STD)  # HF resizes in uint8, we in float


@pytest.mark.parametrize("height, width", [(120, 160), (97, 75), (64, 64)])
def test_matches_hf_video_processor(height, width):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (4, height, width, 3), dtype=np.uint8)
    processor = transformers.VJEPA2VideoProcessor(crop_size=64)
    ref = processor(videos=[frames], return_tensors="pt")["pixel_values_videos"][0]  # [F, 3, H, W]
    ours = preprocess_video(torch.from_numpy(frames), 64)
    assert ours.shape == (3, 4, 64, 64)
    assert (ours - ref.transpose(0, 1)).abs().max() <= ONE_LEVEL + 1e-5


def test_short_side_rule():
    assert resize_short_side(256) == 292 and resize_short_side(384) == 438
