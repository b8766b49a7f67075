"""Video files: finding them, sampling clip windows, decoding, preprocessing, writing.

Decoding uses decord; PyAV opens each file first, because it reports a corrupt container
as a clean exception where decord also prints native log lines. Preprocessing is the
encoder's own (`hopecli.encoder.preprocess.preprocess_video`, DESIGN section 3), re-exported
here as `preprocess` so that extract and every other caller share one function.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TextIO

import av
import decord
import numpy as np

from hopecli.encoder.preprocess import IMAGENET_MEAN, IMAGENET_STD, resize_size
from hopecli.encoder.preprocess import preprocess_video as preprocess
from hopecli.errors import InputError

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "Sampling", "VideoInfo", "list_videos", "preprocess",
           "probe_video", "read_frames", "resize_size", "write_video"]

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".avi", ".webm")
LONG_CLIPS = ("windows", "cut")

decord.logging.set_level(decord.logging.QUIET)


def list_videos(paths: Iterable[str | Path], stdin: TextIO | None = None,
                on_empty: Callable[[Path], None] | None = None,
                on_broken: Callable[[Path, str], None] | None = None) -> list[Path]:
    """Video files named by PATHS: files as given, folders searched recursively (sorted),
    and `-` read as newline-separated paths from stdin. Duplicates are dropped.

    A path that does not exist is kept, so that reading it reports the problem per file;
    a folder without any video is passed to `on_empty`; a symlink that loops or points
    nowhere (given, read from stdin, or a video name inside a folder) is left out and
    passed to `on_broken` with one line naming it.
    """
    found: list[Path] = []
    for raw in paths:
        if str(raw) == "-":
            lines = (stdin or sys.stdin).read().splitlines()
            found += [Path(line.strip()) for line in lines if line.strip()]
            continue
        path = Path(raw)
        if path.is_dir():
            inside = sorted(p for p in path.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES
                            and (p.is_file() or p.is_symlink()))
            if not inside and on_empty is not None:
                on_empty(path)
            found += inside
        else:
            found.append(path)
    unique: dict[Path, Path] = {}
    for path in found:
        problem = broken_link(path)
        if problem is not None:
            if on_broken is not None:
                on_broken(path, f"{path}: {problem}; skipped")
            continue
        unique.setdefault(path.resolve(), path)
    return list(unique.values())


def broken_link(path: Path) -> str | None:
    """What is wrong with `path` when it is a symlink that loops or points nowhere, else None."""
    if not path.is_symlink():
        return None
    try:
        os.stat(path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "symlink loop (the link points back to itself)"
        return f"dangling symlink (its target {os.readlink(path)} does not exist)"
    return None


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
