"""Video files: finding them, sampling clip windows, decoding, preprocessing, writing.

Decoding uses decord; PyAV opens each file first, because it reports a corrupt container
as a clean exception where decord also prints native log lines. Preprocessing follows
V-JEPA 2's evaluation transform (DESIGN section 3): the short side is resized to
crop * 256 / 224 with bilinear interpolation (half-pixel centres, no antialiasing, as
OpenCV's INTER_LINEAR that the reference applies to numpy frames), the centre crop is
taken, and pixels are scaled to [0, 1] and normalised with the ImageNet mean and std.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TextIO

import av
import decord
import numpy as np
import torch
import torch.nn.functional as F

from hopecli.errors import InputError

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".avi", ".webm")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LONG_CLIPS = ("windows", "cut")

decord.logging.set_level(decord.logging.QUIET)


def list_videos(paths: Iterable[str | Path], stdin: TextIO | None = None) -> list[Path]:
    """Video files named by PATHS: files as given, folders searched recursively (sorted),
    and `-` read as newline-separated paths from stdin. Duplicates are dropped.

    A path that does not exist is kept, so that reading it reports the problem per file.
    """
    found: list[Path] = []
    for raw in paths:
        if str(raw) == "-":
            lines = (stdin or sys.stdin).read().splitlines()
            found += [Path(line.strip()) for line in lines if line.strip()]
            continue
        path = Path(raw)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*")
                            if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
        else:
            found.append(path)
    unique: dict[Path, Path] = {}
    for path in found:
        unique.setdefault(path.resolve(), path)
    return list(unique.values())


@dataclass(frozen=True)
class Sampling:
    """How clip windows are cut from a video.

    A window is `frames` frames taken every `stride` source frames; `target_fps` picks the
    stride from the video's frame rate instead (stride = round(fps / target_fps), at least
    1). A video longer than one window yields consecutive non-overlapping windows
    (`long_clips="windows"`) or only its first (`"cut"`); a shorter one yields none.
    """

    frames: int = 16
    stride: int | None = None
    target_fps: float | None = None
    long_clips: str = "windows"

    def __post_init__(self) -> None:
        if not isinstance(self.frames, int) or self.frames < 1:
            raise ValueError(f"frames must be a positive integer, got {self.frames!r}")
        if self.stride is not None and self.target_fps is not None:
            raise ValueError("give stride or target_fps, not both")
        if self.stride is not None and (not isinstance(self.stride, int) or self.stride < 1):
            raise ValueError(f"stride must be a positive integer, got {self.stride!r}")
        if self.target_fps is not None and not self.target_fps > 0:
            raise ValueError(f"target_fps must be positive, got {self.target_fps!r}")
        if self.long_clips not in LONG_CLIPS:
            raise ValueError(f"long_clips must be one of {LONG_CLIPS}, got {self.long_clips!r}")

    def stride_for(self, video_fps: float) -> int:
        if self.stride is not None:
            return self.stride
        if self.target_fps is None or not video_fps > 0:
            return 1
        return max(1, round(video_fps / self.target_fps))

    def windows(self, num_frames: int, video_fps: float) -> list[np.ndarray]:
        """Source frame indices of each window, [frames] int64 each."""
        stride = self.stride_for(video_fps)
        span = self.frames * stride
        count = num_frames // span if self.long_clips == "windows" else min(1, num_frames // span)
        return [np.arange(k * span, (k + 1) * span, stride, dtype=np.int64) for k in range(count)]


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    num_frames: int
    fps: float
    height: int
    width: int


def _open(path: Path) -> decord.VideoReader:
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise InputError(f"{path}: no video stream")
    except av.error.FFmpegError as e:
        raise InputError(f"{path}: not a readable video ({e.strerror})") from e
    try:
        return decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
    except RuntimeError as e:
        raise InputError(f"{path}: not a readable video (decord could not open it)") from e


def probe_video(path: str | Path) -> VideoInfo:
    """Frame count, frame rate and size; InputError naming the file if it cannot be read."""
    path = Path(path)
    reader = _open(path)
    height, width = reader[0].shape[:2] if len(reader) else (0, 0)
    return VideoInfo(path=path, num_frames=len(reader), fps=float(reader.get_avg_fps()),
                     height=int(height), width=int(width))


def _read_with_av(path: Path, indices: Sequence[int]) -> np.ndarray:
    """Decode frames by walking the stream with PyAV (slower; for what decord cannot copy)."""
    wanted = set(indices)
    frames: dict[int, np.ndarray] = {}
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i in wanted:
                frames[i] = frame.to_ndarray(format="rgb24")
            if len(frames) == len(wanted):
                break
    return np.stack([frames[i] for i in indices])


def read_frames(path: str | Path, indices: Sequence[int]) -> np.ndarray:
    """Decode the given frames as RGB, [F, H, W, 3] uint8.

    decord does the work; PyAV takes over when decord fails on a readable file (decord
    cannot copy out frames narrower than its row alignment, e.g. 48 px wide).
    """
    path = Path(path)
    reader = _open(path)
    try:
        return reader.get_batch(list(indices)).asnumpy()
    except (decord.DECORDError, RuntimeError, IndexError):
        pass
    try:
        return _read_with_av(path, indices)
    except (av.error.FFmpegError, KeyError) as e:
        raise InputError(f"{path}: cannot decode frames {indices[0]}..{indices[-1]}") from e


def resize_size(height: int, width: int, crop: int) -> tuple[int, int]:
    """(height, width) after resizing the short side to int(crop * 256 / 224)."""
    short = int(crop * 256 / 224)
    if width <= height:
        return int(short * height / width), short
    return short, int(short * width / height)


def preprocess(frames: np.ndarray, crop: int) -> torch.Tensor:
    """Frames [F, H, W, 3] uint8 -> encoder input [3, F, crop, crop] float32."""
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be [F, H, W, 3], got shape {list(frames.shape)}")
    video = torch.from_numpy(np.ascontiguousarray(frames))
    video = video.permute(0, 3, 1, 2).float()  # [F, 3, H, W]
    height, width = resize_size(video.shape[2], video.shape[3], crop)
    if (height, width) != tuple(video.shape[2:]):
        video = F.interpolate(video, size=(height, width), mode="bilinear", align_corners=False)
    top = int(round((height - crop) / 2.0))
    left = int(round((width - crop) / 2.0))
    video = video[:, :, top:top + crop, left:left + crop] / 255.0
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return ((video - mean) / std).permute(1, 0, 2, 3).contiguous()  # [3, F, crop, crop]


def write_video(path: str | Path, frames: np.ndarray, fps: float, crf: int = 18) -> Path:
    """Write RGB frames [F, H, W, 3] uint8 as H.264 (yuv420p) with PyAV."""
    path = Path(path)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[1] % 2 or frames.shape[2] % 2:
        raise ValueError(f"frames must be [F, H, W, 3] with even H and W, got {list(frames.shape)}")
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.height, stream.width = frames.shape[1], frames.shape[2]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf)}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path
