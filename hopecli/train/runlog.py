"""What a run logs beside metrics.jsonl: TensorBoard event files and the loss.png learning curve.

Every scalar of a metrics.jsonl record also goes to TensorBoard under the same name
(`loss`, `loss/teacher`, `lr/titan`, `grad_norm/cms1`, `diag/block0/titan_k/eta_mean`, ...,
and `eval/<error kind>/<task>` for the evaluations), with the record's global step, in
event files in the run folder itself: `tensorboard --logdir runs/` shows every run. Without
the `tensorboard` package the run goes on with one warning; metrics.jsonl has it all.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hopecli.runs.folder import METRICS, MetricsLog, atomic_write

LOSS_PNG = "loss.png"
NOT_SCALARS = ("kind", "step", "experience", "name", "exp_step")
NO_TENSORBOARD = ("tensorboard is not installed: no TensorBoard event files in {run} "
                  "(pip install tensorboard); metrics.jsonl holds every scalar")


def scalars(record: dict) -> dict[str, float]:
    """The TensorBoard scalars of one metrics.jsonl record, by tag."""
    if record.get("kind") == "eval":
        return {f"eval/{kind}/{task}": float(value)
                for task, errors in record["errors"].items()
                for kind, value in errors.items()
                if isinstance(value, (int, float)) and not isinstance(value, bool)}
    return {key: float(value) for key, value in record.items()
            if key not in NOT_SCALARS and isinstance(value, (int, float)) and not isinstance(value, bool)}


class RunLog(MetricsLog):
    """metrics.jsonl, and the same scalars as TensorBoard events in the run folder."""

    def __init__(self, run_dir: Path, *, start_step: int = 0, warn=None) -> None:
        super().__init__(Path(run_dir) / METRICS)
        self.writer = None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            if warn is not None:
                warn(NO_TENSORBOARD.format(run=run_dir))
            return
        # a resumed run drops the events after its checkpoint, as metrics.jsonl does
        self.writer = SummaryWriter(log_dir=str(run_dir), purge_step=start_step or None)

    def write(self, record: dict) -> None:
        super().write(record)
        if self.writer is not None:
            for tag, value in scalars(record).items():
                self.writer.add_scalar(tag, value, record.get("step", 0))

    def close(self) -> None:
        super().close()
        if self.writer is not None:
            self.writer.close()


def learning_curve(run_dir: Path) -> Path | None:
    """RUN/loss.png: training losses per step (experiences marked) and the validation
    error per task after every experience. None when the run has no step yet."""
    run_dir = Path(run_dir)
    records = MetricsLog.read(run_dir / METRICS)
    steps = [r for r in records if r.get("kind") == "step"]
    if not steps:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax_eval) = plt.subplots(1, 2, figsize=(13, 4))
    x = np.array([r["step"] for r in steps])
    keys = ["loss"] + sorted({k for r in steps for k in r if k.startswith("loss/")})
    for key in keys:
        y = np.array([r.get(key, np.nan) for r in steps], dtype=float)
        ax.plot(x, y, label=key, linewidth=1.5 if key == "loss" else 0.8)
    starts = {}
    for r in steps:
        starts.setdefault(r["experience"], (r["step"], r.get("name", str(r["experience"]))))
    for step, name in starts.values():
        ax.axvline(step - 0.5, color="grey", linestyle=":", linewidth=0.8)
        ax.annotate(name, (step, 1.0), xycoords=("data", "axes fraction"), fontsize=8, va="top")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss (L1)")
    ax.set_title(f"{run_dir.name}: training loss")
    ax.legend(fontsize=8)
    evals = [r for r in records if r.get("kind") == "eval"]
    if evals:
        ex = np.array([r["step"] for r in evals])
        for task in evals[-1]["errors"]:
            y = np.array([r["errors"].get(task, {}).get("teacher_forcing", np.nan) for r in evals], dtype=float)
            ax_eval.plot(ex, y, marker="o", label=task or "(unlabelled)")
        ax_eval.legend(fontsize=8)
    ax_eval.set_xlabel("optimizer step (evaluation after every experience)")
    ax_eval.set_ylabel("teacher-forcing error (L1)")
    ax_eval.set_title(f"{run_dir.name}: validation error per task")
    fig.tight_layout()
    path = run_dir / LOSS_PNG
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)
    return path
