"""The Python API: what the commands do, callable from a notebook.

```python
import hopecli

run = hopecli.load_run("demo_out/hope_naive/seed0")
clip = hopecli.read_clip(run, video="sample_data/new_friction.mp4")
result = hopecli.roll_out(run, clip, context=2)
report = hopecli.adapt_clips(run, [clip], methods=["memory", "layernorm"])
metrics = hopecli.evaluate_runs(["demo_out/hope_naive/seed0"])
```

Each function reads the run folder for what it needs (the encoder a video must be
encoded with, the frames per step, the device), so no shapes or settings are passed by
hand. Errors a user can cause raise `hopecli.HopeError` with one sentence.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hopecli.adapt import AdaptConfig, AdaptReport
from hopecli.clips import Clip
from hopecli.errors import HopeError
from hopecli.rollout import RolloutResult
from hopecli.runs.load import Run
from hopecli.runs.load import load_run as _load_run

__all__ = ["Clip", "HopeError", "Run", "adapt_clips", "evaluate_runs", "load_run", "read_clip", "roll_out"]


def load_run(path: str | Path, device: str = "cpu", checkpoint: str | None = None) -> Run:
    """A trained predictor from a `hope train` run folder.

    path: the run folder. device: "cpu", "cuda", "cuda:1", ... checkpoint: a checkpoint
    name such as "experience-0" (default: the latest). The Run holds `model` (a
    Predictor in eval mode), `config` (the run's config.json) and `frames_per_step`.
    """
    return _load_run(path, device, checkpoint)


def read_clip(run: Run, *, video: str | Path | None = None, store: str | Path | None = None,
              index: int | None = None, window: int = 0, weights: str | Path | None = None,
              which: str = "target_encoder") -> Clip:
    """One clip as the run's predictor reads it: from a video or from a feature store.

    video: a clip file with its .npz sidecar, encoded the way the run's store was made
    (same encoder, frames, time mode); `window` picks which window of a long video.
    weights / which: the encoder checkpoint when the run's store was not made with the
    embedded default encoder. store + index: entry `index` of a store made with the
    run's encoder. The Clip holds `features` [T, P, D], `actions` [T, A], `states` [T, S].
    """
    from hopecli.clips import load_clips

    if (video is None) == (store is None):
        raise HopeError("read_clip needs either video= or store= (with index=)")
    if store is not None and index is None:
        raise HopeError(f"{store}: read_clip needs index= with store=")
    clips = load_clips(run, clip=video, store=store, index=index, weights=weights, which=which)
    if not 0 <= window < len(clips):
        raise HopeError(f"{video or store}: no window {window} (it has {len(clips)})")
    return clips[window]


def roll_out(run: Run, clip: Clip, context: int = 1, actions: np.ndarray | None = None) -> RolloutResult:
    """Predict the clip's future features from its first `context` steps.

    actions: None rolls out under the clip's own actions to its last step and scores
    every horizon (`result.errors`, L1 per step ahead); an array [H, A] rolls out H steps
    under those actions instead (no score: there is no true future for them).
    `result.pred` holds the predicted features [H, P, D].
    """
    from hopecli.rollout import rollout_clip

    return rollout_clip(run.model, clip, context, actions=actions, frames_per_step=run.frames_per_step,
                        device=run.device)


def adapt_clips(run: Run, clips: Sequence[Clip], methods: Sequence[str] = ("memory",), *,
                baseline: Run | None = None, carry: bool = False, **settings) -> AdaptReport:
    """Stream clips through the predictor while it adapts, beside the same model frozen.

    methods: any of "memory" (the Titan memories write in context), "layernorm" (TENT:
    only LayerNorm weights learn from the next-step error), "both". baseline: a ViT
    baseline run streamed beside (adapted by TENT when a method includes layernorm).
    carry: continue the adapted state from one clip to the next. settings: cms_online,
    cms_lr, tta_lr, tta_every (as `hope adapt`). The report has the next-step error of
    every step per method (`report.steps`), `report.mean(method)` and `report.verdict()`.
    """
    from hopecli.adapt import adapt

    try:
        cfg = AdaptConfig(methods=tuple(methods), **settings)
    except (TypeError, ValueError) as e:
        raise HopeError(str(e)) from None
    report, _ = adapt(run.model, [[c] for c in clips], [c.name for c in clips], cfg, carry=carry,
                      baseline=baseline.model if baseline is not None else None, device=run.device)
    return report


def evaluate_runs(runs: Sequence[str | Path], *, naive: str | Path | None = None,
                  joint: str | Path | None = None, figures: bool = False) -> dict:
    """The metrics `hope eval --json` prints, as a dict.

    For every run (`result["runs"]`): its error matrices `R`, our metrics per error kind
    (`metrics["teacher_forcing"]["avg_error"]`, forgetting, plasticity, transfer, and
    gap_closed when naive and joint ViT baseline runs are given), the seeds' metric
    family (`stream`) and the error per rollout horizon. figures=True also writes
    RUN/eval.png.
    """
    from hopecli.eval.evaluate import evaluate_runs as _evaluate_runs

    return _evaluate_runs([Path(r) for r in runs], naive=Path(naive) if naive else None,
                          joint=Path(joint) if joint else None, figures=figures)
