"""`hope import` as a library function: pre-encoded clips of the seeds' earlier pipeline
-> feature store, without re-encoding.

Their layout (lifelonglearner94/masterthesis_training_pipeline, the precomputed-features
datamodule): `DIR/clip_XXXXX/feature_maps/<name>.npy` with V-JEPA 2 tubelet features
([T, N, D], flattened [T*N, D] or [T, H, W, D]; T = frames / 2) and
`DIR/clip_XXXXX/actions_states/actions.npy` [T_original, A], optionally `extrinsics.npy`
beside it. Their loader keeps only the action at original index 1, as the action of step
0, with every other step's action and all states zero (state_dim = action_dim); that is
the default here (`first`). `mean` instead averages each tubelet's two per-frame actions,
as `extract` does, for sidecars with one action per frame. Tasks are ranges of the clip
number XXXXX (half-open, like their `clip_start` / `clip_end`).

The run plans first, reading only the .npy headers (memory-mapped): a file that cannot be
loaded or has another rank, width, patch count, step count or action dim than the store
(or the first usable clip) is skipped with one reason naming it. It then loads, checks
and writes clip by clip (done-mask last), so an interrupted import resumes where it
stopped and a re-run gives the same store. Extrinsics are not stored (their loader only
reads them on request); the result counts the clips that have them. `frames_per_clip`
is the clips' common T_original, or 2T when their action rows differ.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hopecli.data.store import COMPRESSIONS, DEFAULT_COMPRESSION, ClipFeatures, FeatureStore
from hopecli.errors import InputError, StoreMismatchError
from hopecli.extract import Skipped, WriteResult
from hopecli.version import __version__

ACTION_MODES = ("first", "mean")
CLIP_PREFIX = "clip_"
FEATURE_DIR = "feature_maps"
ACTIONS_FILE = Path("actions_states") / "actions.npy"
EXTRINSICS_FILE = Path("actions_states") / "extrinsics.npy"
FIRST_ACTION_ROW = 1  # their rule: the action at original index 1 is step 0's action
SOURCE_FORMAT = "masterthesis_training_pipeline"
# V-JEPA 2 encoders (the features' source) use 16 px patches and 2-frame tubelets
PATCH_SIZE = 16
TUBELET_SIZE = 2
# import settings a re-run into an existing store must repeat
MATCHED_IMPORT = ("source_root", "action_mode", "tasks")


class _Fatal(InputError):
    """A problem that ends the run instead of skipping one clip."""


@dataclass(frozen=True)
class TaskRange:
    """Clips numbered start <= XXXXX < end carry the task label `name`."""

    name: str
    start: int
    end: int

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError(f"task name must not be empty, got {self.name!r}")
        if not 0 <= self.start < self.end:
            raise ValueError(f"task {self.name!r}: need 0 <= start < end, "
                             f"got {self.start}:{self.end}")

    @classmethod
    def parse(cls, text: str) -> TaskRange:
        """`name=start:end` -> TaskRange; ValueError quoting `text` when it is not that."""
        name, sep, span = text.partition("=")
        start, colon, end = span.partition(":")
        if not (sep and colon and start.strip().isdigit() and end.strip().isdigit()):
            raise ValueError(f"{text!r} is not NAME=START:END")
        return cls(name.strip(), int(start), int(end))

    def holds(self, number: int | None) -> bool:
        return number is not None and self.start <= number < self.end


@dataclass(frozen=True)
class ImportConfig:
    """Settings of one import run (CLI options map onto these fields)."""

    feature_map: str = "vjepa2_vitl16"
    patches_per_step: int | None = None  # needed for flattened [T*N, D] feature maps
    tasks: tuple[TaskRange, ...] = ()
    action_mode: str = "first"
    compression: str = DEFAULT_COMPRESSION  # codec of a new store's features (store.COMPRESSIONS)

    def __post_init__(self) -> None:
        if not self.feature_map or "/" in self.feature_map or self.feature_map.endswith(".npy"):
            raise ValueError("feature_map must be a file name without .npy, "
                             f"got {self.feature_map!r}")
        if self.patches_per_step is not None and self.patches_per_step < 1:
            raise ValueError(f"patches_per_step must be positive, got {self.patches_per_step!r}")
        if self.action_mode not in ACTION_MODES:
            raise ValueError(f"action_mode must be one of {ACTION_MODES}, got {self.action_mode!r}")
        if self.compression not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {COMPRESSIONS}, got {self.compression!r}")
        spans = sorted(self.tasks, key=lambda t: t.start)
        for a, b in zip(spans, spans[1:]):
            if b.start < a.end:
                raise ValueError(f"task ranges overlap: {a.name}={a.start}:{a.end} and "
                                 f"{b.name}={b.start}:{b.end}")

    def task_of(self, number: int | None) -> str:
        """The label of clip number `number`: its range's name, "" outside every range."""
        return next((t.name for t in self.tasks if t.holds(number)), "")


@dataclass
class ImportResult(WriteResult):
    tasks: dict[str, int] = field(default_factory=dict)  # label -> clips (imported or planned)
    unlabelled: int = 0  # clips outside every --task range (only counted when tasks are given)
    with_extrinsics: int = 0
    frames_per_clip: int | None = None

    def details(self) -> dict[str, Any]:
        return {"tasks": self.tasks, "clips_without_task": self.unlabelled,
                "clips_with_extrinsics": self.with_extrinsics, "frames_per_clip": self.frames_per_clip}


@dataclass(frozen=True)
class _Clip:
    """One clip folder as planned: its files and the shapes in their headers."""

    name: str
    number: int | None
    features: Path
    actions: Path
    shape: tuple[int, ...]  # feature map as stored
    action_shape: tuple[int, ...]  # [T_original, A]
    has_extrinsics: bool


@dataclass(frozen=True)
class _Reference:
    """The shapes every clip must have: the store's, or the first usable clip's."""

    steps: int
    patches: int
    grid: tuple[int, int]
    dim: int
    action_dim: int


def clip_number(name: str) -> int | None:
    """`clip_00042` -> 42; None when the suffix is not a number."""
    suffix = name[len(CLIP_PREFIX):]
    return int(suffix) if suffix.isdigit() else None


def action_steps(actions: np.ndarray, steps: int, mode: str) -> np.ndarray:
    """Per-step actions [T, A] from the clip's original rows [T_original, A].

    `first`: row 1 becomes step 0's action and every other step's is zero (their rule);
    `mean`: T_original = 2T per-frame rows, each step the mean of its tubelet's two rows.
    """
    if mode == "mean":
        return actions.reshape(steps, TUBELET_SIZE, -1).mean(axis=1).astype(np.float32)
    out = np.zeros((steps, actions.shape[1]), dtype=np.float32)
    out[0] = actions[FIRST_ACTION_ROW]
    return out


def _header(path: Path) -> np.ndarray:
    """The array memory-mapped (only the header is read); InputError when it cannot be."""
    if not path.is_file():
        raise InputError(f"{path}: missing")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise InputError(f"{path}: cannot be loaded ({e})") from e


def _probe(folder: Path, config: ImportConfig) -> _Clip:
    """The clip's files and shapes; InputError (a skip) when a file is missing or broken."""
    features_path = folder / FEATURE_DIR / f"{config.feature_map}.npy"
    features = _header(features_path)
    if features.ndim not in (2, 3, 4):
        raise InputError(f"{features_path}: feature map of shape {list(features.shape)}; "
                         "expected [T, N, D], [T*N, D] or [T, H, W, D]")
    if not np.issubdtype(features.dtype, np.floating):
        raise InputError(f"{features_path}: dtype {features.dtype} is not floating point")
    if features.ndim == 2 and config.patches_per_step is None:
        raise _Fatal(
            f"{features_path}: flattened [T*N, D] feature map of shape {list(features.shape)}; "
            "give --patches-per-step N so its steps can be told apart"
        )
    actions_path = folder / ACTIONS_FILE
    actions = _header(actions_path)
    if actions.ndim != 2 or not np.issubdtype(actions.dtype, np.number):
        raise InputError(f"{actions_path}: actions of shape {list(actions.shape)} and dtype "
                         f"{actions.dtype}; expected numbers [T_original, A]")
    return _Clip(folder.name, clip_number(folder.name), features_path, actions_path,
                 tuple(features.shape), tuple(actions.shape), (folder / EXTRINSICS_FILE).is_file())


def _layout(clip: _Clip, patches: int | None) -> tuple[int, int, tuple[int, int] | None, int]:
    """(T, N, grid or None, D) of a clip's feature map; InputError when the flattened rows
    do not split into steps of `patches`."""
    shape = clip.shape
    if len(shape) == 4:
        return shape[0], shape[1] * shape[2], (shape[1], shape[2]), shape[3]
    if len(shape) == 3:
        return shape[0], shape[1], None, shape[2]
    if patches is None or shape[0] % patches:
        raise InputError(f"{clip.features}: {shape[0]} rows are not a multiple of "
                         f"{patches} patches per step")
    return shape[0] // patches, patches, None, shape[1]


def _reference(first: _Clip, config: ImportConfig) -> _Reference:
    """The shapes of a new store, from its first usable clip (InputError: not usable;
    _Fatal: no grid can be told for the store)."""
    steps, patches, grid, dim = _layout(first, config.patches_per_step)
    if config.patches_per_step not in (None, patches):
        raise InputError(f"{first.features}: {patches} patches per step, not "
                         f"--patches-per-step {config.patches_per_step}")
    if grid is None:
        side = math.isqrt(patches)
        if side * side != patches:
            raise _Fatal(
                f"{first.features}: {patches} patches per step is not a square grid; "
                "save the feature maps as [T, H, W, D] so the grid is known"
            )
        grid = (side, side)
    return _Reference(steps, patches, grid, dim, first.action_shape[1])


def _check(clip: _Clip, ref: _Reference, mode: str) -> None:
    """InputError naming the file when the clip does not fit the reference shapes."""
    steps, patches, grid, dim = _layout(clip, ref.patches)
    f, a = clip.features, clip.actions
    if dim != ref.dim:
        raise InputError(f"{f}: feature width D = {dim}, the other clips have {ref.dim}")
    if patches != ref.patches:
        raise InputError(f"{f}: {patches} patches per step, the other clips have {ref.patches}")
    if grid is not None and grid != ref.grid:
        raise InputError(f"{f}: grid {grid[0]}x{grid[1]}, the other clips have "
                         f"{ref.grid[0]}x{ref.grid[1]}")
    if steps != ref.steps:
        raise InputError(f"{f}: {steps} steps, the other clips have {ref.steps}")
    rows, action_dim = clip.action_shape
    if action_dim != ref.action_dim:
        raise InputError(f"{a}: action_dim {action_dim}, the other clips have {ref.action_dim}")
    if mode == "first" and rows <= FIRST_ACTION_ROW:
        raise InputError(f"{a}: {rows} action row(s); the first-action rule reads row "
                         f"{FIRST_ACTION_ROW}")
    if mode == "mean" and rows != TUBELET_SIZE * steps:
        raise InputError(f"{a}: {rows} action rows; --action-mode mean needs one per frame, "
                         f"{TUBELET_SIZE} x {steps} steps = {TUBELET_SIZE * steps}")


def _load(clip: _Clip, ref: _Reference, mode: str) -> ClipFeatures:
    """The clip's arrays in store layout; InputError when unreadable or not finite."""
    features = np.asarray(_header(clip.features), dtype=np.float16)
    features = features.reshape(ref.steps, ref.patches, ref.dim)  # [T, P, D]
    actions = np.asarray(_header(clip.actions), dtype=np.float32)  # [T_original, A]
    if not np.isfinite(features).all():
        raise InputError(f"{clip.features}: NaN or infinite values (or beyond the float16 range)")
    if not np.isfinite(actions).all():
        raise InputError(f"{clip.actions}: NaN or infinite values")
    steps = action_steps(actions, ref.steps, mode)  # [T, A]
    return ClipFeatures(features=features, actions=steps, states=np.zeros_like(steps))


def store_attrs(config: ImportConfig, ref: _Reference, frames: int, source: Path) -> dict[str, Any]:
    """The attributes of a store made by import (interfaces.md), the encoder marked imported."""
    return {
        "hope_version": __version__,
        "encoder": {"name": f"imported:{config.feature_map}",
                    "config": {"feature_map": config.feature_map, "embed_dim": ref.dim},
                    "checksum": "imported", "random_features": False},
        "time_mode": "tubelet",
        "frames_per_clip": frames,
        "resolution": None,  # not recorded by the source pipeline
        "fps": None,
        "tubelet_size": TUBELET_SIZE,
        "patch_size": PATCH_SIZE,
        "patches_per_step": ref.patches,
        "grid": list(ref.grid),
        "action_dim": ref.action_dim,
        "state_dim": ref.action_dim,
        "source_root": str(source),
        "import": {"format": SOURCE_FORMAT, "source_root": str(source),
                   "action_mode": config.action_mode,
                   "tasks": [[t.name, t.start, t.end] for t in config.tasks]},
    }


def _check_import_settings(store: FeatureStore, attrs: dict[str, Any]) -> None:
    """StoreMismatchError unless `store` was imported from the same folder, tasks and rule."""
    stored = store.attrs.get("import") or {}
    for key in MATCHED_IMPORT:
        if stored.get(key) != attrs["import"][key]:
            raise StoreMismatchError(
                f"{store.path}: store was imported with {key} = {stored.get(key)!r}, not "
                f"{attrs['import'][key]!r}; use another --out or the settings it was made with"
            )


def import_clips(source: str | Path, out: str | Path, config: ImportConfig = ImportConfig(), *,
                 on_skip: Callable[[Skipped], None] | None = None,
                 on_start: Callable[[int], None] | None = None,
                 on_clip: Callable[[str], None] | None = None) -> ImportResult:
    """Import the clip folders of `source` into the store at `out` (created or resumed).

    Callbacks as in `extract`: `on_skip` per skipped clip, `on_start(n)` with the number of
    clips to write, `on_clip(name)` after each clip is in the store. InputError when
    `source` holds no clips with the feature map or a flattened map comes without
    `config.patches_per_step`; StoreMismatchError when `out` was made otherwise; every
    other bad clip is a skip in the result.
    """
    started = time.perf_counter()
    source, out = Path(source), Path(out)
    result = ImportResult(store=out)
    if not source.is_dir():
        raise InputError(f"{source}: not a folder")
    folders = sorted((d for d in source.iterdir() if d.is_dir() and d.name.startswith(CLIP_PREFIX)),
                     key=lambda d: (clip_number(d.name) is None, clip_number(d.name) or 0, d.name))
    if not any((d / FEATURE_DIR / f"{config.feature_map}.npy").is_file() for d in folders):
        raise InputError(f"{source}: no {CLIP_PREFIX}XXXXX/{FEATURE_DIR}/{config.feature_map}.npy "
                         "found (check --feature-map)")

    def skip(path: str, reason: str) -> None:
        result.skipped.append(Skipped(path, reason))
        if on_skip is not None:
            on_skip(result.skipped[-1])

    existing = FeatureStore.open(out, writable=True) if out.exists() else None
    ref: _Reference | None = None
    if existing is not None:
        _, steps, patches, dim = existing.group["features"].shape
        if config.patches_per_step not in (None, patches):
            raise StoreMismatchError(f"{out}: store has {patches} patches per step, not "
                                     f"--patches-per-step {config.patches_per_step}")
        ref = _Reference(steps, patches, tuple(existing.attrs["grid"]), dim,
                         existing.attrs["action_dim"])

    clips: list[_Clip] = []
    for folder in folders:
        try:
            clip = _probe(folder, config)
            ref = ref or _reference(clip, config)
            _check(clip, ref, config.action_mode)
        except _Fatal:
            raise
        except InputError as e:
            skip(str(folder), str(e))
            continue
        clips.append(clip)
    if not clips:
        result.seconds = time.perf_counter() - started
        return result

    rows = {c.action_shape[0] for c in clips}
    result.frames_per_clip = rows.pop() if len(rows) == 1 else TUBELET_SIZE * ref.steps
    labels = [config.task_of(c.number) for c in clips]
    result.tasks = {name: labels.count(name) for name in dict.fromkeys(labels) if name}
    result.unlabelled = labels.count("") if config.tasks else 0
    result.with_extrinsics = sum(c.has_extrinsics for c in clips)

    attrs = store_attrs(config, ref, result.frames_per_clip, source.resolve())
    store = FeatureStore.create_or_resume(out, attrs, steps=ref.steps, dim=ref.dim,
                                          compression=config.compression)
    if existing is not None:
        _check_import_settings(store, attrs)
    indices = store.add_clips([c.name for c in clips], labels)
    done = store.done
    todo = [(i, c) for i, c in zip(indices, clips) if not done[i]]
    result.already_done = [c.name for i, c in zip(indices, clips) if done[i]]
    if on_start is not None:
        on_start(len(todo))
    for i, clip in todo:
        try:
            data = _load(clip, ref, config.action_mode)
        except InputError as e:
            skip(str(source / clip.name), str(e))
            continue
        store.write(i, data)
        result.written.append(clip.name)
        if on_clip is not None:
            on_clip(clip.name)
    result.seconds = time.perf_counter() - started
    return result
