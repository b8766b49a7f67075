"""hope: action-conditioned video world models with self-modifying memories.

The Python API (see hopecli.api; imported on first use, so `import hopecli` stays light):

- load_run(path): a trained predictor from a `hope train` run folder
- read_clip(run, video=... | store=..., index=...): a clip as the run's predictor reads it
- roll_out(run, clip, context): predicted future features, scored per horizon
- adapt_clips(run, clips, methods): test-time adaptation beside the frozen model
- evaluate_runs(runs): the metrics of `hope eval`
"""

from hopecli.version import __version__

_API = ("Clip", "HopeError", "Run", "adapt_clips", "evaluate_runs", "load_run", "read_clip", "roll_out")
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        from hopecli import api

        return getattr(api, name)
    raise AttributeError(f"module 'hopecli' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
