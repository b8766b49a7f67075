"""The run folder: what `hope train` writes and `hope eval` / `rollout` / `adapt` read.

```
RUN/
  config.json       resolved model config, training config, store path and encoder info
  split.json        names of the training and validation clips of every partition
  metrics.jsonl     one JSON object per line: training steps and evaluations
  results.json      error matrices R (teacher forcing, jump) and per-horizon errors
  events.out.tfevents.*  the scalars of metrics.jsonl for TensorBoard (hopecli.train.runlog)
  loss.png          learning curve, drawn when training ends
  checkpoints/      see hopecli.runs.checkpoint
```

Every file is written whole to a temporary name and moved into place with os.replace, so a
crash leaves the previous version, never half of a new one. metrics.jsonl is appended
line by line; a resumed run first cuts it back to the steps its checkpoint holds.
"""

from __future__ import annotations

import json
import math
import os
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from hopecli.errors import HopeError

CONFIG = "config.json"
METRICS = "metrics.jsonl"
RESULTS = "results.json"
SPLIT = "split.json"
CHECKPOINTS = "checkpoints"


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call write(tmp) on a temporary file beside `path`, then move it onto `path`.

    The file gets the mode the user's umask gives (mkstemp makes 0600, safetensors too), and
    an OSError on the way (a read-only or full folder) names `path`, not the temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise OSError(e.errno, e.strerror, str(path)) from None
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise OSError(e.errno, e.strerror, str(path)) from e
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class RunLockedError(HopeError):
    """Another process is writing the run folder (training or resuming it)."""


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold the writer lock of a run folder (`RUN.lock` beside it, the `filelock` package, as
    a store's) for the block; RunLockedError naming the holder (pid, host, since when) when
    another `hope train` holds it. The holder is written to `RUN.lock.holder` once the lock
    is held (filelock truncates the lock file on every try, so it cannot carry it)."""
    run_dir = Path(run_dir)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(run_dir.parent / f"{run_dir.name}.lock"))
    holder = run_dir.parent / f"{run_dir.name}.lock.holder"
    try:
        lock.acquire(timeout=0)
    except Timeout:
        try:
            who = holder.read_text().strip() or "a process"
        except OSError:
            who = "a process"
        raise RunLockedError(f"{run_dir}: {who} is writing this run (train or --resume); wait for it to "
                             f"finish or stop it (its lock: {lock.lock_file})") from None
    try:
        holder.write_text(f"pid {os.getpid()} on {socket.gethostname()} since "
                          f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        yield
    finally:
        lock.release()


def file_mode() -> int:
    """The mode a new file gets under the process's umask (0644 under umask 022)."""
    return 0o666 & ~_umask()


def _umask() -> int:
    """The process's umask: from /proc on Linux (reading it there changes nothing, so no
    other thread creates a file under a wrong mask meanwhile), else by setting it back."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def json_safe(obj):
    """NaN / Inf -> None, recursively, so every file we write is strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def non_finite_paths(obj, where: str = "") -> list[str]:
    """JSON paths (`a.b[2]`) of the NaN / Inf floats in `obj`."""
    if isinstance(obj, float):
        return [] if math.isfinite(obj) else [where or "."]
    if isinstance(obj, dict):
        return [p for k, v in obj.items() for p in non_finite_paths(v, f"{where}.{k}" if where else str(k))]
    if isinstance(obj, (list, tuple)):
        return [p for i, v in enumerate(obj) for p in non_finite_paths(v, f"{where}[{i}]")]
    return []


def dumps_report(report: dict) -> str:
    """A command's `--json` result as strict JSON: a NaN or infinite number becomes null,
    and a `non_finite` field lists where and why (strict parsers reject bare NaN)."""
    missing = non_finite_paths(report)
    if missing:
        report = {**json_safe(report), "non_finite": {
            "fields": missing,
            "reason": "the computation gave NaN or infinite values here (shown as null): the run's "
                      "weights or the input hold non-finite numbers, or the model diverged"}}
    return json.dumps(report, indent=2, allow_nan=False)


def write_json(path: Path, obj) -> None:
    text = json.dumps(json_safe(obj), indent=2, allow_nan=False) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text))


def read_json(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise HopeError(f"{path}: file not found")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise HopeError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from e


class MetricsLog:
    """Appends one JSON object per line to RUN/metrics.jsonl, flushed at once."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a")

    def write(self, record: dict) -> None:
        self._file.write(json.dumps(json_safe(record), allow_nan=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    @staticmethod
    def read(path: Path) -> list[dict]:
        """All complete records; a torn last line (a crash mid-write) is skipped."""
        records = []
        path = Path(path)
        if not path.exists():
            return records
        for line in path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return records

    @staticmethod
    def truncate(path: Path, keep: Callable[[dict], bool]) -> None:
        """Keep only the records for which keep(record) holds (before a resumed run appends)."""
        path = Path(path)
        if not path.exists():
            return
        kept = [r for r in MetricsLog.read(path) if keep(r)]
        atomic_write(path, lambda tmp: tmp.write_text("".join(json.dumps(r) + "\n" for r in kept)))
