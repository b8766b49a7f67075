"""The training configuration: data, continual-learning protocol, losses, optimizer.

Saved in RUN/config.json beside the model config; `--resume` compares against it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from hopecli.train.losses import LossConfig
from hopecli.train.optim import OptimConfig

STRATEGIES = ("naive", "joint", "replay")


@dataclass
class TrainConfig:
    """How to train on a store.

    tasks: task labels in training order (None: every label of the store, first-seen
    order). strategy: "naive" trains one task per experience, in order; "joint" one
    experience on all tasks at once (steps and epochs scale with the number of tasks, so
    it sees as many batches as naive); "replay" is naive with a reservoir buffer of
    `replay_size` earlier training clips, `replay_fraction` of every batch drawn from it.
    Exactly one of steps / epochs (per task) is set. batch_size is the global batch, split
    evenly over DDP ranks.
    """

    tasks: tuple[str, ...] | None = None
    strategy: str = "naive"
    steps: int | None = None
    epochs: float | None = None
    batch_size: int = 16
    val_fraction: float = 0.1
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
        if self.tasks is not None:
            self.tasks = tuple(self.tasks)
            if not self.tasks or len(set(self.tasks)) != len(self.tasks):
                raise ValueError(f"tasks must be distinct labels, got {self.tasks!r}")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES!r}, got {self.strategy!r}")
        if (self.steps is None) == (self.epochs is None):
            raise ValueError(f"give exactly one of steps and epochs, got steps={self.steps!r}, epochs={self.epochs!r}")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps!r}")
        if self.epochs is not None and not self.epochs > 0:
            raise ValueError(f"epochs must be > 0, got {self.epochs!r}")
        for name in ("batch_size", "eval_batch_size", "log_every", "replay_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction!r}")
        if not 0 <= self.replay_fraction < 1:
            raise ValueError(f"replay_fraction must be in [0, 1), got {self.replay_fraction!r}")
        if self.horizon is not None and self.horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {self.horizon!r}")
        if self.checkpoint_every < 0:
            raise ValueError(f"checkpoint_every must be >= 0, got {self.checkpoint_every!r}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["tasks"] = list(self.tasks) if self.tasks is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown training config key(s) {unknown!r}")
        return cls(**d)
