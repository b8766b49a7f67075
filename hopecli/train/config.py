"""The training configuration: data, continual-learning protocol, losses, optimizer.

Saved in RUN/config.json beside the model config; `--resume` compares against it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from hopecli.train.losses import LossConfig
from hopecli.train.optim import OptimConfig

STRATEGIES = ("naive", "joint", "replay")


Budget = tuple[str, float]  # ("steps", n) or ("epochs", x)


def _lists(obj):
    """Tuples to lists, recursively: the form config.json holds (and --resume compares)."""
    if isinstance(obj, (list, tuple)):
        return [_lists(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _lists(v) for k, v in obj.items()}
    return obj


@dataclass
class TrainConfig:
    """How to train on a store.

    The partitions are store task labels: `base_task` (optional: a base-training
    experience first, the seeds' protocol) and `tasks` in training order (None: every
    other label of the store, first-seen order). strategy: "naive" trains one partition
    per experience, in order; "joint" one experience on all partitions at once, as many
    steps as the naive experiences together; "replay" is naive with a reservoir buffer of
    `replay_size` earlier training clips (base included), `replay_fraction` of every batch
    drawn from it.

    Budgets: exactly one of steps / epochs, one value for every task or a tuple with one
    per task; base_steps / base_epochs (at most one) for the base experience, which
    otherwise gets the tasks' single value. An epoch budget counts the partition's
    training clips. batch_size is the global batch, split evenly over DDP ranks.

    Held-out clips: the last `val_clips` videos of every partition in store order (the
    seeds' split), or when that is None a seeded `val_fraction` of them.
    """

    tasks: tuple[str, ...] | None = None
    base_task: str | None = None
    strategy: str = "naive"
    steps: int | tuple[int, ...] | None = None
    epochs: float | tuple[float, ...] | None = None
    base_steps: int | None = None
    base_epochs: float | None = None
    batch_size: int = 16
    val_fraction: float = 0.1
    val_clips: int | None = None
    seed: int = 0
    replay_size: int = 256
    replay_fraction: float = 0.5
    horizon: int | None = None  # per-horizon evaluation length; None: T - 1
    eval_batch_size: int = 16
    log_every: int = 10
    checkpoint_every: int = 0  # optimizer steps between periodic checkpoints; 0: experiences only
    warn_grad_norm: float = 10.0
    warn_inner_loss: float = 100.0
    device: str = "auto"
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)

    def __post_init__(self) -> None:
        if isinstance(self.loss, dict):
            self.loss = LossConfig(**self.loss)
        if isinstance(self.optim, dict):
            self.optim = OptimConfig(**self.optim)
        for name in ("steps", "epochs"):
            if isinstance(getattr(self, name), list):
                setattr(self, name, tuple(getattr(self, name)))
        if self.tasks is not None:
            self.tasks = tuple(self.tasks)
            if not self.tasks or len(set(self.tasks)) != len(self.tasks):
                raise ValueError(f"tasks must be distinct labels, got {self.tasks!r}")
        if self.base_task is not None and self.tasks is not None and self.base_task in self.tasks:
            raise ValueError(f"the base task {self.base_task!r} must not be one of the tasks {self.tasks!r}")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES!r}, got {self.strategy!r}")
        if (self.steps is None) == (self.epochs is None):
            raise ValueError(f"give exactly one of steps and epochs, got steps={self.steps!r}, epochs={self.epochs!r}")
        for name in ("steps", "epochs", "base_steps", "base_epochs"):
            self._check_budget(name)
        if self.base_steps is not None and self.base_epochs is not None:
            raise ValueError(f"give at most one of base_steps and base_epochs, got "
                             f"base_steps={self.base_steps!r}, base_epochs={self.base_epochs!r}")
        if self.base_task is None and (self.base_steps is not None or self.base_epochs is not None):
            raise ValueError("base_steps / base_epochs budget the base experience; they need a base_task")
        per_task = self.steps if self.steps is not None else self.epochs
        if isinstance(per_task, tuple):
            if self.tasks is not None and len(per_task) != len(self.tasks):
                raise ValueError(f"a per-task budget needs one value for each of the {len(self.tasks)} tasks, "
                                 f"got {per_task!r}")
            if self.base_task is not None and self.base_steps is None and self.base_epochs is None:
                raise ValueError("with a per-task list of budgets, give the base experience its own "
                                 "(base_steps or base_epochs)")
        for name in ("batch_size", "eval_batch_size", "log_every", "replay_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction!r}")
        if self.val_clips is not None and self.val_clips < 1:
            raise ValueError(f"val_clips must be >= 1, got {self.val_clips!r}")
        if not 0 <= self.replay_fraction < 1:
            raise ValueError(f"replay_fraction must be in [0, 1), got {self.replay_fraction!r}")
        if self.horizon is not None and self.horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {self.horizon!r}")
        if self.checkpoint_every < 0:
            raise ValueError(f"checkpoint_every must be >= 0, got {self.checkpoint_every!r}")

    def _check_budget(self, name: str) -> None:
        value = getattr(self, name)
        values = value if isinstance(value, tuple) else () if value is None else (value,)
        if isinstance(value, tuple) and not value:
            raise ValueError(f"{name} must not be an empty list")
        for v in values:
            if name.endswith("steps") and not (isinstance(v, int) and v >= 1):
                raise ValueError(f"{name} must be integers >= 1, got {value!r}")
            if name.endswith("epochs") and not v > 0:
                raise ValueError(f"{name} must be > 0, got {value!r}")

    def budgets(self, n_tasks: int) -> list[Budget]:
        """The budget of every partition in column order: the base (if any), then the tasks."""
        kind, per_task = ("steps", self.steps) if self.steps is not None else ("epochs", self.epochs)
        if isinstance(per_task, tuple):
            if len(per_task) != n_tasks:
                raise ValueError(f"the per-task {kind} {list(per_task)!r} give {len(per_task)} budget(s) "
                                 f"for {n_tasks} task(s)")
            tasks = [(kind, v) for v in per_task]
        else:
            tasks = [(kind, per_task)] * n_tasks
        if self.base_task is None:
            return tasks
        if self.base_steps is not None:
            base = ("steps", self.base_steps)
        elif self.base_epochs is not None:
            base = ("epochs", self.base_epochs)
        else:
            base = (kind, per_task)
        return [base, *tasks]

    def to_dict(self) -> dict[str, Any]:
        return _lists(asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown training config key(s) {unknown!r}")
        return cls(**d)
