"""`hope extract` as a library function: videos + sidecars -> frozen encoder -> feature store.

The run has two phases. Planning opens every video and its sidecar and cuts the clip
windows; a bad file (unreadable video, missing or mismatched sidecar, NaN, a clip
shorter than one window, other action/state dims or frame rate than the rest) is skipped
with one reason naming it, and the good ones go on. Encoding then decodes and
preprocesses windows on a background thread while the encoder runs batches, and writes
each clip to the store (done-mask last), so an interrupted run resumes where it stopped.

Time modes (DESIGN section 2): `tubelet` encodes the window at once, T = frames /
tubelet_size, and averages each tubelet's per-frame actions and states; `frame` encodes
every frame alone (repeated over the tubelet), T = frames, one action and state per frame.
With a stride s > 1 the action of a sampled frame is the sum of the s per-frame actions it
stands for (actions are displacements), and its state is the state at that frame. Object
states (optional in the sidecar) are resampled as states are.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hopecli.data.sidecar import Sidecar, load_sidecar, sidecar_path
from hopecli.data.store import COMPRESSIONS, DEFAULT_COMPRESSION, ClipFeatures, FeatureStore
from hopecli.data.video import Sampling, preprocess, probe_video, read_frames
from hopecli.encoder import LoadedEncoder, load_encoder
from hopecli.errors import InputError
from hopecli.version import __version__

TIME_MODES = ("tubelet", "frame")
DEVICES = ("auto", "cpu", "cuda")
FPS_TOLERANCE = 0.02  # relative difference of sampled frame rates still counted as equal
PREFETCH_BATCHES = 2
RANDOM_NOTE = ("features come from the embedded default encoder with random weights: "
               "good for demos and tests, not V-JEPA 2 features")


@dataclass(frozen=True)
class ExtractConfig:
    """Settings of one extract run (CLI options map onto these fields)."""

    weights: str | None = None
    which: str = "target_encoder"
    frames: int | None = None  # None: the encoder's nominal frame count
    stride: int | None = None
    target_fps: float | None = None
    long_clips: str = "windows"
    time_mode: str = "tubelet"
    batch_size: int = 4
    device: str = "auto"
    shard: tuple[int, int] | None = None  # (I, N): this writer takes every N-th video from the I-th
    compression: str = DEFAULT_COMPRESSION  # codec of a new store's features (store.COMPRESSIONS)

    def __post_init__(self) -> None:
        if self.shard is not None:
            index, count = self.shard
            if not (isinstance(index, int) and isinstance(count, int) and 0 <= index < count):
                raise ValueError(f"shard must be (I, N) with 0 <= I < N, got {self.shard!r}")
        if self.time_mode not in TIME_MODES:
            raise ValueError(f"time_mode must be one of {TIME_MODES}, got {self.time_mode!r}")
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, got {self.device!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {self.batch_size!r}")
        if self.compression not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {COMPRESSIONS}, got {self.compression!r}")
        # sampling options are validated by Sampling itself
        Sampling(frames=self.frames or 2, stride=self.stride, target_fps=self.target_fps,
                 long_clips=self.long_clips)


def parse_shard(text: str) -> tuple[int, int]:
    """"I/N" -> (I, N) with 0 <= I < N; ValueError quoting the text otherwise."""
    index, sep, count = text.partition("/")
    if not (sep and index.strip().isdigit() and count.strip().isdigit()):
        raise ValueError(f"shard must be I/N (e.g. 0/4), got {text!r}")
    shard = (int(index), int(count))
    if not 0 <= shard[0] < shard[1]:
        raise ValueError(f"shard {text!r}: I must be in 0..N-1")
    return shard


def shard_videos(videos: Sequence[Path], shard: tuple[int, int] | None) -> list[Path]:
    """This rank's videos: every N-th, from the I-th, in the order of their resolved paths,
    so the ranks of one command line take disjoint sets that cover every video."""
    if shard is None:
        return list(videos)
    index, count = shard
    ordered = sorted(videos, key=lambda v: str(v.resolve()))
    return ordered[index::count]


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


@dataclass
class WriteResult:
    """What a clip-by-clip store writer did; `to_json` is the `--json` summary."""

    store: Path
    written: list[str] = field(default_factory=list)
    already_done: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    seconds: float = 0.0

    def details(self) -> dict[str, Any]:
        """The writer's own entries of the summary."""
        return {}

    def to_json(self) -> dict[str, Any]:
        return {
            "store": str(self.store),
            "clips_written": len(self.written),
            "clips_already_done": len(self.already_done),
            "clips_skipped": len(self.skipped),
            "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped],
            **self.details(),
            "seconds": round(self.seconds, 3),
        }


@dataclass
class ExtractResult(WriteResult):
    encoder: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"

    def details(self) -> dict[str, Any]:
        return {"encoder": self.encoder, "random_features": bool(self.encoder.get("random_features")),
                "device": self.device}


@dataclass(frozen=True)
class _Window:
    clip_id: str
    task: str
    video: Path
    frames: np.ndarray  # [F] source frame indices
    actions: np.ndarray  # [F, A], per sampled frame
    states: np.ndarray  # [F, S]
    object_states: np.ndarray | None = None  # [F, K], when the sidecar has them


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA device is available")
    return torch.device(name)


def _window_signals(sidecar: Sidecar, frames: np.ndarray,
                    stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-sampled-frame actions (summed over the stride) and states, [F, A] and [F, S]."""
    cumulative = np.concatenate([np.zeros((1, sidecar.actions.shape[1])),
                                 np.cumsum(sidecar.actions, axis=0, dtype=np.float64)])
    ends = np.minimum(frames + stride, sidecar.frames)
    actions = (cumulative[ends] - cumulative[frames]).astype(np.float32)
    return actions, sidecar.states[frames]


def _steps(values: np.ndarray, time_mode: str, tubelet: int) -> np.ndarray:
    """Per-frame rows [F, k] -> per-step rows [T, k] (tubelet mean, or as they are)."""
    if time_mode == "frame":
        return values
    return values.reshape(-1, tubelet, values.shape[-1]).mean(axis=1)


def _clip_root(videos: Sequence[Path], store_attrs: dict[str, Any] | None) -> Path | None:
    """Folder clip ids are relative to: the store's, if every video lies under it, else the
    videos' common folder for a new store; None (absolute ids) for videos outside a store's."""
    resolved = [v.resolve() for v in videos]
    if store_attrs is not None:
        root = Path(store_attrs.get("source_root", "/"))
        return root if all(v.is_relative_to(root) for v in resolved) else None
    return Path(os.path.commonpath([v.parent for v in resolved]))


def _plan(videos: Sequence[Path], sampling: Sampling, reference: dict[str, Any],
          root: Path | None, skip: Callable[[str, str], None]) -> list[_Window]:
    """Clip windows of every usable video; `reference` (action_dim, state_dim, fps) is
    taken from the store or the first usable clip and every other clip must agree."""
    windows: list[_Window] = []
    for video in videos:
        try:
            info = probe_video(video)
            sidecar = load_sidecar(sidecar_path(video), frames=info.num_frames)
            stride = sampling.stride_for(info.fps)
            cuts = sampling.windows(info.num_frames, info.fps)
            if not cuts:
                raise InputError(
                    f"{video}: {info.num_frames} frames, shorter than one window of "
                    f"{sampling.frames} frames x stride {stride}; skipped"
                )
            fps = info.fps / stride
            dims = {"action_dim": sidecar.actions.shape[1], "state_dim": sidecar.states.shape[1]}
            if sidecar.object_states is not None:
                dims["object_state_dim"] = sidecar.object_states.shape[1]
            for key, value in dims.items():
                if reference.setdefault(key, value) != value:
                    raise InputError(f"{sidecar.path}: {key} {value}, but the other clips have "
                                     f"{reference[key]}")
            if abs(fps - reference.setdefault("fps", fps)) > FPS_TOLERANCE * reference["fps"]:
                raise InputError(f"{video}: sampled at {fps:g} fps, the other clips at "
                                 f"{reference['fps']:g} fps (use --target-fps)")
        except InputError as e:
            skip(str(video), str(e))
            continue
        name = str(video.resolve().relative_to(root)) if root else str(video.resolve())
        for k, frames in enumerate(cuts):
            actions, states = _window_signals(sidecar, frames, stride)
            objects = sidecar.object_states[frames] if sidecar.object_states is not None else None
            windows.append(_Window(f"{name}#{k}", sidecar.task, video, frames, actions, states, objects))
    return windows


def store_attrs(encoder: LoadedEncoder, config: ExtractConfig, frames: int,
                reference: dict[str, Any], root: Path | None) -> dict[str, Any]:
    """The attributes a store made by this run carries (interfaces.md)."""
    cfg = encoder.config
    grid = [cfg.img_size // cfg.patch_size, cfg.img_size // cfg.patch_size]
    info = {k: v for k, v in encoder.info.items() if k != "source"}
    attrs = {
        "hope_version": __version__,
        "encoder": info,
        "time_mode": config.time_mode,
        "frames_per_clip": frames,
        "resolution": cfg.img_size,
        "fps": reference["fps"],
        "sampling": {"stride": config.stride, "target_fps": config.target_fps},
        "tubelet_size": cfg.tubelet_size,
        "patch_size": cfg.patch_size,
        "patches_per_step": grid[0] * grid[1],
        "grid": grid,
        "action_dim": reference["action_dim"],
        "state_dim": reference["state_dim"],
        "long_clips": config.long_clips,
    }
    if root is not None:
        attrs["source_root"] = str(root)
    if info.get("random_features"):
        attrs["note"] = RANDOM_NOTE
    return attrs


def _encode(model: torch.nn.Module, video: torch.Tensor, time_mode: str,
            tubelet: int) -> torch.Tensor:
    """video [B, 3, F, H, W] -> features [B, T, P, D] (float32)."""
    b, _, f, h, w = video.shape
    steps = f // tubelet
    if time_mode == "frame":
        # every frame alone, repeated across one tubelet: [B*F, 3, tubelet, H, W]
        video = video.transpose(1, 2).reshape(b * f, 3, 1, h, w).expand(-1, -1, tubelet, -1, -1)
        steps = f
    tokens = model(video)  # [B, T*P, D] or [B*F, P, D]
    return tokens.float().reshape(b, steps, -1, tokens.shape[-1])


def extract(videos: Sequence[Path], out: str | Path, config: ExtractConfig = ExtractConfig(), *,
            encoder: LoadedEncoder | None = None,
            on_skip: Callable[[Skipped], None] | None = None,
            on_start: Callable[[int], None] | None = None,
            on_clip: Callable[[str], None] | None = None) -> ExtractResult:
    """Encode the clips of `videos` into the store at `out` (created, resumed or extended).

    `encoder` overrides `config.weights`/`config.which` (already loaded). Callbacks:
    `on_skip` for each skipped file, `on_start(n)` with the number of clips to encode,
    `on_clip(clip_id)` after each clip is in the store. StoreMismatchError if `out` was
    made with another encoder or settings; everything else bad is a skip in the result.
    """
    started = time.perf_counter()
    out = Path(out)
    encoder = encoder or load_encoder(config.weights, which=config.which)
    frames = config.frames or encoder.config.num_frames
    tubelet = encoder.config.tubelet_size
    if frames % tubelet:
        raise InputError(f"--frames {frames} is not a multiple of the tubelet size {tubelet}")
    sampling = Sampling(frames=frames, stride=config.stride, target_fps=config.target_fps,
                        long_clips=config.long_clips)
    result = ExtractResult(store=out, encoder=dict(encoder.info))

    def skip(path: str, reason: str) -> None:
        result.skipped.append(Skipped(path, reason))
        if on_skip is not None:
            on_skip(result.skipped[-1])

    device = resolve_device(config.device)  # before anything is written
    result.device = str(device)
    mine = shard_videos(videos, config.shard)

    def plan(attrs: dict[str, Any] | None, store: FeatureStore | None = None,
             ) -> tuple[list[_Window], dict[str, Any], list[Skipped]]:
        """This writer's clip windows against a store's attributes (None: no store yet), the
        reference dims and fps, and the skips. Clip ids are relative to a root taken from
        all the videos, so that every shard of one command line names its clips alike."""
        reference = {k: attrs[k] for k in ("action_dim", "state_dim", "fps")} if attrs else {}
        if store is not None and store.has_object_states:
            reference["object_state_dim"] = store.group["object_states"].shape[-1]
        skips: list[Skipped] = []
        root = _clip_root(videos, attrs) if videos else None
        windows = _plan(mine, sampling, reference, root, lambda p, r: skips.append(Skipped(p, r)))
        return windows, reference, skips

    existing = FeatureStore.open(out, writable=True) if FeatureStore.exists(out) else None
    if existing is not None:
        reference = {k: existing.attrs[k] for k in ("action_dim", "state_dim", "fps")}
        existing.check_compatible(store_attrs(encoder, config, frames, reference, None))
    existing_attrs = existing.attrs if existing is not None else None
    windows, reference, skips = plan(existing_attrs, existing)
    store = None
    if windows:
        steps = frames if config.time_mode == "frame" else frames // tubelet
        root = _clip_root(videos, existing_attrs)
        store = FeatureStore.create_or_resume(out, store_attrs(encoder, config, frames, reference, root),
                                              steps=steps, dim=encoder.config.embed_dim,
                                              compression=config.compression)
        if existing is None and not store.created:  # another writer made it meanwhile: its names
            windows, reference, skips = plan(store.attrs, store)
    for skipped in skips:
        skip(skipped.path, skipped.reason)
    if store is None or not windows:
        result.seconds = time.perf_counter() - started
        return result

    indices = store.add_clips([w.clip_id for w in windows], [w.task for w in windows])
    done = store.done
    # a done clip whose chunks do not read back (missing, truncated) is encoded again
    done = [bool(done[i]) and store.damage(i) is None for i in indices]
    todo = [(i, w) for i, w, d in zip(indices, windows, done) if not d]
    result.already_done = [w.clip_id for w, d in zip(windows, done) if d]
    if on_start is not None:
        on_start(len(todo))

    model = encoder.model.to(device)
    crop = encoder.config.img_size

    def load(batch: list[tuple[int, _Window]]) -> list[tuple[int, _Window, torch.Tensor | str]]:
        loaded = []
        for i, w in batch:
            try:
                loaded.append((i, w, preprocess(read_frames(w.video, w.frames), crop)))
            except InputError as e:
                loaded.append((i, w, str(e)))
        return loaded

    batches = [todo[k:k + config.batch_size] for k in range(0, len(todo), config.batch_size)]
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending: deque[Future] = deque(pool.submit(load, b) for b in batches[:PREFETCH_BATCHES])
        for k in range(len(batches)):
            loaded = pending.popleft().result()
            if k + PREFETCH_BATCHES < len(batches):
                pending.append(pool.submit(load, batches[k + PREFETCH_BATCHES]))
            good = [(i, w, x) for i, w, x in loaded if isinstance(x, torch.Tensor)]
            for _, w, reason in loaded:
                if isinstance(reason, str):
                    skip(str(w.video), reason)
            if not good:
                continue
            video = torch.stack([x for _, _, x in good]).to(device)  # [B, 3, F, H, W]
            with torch.inference_mode(), torch.autocast(
                    device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                features = _encode(model, video, config.time_mode, tubelet).cpu().numpy()
            for (i, w, _), feats in zip(good, features):
                with np.errstate(over="ignore"):
                    feats = feats.astype(np.float16)  # as stored: beyond its range is infinite
                if not np.isfinite(feats).all():
                    skip(str(w.video), f"{w.video}: the encoder gave NaN or infinite features for clip "
                                       f"{w.clip_id!r} (or beyond the float16 range); not written")
                    continue
                store.write(i, ClipFeatures(
                    features=feats,
                    actions=_steps(w.actions, config.time_mode, tubelet),
                    states=_steps(w.states, config.time_mode, tubelet),
                    object_states=None if w.object_states is None
                    else _steps(w.object_states, config.time_mode, tubelet)))
                result.written.append(w.clip_id)
                if on_clip is not None:
                    on_clip(w.clip_id)
    result.seconds = time.perf_counter() - started
    return result
