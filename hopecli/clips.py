"""A clip as a run's predictor reads it: from a feature store, or a video encoded the way
the run's store was made.

A clip from a store must come from a store made with the run's encoder; a video is
encoded by the encoder the run's store was made with (`run_encoder`: the embedded default,
or weights with the recorded checksum), with the store's frames per window, frame rate
and time mode, and cut into the same windows. Either way its shapes must be the ones the
run's predictor needs, or the mismatch is one StoreMismatchError.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from hopecli.data.store import FeatureStore
from hopecli.encoder import EncoderConfig, LoadedEncoder, load_encoder
from hopecli.encoder.loading import EMBEDDED_CHECKSUM
from hopecli.errors import InputError, StoreMismatchError
from hopecli.runs.load import Run
from hopecli.train.losses import normalize_features


@dataclass
class Clip:
    """One clip window's steps as the predictor reads them."""

    name: str
    features: np.ndarray  # [T, P, D] float32, as encoded (not yet layer-normed)
    actions: np.ndarray  # [T, A] float32
    states: np.ndarray  # [T, S] float32
    video: Path | None = None  # the source video, when known (for figures)
    frames: np.ndarray | None = None  # [T] source frame index shown for each step

    def tensors(self, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
        """(layer-normed features [T, P, D], actions [T, A], states [T, S]) on device."""
        z = normalize_features(torch.from_numpy(np.asarray(self.features, np.float32)).to(device))
        return z, torch.from_numpy(self.actions).to(device), torch.from_numpy(self.states).to(device)


def _check_shapes(clip: Clip, run: Run, source: str) -> Clip:
    cfg = run.model.config
    T, P, D = clip.features.shape
    want = {"patches_per_step": (P, cfg.patches_per_step), "feature width": (D, cfg.input_dim),
            "action_dim": (clip.actions.shape[1], cfg.action_dim),
            "state_dim": (clip.states.shape[1], cfg.state_dim)}
    for name, (got, need) in want.items():
        if got != need:
            raise StoreMismatchError(f"{source}: {name} is {got}, the run's predictor needs {need}")
    return clip


def _same_encoder(found: dict, wanted: dict) -> bool:
    return found.get("name") == wanted.get("name") and found.get("checksum") == wanted.get("checksum")


def _step_frames(window: np.ndarray, steps: int, per_step: int) -> np.ndarray:
    """The first source frame of every step of a window."""
    return window[np.arange(steps) * per_step]


def clip_from_store(store_path: str | Path, index: int, run: Run) -> Clip:
    """Clip `index` of a feature store made with the run's encoder."""
    from hopecli.data.video import Sampling, probe_video

    store = FeatureStore.open(store_path)
    if not _same_encoder(store.attrs["encoder"], run.store["encoder"]):
        raise StoreMismatchError(
            f"{store_path}: made with encoder {store.attrs['encoder'].get('name')!r}, the run in "
            f"{run.path} with {run.store['encoder'].get('name')!r}"
        )
    if not 0 <= index < len(store):
        raise InputError(f"{store_path}: no clip {index} (the store has {len(store)})")
    if not store.done[index]:
        raise InputError(f"{store_path}: clip {index} was never finished by extract")
    data = store.read(index)
    store.check_finite([index], data)
    name = store.clips[index]
    clip = Clip(name, np.asarray(data.features, np.float32), data.actions, data.states)
    # the video behind the clip id "relative/path.mp4#window", for figures only
    rel, _, window = name.rpartition("#")
    video = Path(store.attrs.get("source_root", "/")) / rel
    if video.is_file() and window.isdigit():
        sampling = store.attrs.get("sampling") or {}
        try:
            info = probe_video(video)
            windows = Sampling(frames=int(store.attrs["frames_per_clip"]), stride=sampling.get("stride"),
                               target_fps=sampling.get("target_fps")).windows(info.num_frames, info.fps)
        except InputError:
            windows = []
        if int(window) < len(windows):
            clip.video = video
            clip.frames = _step_frames(windows[int(window)], len(clip.actions), run.frames_per_step)
    return _check_shapes(clip, run, f"{store_path} clip {index}")


def run_encoder(run: Run, weights: str | Path | None = None, which: str = "target_encoder") -> LoadedEncoder:
    """The encoder the run's store was made with: the embedded default, or `weights`,
    which must have the recorded checksum."""
    recorded = run.store["encoder"]
    if recorded.get("checksum") == EMBEDDED_CHECKSUM:
        if weights is not None:
            raise StoreMismatchError(
                f"{weights}: the run in {run.path} was trained on features of the embedded default "
                "encoder (random weights); leave out --weights"
            )
        return load_encoder(None, config=EncoderConfig.from_dict(recorded["config"]))
    if weights is None:
        raise InputError(
            f"{run.path}: the run's features come from {recorded.get('name')} "
            f"(sha256 {str(recorded.get('checksum'))[:12]}...); pass those weights with --weights"
        )
    encoder = load_encoder(weights, which=which)
    if not _same_encoder(encoder.info, recorded):
        raise StoreMismatchError(
            f"{weights}: encoder {encoder.info['name']} with sha256 {encoder.info['checksum'][:12]}... is not "
            f"the one the run in {run.path} was trained on ({recorded.get('name')}, "
            f"sha256 {str(recorded.get('checksum'))[:12]}...)"
        )
    return encoder


def _extract_config(run: Run):
    from hopecli.extract import ExtractConfig

    info = run.store
    return ExtractConfig(frames=int(info["frames_per_clip"]), target_fps=float(info["fps"]),
                         time_mode=info["time_mode"], batch_size=1,
                         device="cuda" if run.device.type == "cuda" else "cpu")


def clip_from_video(video: str | Path, run: Run, encoder: LoadedEncoder) -> list[Clip]:
    """Every window of a video (with its sidecar), encoded as the run's store was made.

    The windows of one video follow each other in time (non-overlapping, in order).
    InputError with extract's reason when the video or its sidecar cannot be used.
    """
    from hopecli.data.video import Sampling, probe_video
    from hopecli.extract import extract

    video = Path(video)
    cfg = _extract_config(run)
    with tempfile.TemporaryDirectory(prefix="hope-clip-") as tmp:
        result = extract([video], Path(tmp) / "clip.zarr", cfg, encoder=encoder)
        if result.skipped:
            raise InputError(result.skipped[0].reason)
        store = FeatureStore.open(Path(tmp) / "clip.zarr")
        data = store.read_batch(list(range(len(store))))
    info = probe_video(video)
    windows = Sampling(frames=cfg.frames, target_fps=cfg.target_fps).windows(info.num_frames, info.fps)
    clips = []
    for k, window in enumerate(windows):
        clip = Clip(f"{video.name}#{k}", np.asarray(data.features[k], np.float32), data.actions[k],
                    data.states[k], video, _step_frames(window, data.actions.shape[1], run.frames_per_step))
        clips.append(_check_shapes(clip, run, str(video)))
    return clips


def encode_goal(video: str | Path, run: Run, encoder: LoadedEncoder) -> Tensor:
    """Features [P, D] of the last step of a goal video's first window (no sidecar needed)."""
    from hopecli.data.video import Sampling, preprocess, probe_video, read_frames
    from hopecli.extract import _encode

    video = Path(video)
    cfg = _extract_config(run)
    info = probe_video(video)
    windows = Sampling(frames=cfg.frames, target_fps=cfg.target_fps).windows(info.num_frames, info.fps)
    if not windows:
        raise InputError(f"{video}: {info.num_frames} frames, shorter than one window of {cfg.frames} frames")
    x = preprocess(read_frames(video, windows[0]), encoder.config.img_size)[None].to(run.device)
    model = encoder.model.to(run.device)
    with torch.inference_mode():
        features = _encode(model, x, run.store["time_mode"], encoder.config.tubelet_size)  # [1, T, P, D]
    goal = features[0, -1].float()
    if goal.shape != (run.model.config.patches_per_step, run.model.config.input_dim):
        raise StoreMismatchError(f"{video}: goal features have shape {tuple(goal.shape)}, the run needs "
                                 f"{(run.model.config.patches_per_step, run.model.config.input_dim)}")
    return goal


def goal_frame(video: str | Path, run: Run) -> np.ndarray | None:
    """The video frame [H, W, 3] that encode_goal's features end on (the last frame of the
    goal video's first window), for the plan figure; None when it cannot be read."""
    from hopecli.data.video import Sampling, probe_video, read_frames

    try:
        cfg = _extract_config(run)
        info = probe_video(Path(video))
        windows = Sampling(frames=cfg.frames, target_fps=cfg.target_fps).windows(info.num_frames, info.fps)
        return read_frames(Path(video), [windows[0][-1]])[0] if windows else None
    except InputError:
        return None


def load_clips(
    run: Run,
    *,
    clip: str | Path | None = None,
    store: str | Path | None = None,
    index: int | None = None,
    weights: str | Path | None = None,
    which: str = "target_encoder",
) -> list[Clip]:
    """The windows of a video (encoded as the run's store was) or one store entry."""
    if (clip is None) == (store is None) or (store is not None and index is None):
        raise ValueError("give a clip video, or a store and an index")
    if clip is not None:
        return clip_from_video(clip, run, run_encoder(run, weights, which))
    return [clip_from_store(store, index, run)]
