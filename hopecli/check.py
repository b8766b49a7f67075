"""`hope check` as a library function: verify a feature store or a run folder file by file.

A store: its metadata (every zarr.json), the clip names and task labels, and every chunk
of every clip marked done (the file is there, it decodes, its values are finite); a clip
named but not marked done is listed as unfinished when its chunks are incomplete (a
writer still at it, or killed: `hope extract` finishes it) and as damaged when they are
all there (its done chunk was lost). A run: config.json, split.json, results.json,
metrics.jsonl, checkpoints/latest.json and every checkpoint's weights and state.pt.

`repair_store` makes the damaged clips of a store unfinished again (their chunks and done
flag removed) and, when their videos are still where the store says (its source_root) and
the encoder is at hand, extracts them again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hopecli.errors import HopeError


@dataclass(frozen=True)
class Finding:
    """One damaged (or unfinished, or left-over) thing: the file, the problem, the clip."""

    path: str
    problem: str
    clip: str | None = None
    kind: str = "damaged"  # damaged | unfinished | leftover

    def line(self) -> str:
        return f"{self.path}: {self.problem}"


@dataclass
class CheckReport:
    target: Path
    what: str  # "store" or "run"
    checked: int = 0  # clips of a store, files of a run
    findings: list[Finding] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    not_repaired: list[str] = field(default_factory=list)

    @property
    def damaged(self) -> list[Finding]:
        return [f for f in self.findings if f.kind == "damaged"]

    def to_json(self) -> dict[str, Any]:
        return {"path": str(self.target), "kind": self.what, "checked": self.checked,
                "damaged": len(self.damaged),
                "findings": [{"path": f.path, "problem": f.problem, "clip": f.clip, "kind": f.kind}
                             for f in self.findings],
                "repaired": self.repaired, "not_repaired": self.not_repaired}


def check(path: str | Path) -> CheckReport:
    """Check a store (a folder with zarr.json) or a run (a folder with config.json)."""
    path = Path(path)
    if not path.is_dir():
        raise HopeError(f"{path}: no such store or run folder")
    if (path / "zarr.json").exists():
        return check_store(path)
    if (path / "config.json").exists() or (path / "checkpoints").is_dir():
        return check_run(path)
    raise HopeError(f"{path}: neither a feature store (no zarr.json) nor a run folder (no config.json)")


# -- stores ----------------------------------------------------------------------------


def check_store(path: Path) -> CheckReport:
    from hopecli.data.store import PER_CLIP, FeatureStore

    report = CheckReport(Path(path), "store")
    try:
        store = FeatureStore.open(path)
        names = store.clips  # decodes the clip and task arrays
        store.tasks
        done = store.done
    except (HopeError, OSError) as e:  # nothing more can be read
        report.findings.append(_finding_of(e, path))
        return report
    except Exception as e:  # a name or done chunk that does not decode
        report.findings.append(Finding(str(path), f"the clip names, task labels or done flags do not decode ({e})"))
        return report
    report.checked = len(store)
    for i, name in enumerate(names):
        if not done[i]:
            complete = all(store.chunk_file(a, i).is_file() for a in PER_CLIP)
            if complete:
                report.findings.append(Finding(
                    str(store.chunk_file("done", i)), f"clip {name!r} (index {i}) has all its chunks but is "
                    "not marked done: its done chunk is lost (or a writer was killed just before marking it)",
                    name))
            else:
                report.findings.append(Finding(
                    str(path), f"clip {name!r} (index {i}) is unfinished (a writer is at it or was killed); "
                    "running the extract again finishes it", name, "unfinished"))
            continue
        problem = store.damage(i)
        if problem is None:
            data = store.read(i)
            bad = [a for a in PER_CLIP if not np.isfinite(np.asarray(getattr(data, a), np.float32)).all()]
            if bad:
                problem = (f"{store.chunk_file(bad[0], i)}: clip {name!r} (index {i}) of the store: its {bad[0]} "
                           "hold NaN or infinite values")
        if problem is not None:
            file, _, what = problem.partition(": ")
            report.findings.append(Finding(file, what.split("; `hope check")[0], name))
    return report


def _finding_of(e: Exception, path: Path) -> Finding:
    from hopecli.errors import describe_os_error

    text = describe_os_error(e) if isinstance(e, OSError) else str(e)
    file, sep, problem = text.partition(": ")
    return Finding(file, problem) if sep else Finding(str(path), text)


def repair_store(report: CheckReport, weights: str | None = None, which: str = "target_encoder",
                 device: str = "auto") -> CheckReport:
    """Make the report's damaged clips unfinished and extract them again from their videos.

    Clips whose video is gone, or a store made by `hope import`, are reset only: they stay
    out of train and eval (not read as zeros) and `not_repaired` says what to run."""
    from hopecli.data.store import OPTIONAL_PER_CLIP, PER_CLIP, FeatureStore
    from hopecli.encoder import load_encoder
    from hopecli.extract import ExtractConfig, extract

    store = FeatureStore.open(report.target, writable=True)
    index = {name: i for i, name in enumerate(store.clips)}
    clips = sorted({f.clip for f in report.damaged if f.clip is not None})
    if len(clips) < len(report.damaged):
        raise HopeError(f"{report.target}: its metadata or clip names are damaged, so its clips cannot be "
                        "repaired one by one; extract the store again")
    with store.writer_lock():
        for name in clips:
            i = index[name]
            for array in PER_CLIP + OPTIONAL_PER_CLIP + ("done",):
                if array in store.group:
                    store.chunk_file(array, i).unlink(missing_ok=True)
    attrs = store.attrs
    root = attrs.get("source_root")
    if "import" in attrs:
        report.not_repaired = clips
        return report
    videos: dict[Path, list[str]] = {}
    for name in clips:
        video = Path(root or "/") / name.rsplit("#", 1)[0]
        if video.is_file():
            videos.setdefault(video, []).append(name)
        else:
            report.not_repaired.append(name)
    if not videos:
        return report
    if weights is None and not attrs["encoder"].get("random_features"):
        report.not_repaired.extend(n for names in videos.values() for n in names)
        return report
    sampling = attrs.get("sampling") or {}
    config = ExtractConfig(weights=weights, which=which, frames=attrs["frames_per_clip"],
                           stride=sampling.get("stride"), target_fps=sampling.get("target_fps"),
                           long_clips=attrs.get("long_clips", "windows"), time_mode=attrs["time_mode"],
                           device=device)
    encoder = load_encoder(weights, which=which,
                           config=None if weights else _encoder_size(attrs["encoder"]))
    result = extract(sorted(videos), report.target, config, encoder=encoder)
    written = set(result.written)
    for names in videos.values():
        for name in names:
            (report.repaired if name in written else report.not_repaired).append(name)
    return report


def _encoder_size(info: dict) -> str | None:
    """The embedded encoder's size name from a store's encoder name (vjepa2-SIZE-random)."""
    name = info.get("name", "")
    if not name.endswith("-random"):
        return None
    return name.removeprefix("vjepa2-").removesuffix("-random")


# -- runs ------------------------------------------------------------------------------


def check_run(path: Path) -> CheckReport:
    from hopecli.runs.checkpoint import LATEST, STATE, WEIGHTS, load_state, load_weights
    from hopecli.runs.config import read_run_config
    from hopecli.runs.files import check_state, read_latest, read_results, read_split
    from hopecli.runs.folder import CHECKPOINTS, CONFIG, METRICS, RESULTS, SPLIT

    report = CheckReport(Path(path), "run")
    path = Path(path)

    def look(file: Path, read) -> Any:
        report.checked += 1
        try:
            return read()
        except (HopeError, OSError) as e:
            report.findings.append(_finding_of(e, file))
        except Exception as e:  # a damaged pickle or safetensors file raises plain errors
            report.findings.append(Finding(str(file), f"cannot be read ({e})"))
        return None

    config = look(path / CONFIG, lambda: read_run_config(path))
    if (path / SPLIT).exists():
        look(path / SPLIT, lambda: read_split(path / SPLIT))
    if (path / RESULTS).exists():
        look(path / RESULTS, lambda: read_results(path / RESULTS))
    if (path / METRICS).exists():
        look(path / METRICS, lambda: _check_metrics(path / METRICS))
    root = path / CHECKPOINTS
    if (root / LATEST).exists():
        latest = look(root / LATEST, lambda: read_latest(root / LATEST))
        if latest is not None and not (root / latest).is_dir():
            report.findings.append(Finding(str(root / LATEST), f"points at checkpoint {latest!r}, which is missing"))
    model = None
    if config is not None:
        from hopecli.model import Predictor

        model = Predictor(config.model)
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        if not folder.is_dir():
            continue
        if folder.name.startswith(".tmp-"):
            report.findings.append(Finding(str(folder), "left by an interrupted checkpoint write; safe to delete",
                                           kind="leftover"))
            continue
        for name in (WEIGHTS, STATE):
            if not (folder / name).is_file():
                report.findings.append(Finding(str(folder / name), "missing"))
        if model is not None and (folder / WEIGHTS).is_file():
            look(folder / WEIGHTS, lambda: load_weights(model, folder))
        if (folder / STATE).is_file():
            look(folder / STATE, lambda: check_state(load_state(folder), folder / STATE))
    return report


def _check_metrics(path: Path) -> None:
    lines = path.read_text().splitlines()
    for k, line in enumerate(lines[:-1]):  # a torn last line (a crash mid-write) is expected
        try:
            json.loads(line)
        except json.JSONDecodeError as e:
            raise HopeError(f"{path}: line {k + 1} is not valid JSON ({e.msg})") from None
