"""What `hope eval` shows for one run, and when its validation clips are too few to trust."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class RunReport:
    """What `hope eval` shows for one run."""

    run: str
    strategy: str
    base_task: str | None
    tasks: list[str]  # the R columns (the base partition first, when there is one)
    experiences: list[str]
    R: dict[str, list[list[float | None]]]
    metrics: dict[str, dict | None]  # ours, per error kind
    stream: dict[str, dict | None]  # the seeds' family, per error kind
    horizon: dict | None  # {"steps": H, "tasks": {task: [H errors]}, "mean": [H errors]}
    complete: bool
    figure: str | None = None
    val_clips: dict[str, int] | None = None  # validation clips per partition (None: older runs)
    name: str | None = None  # the shortest trailing part of `run` that tells it from the others
    # copy-last / context-mean on the run's validation clips (hopecli.baselines), None
    # when the run's store is not at hand: {name: {"teacher_forcing": {task: e}, "jump":
    # {task: e}, "avg_error": {kind: e}, "horizon": {"steps", "tasks", "mean"}}}
    baselines: dict | None = None
    probe: dict | None = None  # hopecli.eval.probe.probe_report, when the store has object states
    in_context: dict | None = None  # hopecli.eval.incontext.in_context_report, on a hidden-dynamics store

    def to_dict(self) -> dict:
        return asdict(self)


MIN_VAL_CLIPS = 3  # fewer validation clips per partition than this make its errors noisy


def few_validation_clips(report: dict) -> dict[str, int]:
    """Partitions of a run (RunReport.to_dict()) validated on fewer than MIN_VAL_CLIPS clips."""
    return {t: n for t, n in (report.get("val_clips") or {}).items() if n < MIN_VAL_CLIPS}
