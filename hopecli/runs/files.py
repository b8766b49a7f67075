"""Typed readers of a run folder's files besides config.json (that one: hopecli.runs.config).

`checkpoints/latest.json`, a checkpoint's `state.pt`, `results.json` and `split.json` are
checked against their schema when read, so a damaged or hand-edited file is one
RunFileError naming the file and the field (`R.jump[1][0] must be a number or null, got
'x'`), never a KeyError or a TypeError deep in the command that read it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hopecli.errors import HopeError, RunFileError
from hopecli.runs.folder import RESULTS, read_json

ERROR_KINDS = ("teacher_forcing", "jump")
PROGRESS_INTS = ("experience", "step", "global_step")


class SchemaError(ValueError):
    """A value that does not fit a run file's schema; the message names the field."""


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "true or false",
            type(None): "null"}.get(type(value), type(value).__name__)


def _need(ok: bool, field: str, wanted: str, value: Any) -> None:
    if not ok:
        shown = repr(value) if not isinstance(value, (dict, list)) else _kind(value)
        raise SchemaError(f"{field} must be {wanted}, got {shown}")


def _object(value: Any, field: str, keys: tuple[str, ...] = ()) -> dict:
    _need(isinstance(value, dict), field or "the file", "an object", value)
    for key in keys:
        if key not in value:
            raise SchemaError(f"{f'{field}.' if field else ''}{key} is missing")
    return value


def _list(value: Any, field: str) -> list:
    _need(isinstance(value, list), field, "a list", value)
    return value


def _int(value: Any, field: str) -> int:
    _need(isinstance(value, int) and not isinstance(value, bool) and value >= 0, field,
          "a non-negative integer", value)
    return value


def _str(value: Any, field: str) -> str:
    _need(isinstance(value, str), field, "a string", value)
    return value


def _strings(value: Any, field: str) -> list[str]:
    for k, item in enumerate(_list(value, field)):
        _str(item, f"{field}[{k}]")
    return value


def _row(value: Any, field: str, width: int) -> list:
    row = _list(value, field)
    if len(row) != width:
        raise SchemaError(f"{field} must hold {width} value(s), one per task, got {len(row)}")
    for k, item in enumerate(row):
        _need(item is None or (isinstance(item, (int, float)) and not isinstance(item, bool)),
              f"{field}[{k}]", "a number or null", item)
    return row


def _checked(path: Path, check) -> Any:
    try:
        return check(read_json(path))
    except SchemaError as e:
        raise RunFileError(f"{path}: {e}") from None


# -- checkpoints/latest.json -----------------------------------------------------------


def parse_latest(data: Any) -> str:
    name = _str(_object(data, "", ("name",))["name"], "name")
    if not name or name.startswith(".") or "/" in name or "\\" in name:
        raise SchemaError(f"name must be the name of a checkpoint folder, got {name!r}")
    return name


def read_latest(path: Path) -> str:
    """The checkpoint name in a latest.json."""
    return _checked(path, parse_latest)


# -- checkpoints/*/state.pt ------------------------------------------------------------


def parse_state(state: Any) -> dict:
    """A training checkpoint's state: optimizer, pending CMS gradients, progress."""
    import torch

    _object(state, "", ("optimizer", "pending_grads", "progress"))
    optimizer = _object(state["optimizer"], "optimizer", ("state", "param_groups"))
    _object(optimizer["state"], "optimizer.state")
    _list(optimizer["param_groups"], "optimizer.param_groups")
    for key, grad in _object(state["pending_grads"], "pending_grads").items():
        _need(isinstance(grad, torch.Tensor), f"pending_grads[{key!r}]", "a tensor", grad)
    progress = _object(state["progress"], "progress", (*PROGRESS_INTS, "initial", "R"))
    for key in PROGRESS_INTS:
        _int(progress[key], f"progress.{key}")
    if progress["initial"] is not None:
        _object(progress["initial"], "progress.initial", ERROR_KINDS)
    R = _object(progress["R"], "progress.R", ERROR_KINDS)
    for kind in ERROR_KINDS:
        rows = _list(R[kind], f"progress.R.{kind}")
        if len(rows) != progress["experience"]:
            raise SchemaError(f"progress.R.{kind} must hold one row per finished experience "
                              f"({progress['experience']}), got {len(rows)}")
    return state


def check_state(state: Any, path: Path) -> dict:
    """`state` (the loaded state.pt at `path`) checked; RunFileError naming the field."""
    try:
        return parse_state(state)
    except SchemaError as e:
        raise RunFileError(f"{path}: {e}") from None


# -- results.json ----------------------------------------------------------------------


def parse_results(data: Any) -> dict:
    """results.json: tasks, experiences, first_trained, R (and initial, horizon, val_clips)."""
    _object(data, "", ("tasks", "experiences", "first_trained", "R"))
    tasks = _strings(data["tasks"], "tasks")
    width = len(tasks)
    for k, exp in enumerate(_list(data["experiences"], "experiences")):
        where = f"experiences[{k}]"
        _object(exp, where, ("name", "tasks", "steps"))
        _str(exp["name"], f"{where}.name")
        _strings(exp["tasks"], f"{where}.tasks")
        _int(exp["steps"], f"{where}.steps")
    first = _list(data["first_trained"], "first_trained")
    if len(first) != width:
        raise SchemaError(f"first_trained must hold {width} value(s), one per task, got {len(first)}")
    for k, row in enumerate(first):
        _int(row, f"first_trained[{k}]")
    R = _object(data["R"], "R", ERROR_KINDS)
    for kind in ERROR_KINDS:
        for k, row in enumerate(_list(R[kind], f"R.{kind}")):
            _row(row, f"R.{kind}[{k}]", width)
    if data.get("initial") is not None:
        initial = _object(data["initial"], "initial", ERROR_KINDS)
        for kind in ERROR_KINDS:
            _row(initial[kind], f"initial.{kind}", width)
    if data.get("horizon") is not None:
        horizon = _object(data["horizon"], "horizon", ("steps", "tasks"))
        _int(horizon["steps"], "horizon.steps")
        for task, errors in _object(horizon["tasks"], "horizon.tasks").items():
            _row(errors, f"horizon.tasks.{task}", len(errors) if isinstance(errors, list) else 0)
    if data.get("val_clips") is not None:
        for task, n in _object(data["val_clips"], "val_clips").items():
            _int(n, f"val_clips.{task}")
    return data


def read_results(path: Path) -> dict:
    return _checked(path, parse_results)


def load_results(run_dir: Path) -> dict:
    """RUN/results.json (HopeError when the run has none yet, RunFileError naming the field
    of a damaged one)."""
    path = Path(run_dir) / RESULTS
    if not path.exists():
        raise HopeError(f"{run_dir}: no {RESULTS}; is it a `hope train` run folder that finished an experience?")
    return read_results(path)


# -- split.json ------------------------------------------------------------------------


def parse_split(data: Any) -> dict:
    """split.json: {"train": {task: [clip names]}, "val": {task: [clip names]}}."""
    _object(data, "", ("train", "val"))
    for kind in ("train", "val"):
        for task, names in _object(data[kind], kind).items():
            _strings(names, f"{kind}.{task}")
    return data


def read_split(path: Path) -> dict:
    return _checked(path, parse_split)
