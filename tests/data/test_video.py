"""Listing, window sampling, decoding errors and the V-JEPA 2 preprocessing."""

import io

import numpy as np
import pytest
import torch

from hopecli.data.video import (IMAGENET_MEAN, IMAGENET_STD, Sampling, list_videos,
                                preprocess, probe_video, read_frames, resize_size,
                                write_video)
from hopecli.errors import InputError


def test_constant_frame_normalises_to_imagenet_values():
    frames = np.empty((2, 40, 60, 3), np.uint8)
    frames[:] = (255, 128, 0)
    video = preprocess(frames, crop=32)
    assert video.shape == (3, 2, 32, 32) and video.dtype == torch.float32
    for c, value in enumerate((255, 128, 0)):
        expected = (value / 255 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]
        assert torch.allclose(video[c], torch.full((2, 32, 32), expected), atol=1e-5)


def test_center_crop_without_resize_is_exact():
    """A frame whose short side already is crop*256/224 is only cropped, at the centre."""
    crop = 28  # short side int(28 * 256 / 224) = 32
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(1, 32, 40, 3), dtype=np.uint8)
    video = preprocess(frames, crop=crop)
    top, left = 2, 6  # round((32 - 28) / 2), round((40 - 28) / 2)
    window = frames[0, top:top + crop, left:left + crop].astype(np.float32) / 255
    expected = (window - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    assert np.allclose(video[:, 0].permute(1, 2, 0).numpy(), expected, atol=1e-5)


def test_resize_is_bilinear_half_pixel():
    """Upscaling 2x with half-pixel centres: output pixel 1 is 3/4 of input 0 + 1/4 of input 1."""
    crop = 4  # short side int(4 * 256 / 224) = 4
    frames = np.zeros((1, 2, 2, 3), np.uint8)
    frames[0, :, 1] = 200
    assert resize_size(2, 2, crop) == (4, 4)
    video = preprocess(frames, crop=crop)
    row = video[0, 0, 0] * IMAGENET_STD[0] + IMAGENET_MEAN[0]  # back to [0, 1]
    assert torch.allclose(row * 255, torch.tensor([0.0, 50.0, 150.0, 200.0]), atol=1e-3)


def test_resize_size_keeps_aspect():
    assert resize_size(240, 320, 256) == (292, 389)
    assert resize_size(320, 240, 256) == (389, 292)


@pytest.mark.parametrize("sampling, frames, fps, starts", [
    (Sampling(frames=4), 9, 8.0, [0, 4]),
    (Sampling(frames=4, long_clips="cut"), 9, 8.0, [0]),
    (Sampling(frames=4, stride=2), 17, 8.0, [0, 8]),
    (Sampling(frames=4, target_fps=10.0), 40, 30.0, [0, 12, 24]),
    (Sampling(frames=4), 3, 8.0, []),
], ids=["windows", "cut", "stride", "target-fps", "too-short"])
def test_windows(sampling, frames, fps, starts):
    windows = sampling.windows(frames, fps)
    assert [int(w[0]) for w in windows] == starts
    stride = sampling.stride_for(fps)
    assert all(np.array_equal(w, w[0] + stride * np.arange(4)) for w in windows)


def test_list_videos_files_folders_and_stdin(tmp_path):
    (tmp_path / "a").mkdir()
    for name in ("a/x.mp4", "a/y.MOV", "a/notes.txt", "z.mp4"):
        (tmp_path / name).write_bytes(b"")
    found = list_videos([tmp_path / "a", tmp_path / "z.mp4"])
    assert found == [tmp_path / "a/x.mp4", tmp_path / "a/y.MOV", tmp_path / "z.mp4"]
    stdin = io.StringIO(f"{tmp_path / 'z.mp4'}\n\n{tmp_path / 'a/x.mp4'}\n")
    assert list_videos(["-", tmp_path / "a"], stdin=stdin) == [
        tmp_path / "z.mp4", tmp_path / "a/x.mp4", tmp_path / "a/y.MOV"]


def test_corrupt_and_missing_videos_are_named(tmp_path):
    bad = tmp_path / "x.mp4"
    bad.write_bytes(b"\x00garbage" * 50)
    with pytest.raises(InputError, match=f"^{bad}: not a readable video"):
        probe_video(bad)
    with pytest.raises(InputError, match=f"^{tmp_path / 'none.mp4'}: no such file$"):
        read_frames(tmp_path / "none.mp4", [0])


def test_write_then_read(tmp_path):
    frames = np.zeros((3, 16, 24, 3), np.uint8)
    frames[1] = 255
    path = write_video(tmp_path / "v.mp4", frames, fps=12.5)
    info = probe_video(path)
    assert (info.num_frames, info.height, info.width) == (3, 16, 24)
    assert info.fps == pytest.approx(12.5)
    decoded = read_frames(path, [0, 1, 2])
    assert decoded.shape == (3, 16, 24, 3)
    assert decoded[0].max() < 10 and decoded[1].min() > 245


def test_extract_preprocessing_is_the_encoders_and_antialiases():
    """Downscaled noise: extract's preprocessing equals preprocess_video (antialiased), which
    differs from plain bilinear sampling by far more than a rounding level."""
    import torch.nn.functional as F

    from hopecli.encoder.preprocess import preprocess_video

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(2, 120, 160, 3), dtype=np.uint8)
    video = preprocess(frames, crop=32)
    assert torch.equal(video, preprocess_video(torch.from_numpy(frames), 32))
    height, width = resize_size(120, 160, 32)
    plain = F.interpolate(torch.from_numpy(frames).permute(0, 3, 1, 2).float(), size=(height, width),
                          mode="bilinear", align_corners=False)
    top, left = round((height - 32) / 2), round((width - 32) / 2)
    plain = (plain[:, :, top:top + 32, left:left + 32] / 255 - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) \
        / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    assert (video - plain.transpose(0, 1)).abs().max() > 0.5  # averaged, not sampled
    # the antialiased downscale keeps the noise's mean but smooths it: lower spread
    assert video.std() < plain.std()
