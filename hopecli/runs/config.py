"""RUN/config.json read through the typed configs, so a damaged file is one clear line.

A run folder's config.json holds `model` (PredictorConfig), `train` (TrainConfig) and
`store` (what the run was trained on: path, encoder, time mode, ...). Every command that
reads a run (`train --resume`, `eval --horizon`, `rollout`, `adapt`) reads it here: each
field's JSON value is checked against the type of its dataclass field first (a typo'd key,
a string where a number belongs, a list instead of an object), then the config classes
validate the values, and any problem is a HopeError naming the file and the field.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hopecli.errors import HopeError
from hopecli.model import PredictorConfig
from hopecli.runs.folder import CONFIG, read_json
from hopecli.train.config import TrainConfig

# the `store` section: field -> type hint of its JSON value (store_info in continual.py)
STORE_FIELDS: dict[str, Any] = {
    "path": str,
    "encoder": dict,
    "time_mode": str,
    "frames_per_clip": int,
    "tubelet_size": int,
    "patches_per_step": int,
    "action_dim": int,
    "state_dim": int,
}
TIME_MODES = ("tubelet", "frame")


@dataclass(frozen=True)
class RunConfig:
    """A run's config.json, validated: the typed configs and the raw dict it came from."""

    path: Path  # the config.json
    model: PredictorConfig
    train: TrainConfig
    store: dict[str, Any]
    raw: dict[str, Any]


def _describe(hint: Any) -> str:
    if hint is type(None):
        return "null"
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_describe(h) for h in typing.get_args(hint))
    if typing.get_origin(hint) is tuple:
        return f"a list of {_describe(typing.get_args(hint)[0]).removeprefix('a ').removeprefix('an ')}s"
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", dict: "an object"}
    return names.get(hint, "an object")


def _fits(value: Any, hint: Any) -> bool:
    """Whether a JSON value can stand for a field of type `hint`."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if hint is dict or dataclasses.is_dataclass(hint):
        return isinstance(value, dict)
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, (list, tuple)):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_fits(v, args[0]) for v in value)
        return len(value) == len(args) and all(_fits(v, a) for v, a in zip(value, args))
    return True


def check_fields(cls: type, data: Any, where: str) -> None:
    """ValueError naming the field (`where.field`) when `data` does not fit dataclass `cls`:
    not an object, an unknown key, or a value of the wrong type; nested configs recursively."""
    if not isinstance(data, dict):
        raise ValueError(f"{where} must be an object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(data) - set(hints))
    if unknown:
        raise ValueError(f"{where} has unknown field(s) {', '.join(unknown)}")
    for name, value in data.items():
        hint = hints[name]
        if not _fits(value, hint):
            raise ValueError(f"{where}.{name} must be {_describe(hint)}, got {value!r}")
        nested = [h for h in (hint, *typing.get_args(hint)) if dataclasses.is_dataclass(h)]
        if nested and isinstance(value, dict):
            check_fields(nested[0], value, f"{where}.{name}")


def _check_store(data: Any) -> None:
    if not isinstance(data, dict):
        raise ValueError(f"store must be an object, got {type(data).__name__}")
    for name, hint in STORE_FIELDS.items():
        if name not in data:
            raise ValueError(f"store.{name} is missing")
        if not _fits(data[name], hint):
            raise ValueError(f"store.{name} must be {_describe(hint)}, got {data[name]!r}")
    if data["time_mode"] not in TIME_MODES:
        raise ValueError(f"store.time_mode must be one of {', '.join(TIME_MODES)}, got {data['time_mode']!r}")


def parse_run_config(raw: Any, path: Path) -> RunConfig:
    """Validate the parsed JSON of a config.json; HopeError naming `path` and the field."""
    path = Path(path)
    try:
        if not isinstance(raw, dict):
            raise ValueError(f"the file must hold an object with model, train and store, "
                             f"got {type(raw).__name__}")
        for section in ("model", "train", "store"):
            if section not in raw:
                raise ValueError(f"the {section!r} section is missing")
        check_fields(PredictorConfig, raw["model"], "model")
        check_fields(TrainConfig, raw["train"], "train")
        _check_store(raw["store"])
        sections = {}
        for section, make in (("model", PredictorConfig.from_dict), ("train", TrainConfig.from_dict)):
            try:
                sections[section] = make(raw[section])
            except (ValueError, TypeError) as e:
                raise ValueError(f"{section}: {e}") from None
    except ValueError as e:
        raise HopeError(f"{path}: {e}") from None
    return RunConfig(path, sections["model"], sections["train"], raw["store"], raw)


def read_run_config(run_dir: str | Path) -> RunConfig:
    """RUN/config.json, validated (HopeError naming the file and the field when it is not)."""
    path = Path(run_dir) / CONFIG
    return parse_run_config(read_json(path), path)
