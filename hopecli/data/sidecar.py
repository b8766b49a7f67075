"""Per-clip sidecars: `clip.npz` next to `clip.mp4` with one row per video frame.

Required: `actions [F, A]` and `states [F, S]` (finite floats). Optional metadata:
`object_states [F, k]`, scalars such as `fps`, `friction`, `mass`, `seed`, and the string
`task` (the clip's task label). Loading never unpickles (`allow_pickle=False`).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hopecli.errors import InputError

REQUIRED = ("actions", "states")


@dataclass(frozen=True)
class Sidecar:
    """A validated sidecar. `meta` holds the scalar entries (fps, friction, mass, seed, ...)."""

    path: Path
    actions: np.ndarray  # [F, A] float32
    states: np.ndarray  # [F, S] float32
    task: str = ""
    object_states: np.ndarray | None = None  # [F, k] float32
    meta: dict[str, float | int | str] = field(default_factory=dict)

    @property
    def frames(self) -> int:
        return self.actions.shape[0]


def sidecar_path(video: str | Path) -> Path:
    """The sidecar that belongs to a video: same folder, same stem, `.npz`."""
    return Path(video).with_suffix(".npz")


def _per_frame(path: Path, name: str, value: np.ndarray, rows: int | None) -> np.ndarray:
    if value.ndim != 2 or value.shape[1] < 1 or value.dtype.kind not in "fiu":
        raise InputError(
            f"{path}: '{name}' has shape {list(value.shape)} and dtype {value.dtype}, "
            "expected numbers of shape [frames, dims]"
        )
    if rows is not None and value.shape[0] != rows:
        raise InputError(f"{path}: '{name}' has {value.shape[0]} rows but 'actions' has {rows}")
    value = value.astype(np.float32)
    if not np.isfinite(value).all():
        raise InputError(f"{path}: '{name}' contains NaN or infinite values")
    return value


def load_sidecar(path: str | Path, frames: int | None = None) -> Sidecar:
    """Read and validate a sidecar; `frames` is the video's frame count to check against.

    Raises InputError naming the file for: a missing or unreadable file, a missing
    `actions`/`states` key, wrong shapes, rows that disagree, NaN or infinite values, and a
    row count that differs from the video's frame count.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(
            f"{path}: sidecar missing (each clip needs a .npz with actions and states)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            data = {key: npz[key] for key in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise InputError(f"{path}: not a readable .npz file ({e})") from e
    for key in REQUIRED:
        if key not in data:
            raise InputError(f"{path}: missing key '{key}'")
    actions = _per_frame(path, "actions", data.pop("actions"), None)
    rows = actions.shape[0]
    states = _per_frame(path, "states", data.pop("states"), rows)
    object_states = None
    if "object_states" in data:
        object_states = _per_frame(path, "object_states", data.pop("object_states"), rows)
    if frames is not None and rows != frames:
        raise InputError(
            f"{path}: {rows} rows of actions and states but the video has {frames} frames")

    task = ""
    if "task" in data:
        value = data.pop("task")
        if value.ndim != 0 or value.dtype.kind != "U":
            raise InputError(f"{path}: 'task' must be a single string, got dtype {value.dtype}")
        task = str(value)
    meta: dict[str, float | int | str] = {}
    for key, value in data.items():
        if value.ndim == 0:
            meta[key] = value.item()
    return Sidecar(path=path, actions=actions, states=states, task=task,
                   object_states=object_states, meta=meta)


def save_sidecar(path: str | Path, actions: np.ndarray, states: np.ndarray, *, task: str = "",
                 object_states: np.ndarray | None = None, **meta: float | int | str) -> Path:
    """Write a sidecar (uncompressed npz; strings as unicode scalars, so no pickling)."""
    path = Path(path)
    arrays: dict[str, np.ndarray] = {
        "actions": np.asarray(actions, np.float32),
        "states": np.asarray(states, np.float32),
        "task": np.array(task),
    }
    if object_states is not None:
        arrays["object_states"] = np.asarray(object_states, np.float32)
    arrays.update({key: np.array(value) for key, value in meta.items()})
    with path.open("wb") as f:
        np.savez(f, **arrays)
    return path
