"""Checkpoints in a run folder, written so that a crash never leaves a torn one.

```
RUN/checkpoints/
  latest.json            {"name": ...}: the checkpoint `--resume` continues from
  experience-0/          after each experience (kept)
  step-0000400/          periodic (only the newest is kept)
    model.safetensors    predictor weights
    state.pt             optimizer state, CMS gradients accumulated so far, progress
```

A checkpoint folder is written under a temporary name and renamed into place; latest.json
is replaced after that. state.pt holds plain tensors, numbers, strings, lists and dicts
only, and is read with torch.load(weights_only=True): loading a run executes no pickled code.
"""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model as load_safetensors_model
from safetensors.torch import save_model as save_safetensors_model
from torch import nn

from hopecli.errors import CheckpointError, HopeError, check_free_space
from hopecli.runs.files import read_latest
from hopecli.runs.folder import CHECKPOINTS, file_mode, write_json

WEIGHTS = "model.safetensors"
STATE = "state.pt"
LATEST = "latest.json"


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / CHECKPOINTS


def save_checkpoint(run_dir: Path, name: str, model: nn.Module, state: dict) -> Path:
    """Write checkpoint `name` (weights + state) and point latest.json at it.

    Older periodic checkpoints (`step-*`) other than this one are removed afterwards.
    """
    root = checkpoint_dir(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".tmp-{name}"
    if tmp.exists():
        shutil.rmtree(tmp)
    check_free_space(root, checkpoint_bytes(model, state), f"checkpoint {name}")
    tmp.mkdir()
    try:
        save_safetensors_model(model, str(tmp / WEIGHTS))
        torch.save(state, tmp / STATE)
        for file in (tmp / WEIGHTS, tmp / STATE):  # safetensors writes 0600
            os.chmod(file, file_mode())
    except BaseException as e:  # a full disk, a signal: the previous checkpoint stays the latest
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, SafetensorError):  # safetensors' own report of a failed write
            raise CheckpointError(f"{tmp / WEIGHTS}: cannot write the checkpoint ({e})") from None
        raise
    final = root / name
    if final.exists():  # left by a crash between the rename and latest.json
        shutil.rmtree(final)
    os.replace(tmp, final)
    write_json(root / LATEST, {"name": name})
    for old in root.glob("step-*"):
        if old.name != name:
            shutil.rmtree(old, ignore_errors=True)
    return final


def checkpoint_bytes(model: nn.Module, state) -> int:
    """About the bytes a checkpoint of `model` with training `state` takes on disk."""
    def tensors(obj) -> int:
        if isinstance(obj, torch.Tensor):
            return obj.numel() * obj.element_size()
        if isinstance(obj, dict):
            return sum(tensors(v) for v in obj.values())
        if isinstance(obj, (list, tuple)):
            return sum(tensors(v) for v in obj)
        return 0

    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    return weights + tensors(state) + (64 << 10)  # + headers, pickle framing, latest.json


def latest_checkpoint(run_dir: Path) -> str | None:
    """Name of the checkpoint latest.json points at, or None when the run has none yet."""
    pointer = checkpoint_dir(run_dir) / LATEST
    if not pointer.exists():
        return None
    return read_latest(pointer)


def resolve_checkpoint(run_dir: Path, name: str | None = None) -> Path:
    """Folder of checkpoint `name` (default: the latest) of a run; HopeError if absent."""
    run_dir = Path(run_dir)
    name = name or latest_checkpoint(run_dir)
    if name is None:
        raise HopeError(f"{run_dir}: the run has no checkpoint yet")
    folder = checkpoint_dir(run_dir) / name
    if not (folder / WEIGHTS).is_file() or not (folder / STATE).is_file():
        raise HopeError(f"{folder}: checkpoint missing or incomplete")
    return folder


def load_weights(model: nn.Module, folder: Path) -> None:
    """Load model.safetensors into `model`; CheckpointError on missing or unexpected keys."""
    path = Path(folder) / WEIGHTS
    try:
        missing, unexpected = load_safetensors_model(model, str(path), strict=False)
    except Exception as e:  # safetensors raises plain errors for shape mismatches / bad files
        raise CheckpointError(f"{path}: cannot load weights ({e})") from e
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: weights do not fit the model (missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]})"
        )


def check_finite_weights(model: nn.Module, folder: Path) -> None:
    """CheckpointError naming the weights file and the first parameter holding NaN or
    infinite values (a diverged run): nothing measured with it would mean anything."""
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise CheckpointError(f"{Path(folder) / WEIGHTS}: {name} holds NaN or infinite values (the run "
                                  "diverged or the file is damaged); use an earlier checkpoint or train again")


def load_state(folder: Path) -> dict:
    """state.pt of a checkpoint, read without executing pickled code."""
    path = Path(folder) / STATE
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{path}: cannot read training state safely ({e})") from e


def load_model(run_dir: Path, checkpoint: str | None = None, device: str | torch.device = "cpu"):
    """Rebuild a run's predictor from config.json and load a checkpoint's weights.

    Returns (model in eval mode, the run's config.json as a dict). `checkpoint` names a
    folder under RUN/checkpoints (default: the latest, i.e. the final one of a finished run).
    """
    from hopecli.model import Predictor
    from hopecli.runs.config import read_run_config

    run_dir = Path(run_dir)
    config = read_run_config(run_dir)  # HopeError naming the file and the field if damaged
    warn_if_trained_before_exact_writes(run_dir, config)
    model = Predictor(config.model)
    load_weights(model, resolve_checkpoint(run_dir, checkpoint))
    return model.to(device).eval(), config.raw


class StaleRunWarning(UserWarning):
    """A run trained under an older memory write rule than the one that loads it."""


def warn_if_trained_before_exact_writes(run_dir: Path, config) -> None:
    """Warn when a run with memories predates the exact in-context write rule.

    Such a run's config.json has no memory.memory_target (added with the rule). Its weights
    load, but its memories now write by the new rule at the eta_max it saved (0.01 then,
    so they barely write), and its numbers differ from those it was trained to."""
    memory = (config.raw.get("model") or {}).get("memory") or {}
    if not any(letter in config.model.pattern for letter in "HL") or "memory_target" in memory:
        return
    warnings.warn(
        f"{run_dir}: trained before the memories' exact in-context write rule (its config.json "
        f"has no memory.memory_target); its memories now write by the new rule at its saved "
        f"eta_max {config.model.memory.eta_max:g}, so its errors differ from those it was "
        f"trained to: retrain it", StaleRunWarning, stacklevel=3)
