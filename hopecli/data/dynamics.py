"""Feature clips with hidden dynamics: the calibrated in-context benchmark (no video, no encoder).

Every clip is P patches of D features over T steps. Each patch follows the clip's own
transition, the same for every patch of the clip and different between clips:

    linear, heldout:  z_t+1 = A(theta) z_t + B a_t + noise
    nonlinear:        z_t+1 = 1.5 tanh(A(theta) z_t) + B a_t + noise

with A(theta) = expm(G_0 + sum_i theta_i G_i): G_0 a rotation shared by the family, G_i
skew-symmetric generators of the family, theta in [-1, 1]^K the clip's hidden numbers
(drawn from the clip's seed), B a fixed action map and a_t ~ N(0, I) the actions. The
rotations act on zero-mean vectors and the first step is layer-normed, so the features
keep their scale over any number of steps and the law survives the layer norm through
which the models read them. Only the clip's own earlier
steps reveal theta, so a predictor that ignores its context can at best learn the
family's mean map; one that learns in context can approach the oracle. `heldout` uses
generators of its own that no training family shares (train on linear and nonlinear,
then see whether the model still learns the held-out clips in context).

Clip names are `FAMILY_NNNNN` and the task label is the family, so a store made here
trains with `hope train --tasks linear,nonlinear` and every clip's theta, and so the
oracle, follows from the store's attributes (`dynamics`) and the clip's name.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from hopecli.errors import HopeError
from hopecli.version import __version__

FAMILIES = ("linear", "nonlinear", "heldout")
TRAIN_FAMILIES = ("linear", "nonlinear")
STATE_DIM = 2  # the store's state columns: zeros (the dynamics have no robot state)
NONLINEAR_GAIN = 1.5


@dataclass(frozen=True)
class DynamicsConfig:
    """Shapes and scales of a hidden-dynamics store (saved in its `dynamics` attribute)."""

    dim: int = 16  # D, features per patch
    patches: int = 36  # P, a square number (the predictor's grid)
    steps: int = 8  # T
    action_dim: int = 2  # A
    hidden: int = 3  # K, hidden numbers per clip
    spread: float = 0.6  # scale of the clip-specific generators G_i
    shared: float = 0.3  # scale of the family's shared rotation G_0
    action_scale: float = 0.1  # scale of B (small: the layer norm keeps the law near linear)
    noise: float = 0.02  # std of the noise added to every step
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("dim", "patches", "steps", "action_dim", "hidden"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if math.isqrt(self.patches) ** 2 != self.patches:
            raise ValueError(f"patches must be a square number, got {self.patches!r}")
        if self.steps < 3:
            raise ValueError(f"steps must be at least 3 (context and targets), got {self.steps!r}")
        for name in ("spread", "shared", "action_scale", "noise"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be non-negative, got {getattr(self, name)!r}")

    @classmethod
    def from_attrs(cls, attrs: dict) -> DynamicsConfig:
        return cls(**{k: v for k, v in attrs.items() if k in cls.__dataclass_fields__})


def _rng(cfg: DynamicsConfig, *names: object) -> np.random.Generator:
    key = "/".join(str(n) for n in (cfg.seed, *names))
    return np.random.default_rng(zlib.crc32(key.encode()))


def _centre(dim: int) -> np.ndarray:
    """The projection onto zero-mean vectors, I - 1 1^T / D."""
    return np.eye(dim) - 1.0 / dim


def _skew(rng: np.random.Generator, dim: int, scale: float) -> np.ndarray:
    """A random skew-symmetric generator acting on zero-mean vectors only: its rotation
    keeps a step's mean at zero and its norm, so the layer norm the models read through
    leaves the law as it is."""
    m = rng.standard_normal((dim, dim))
    c = _centre(dim)
    return scale * c @ (m - m.T) @ c / math.sqrt(2 * dim)


def _expm(a: np.ndarray) -> np.ndarray:
    """exp of a real skew-symmetric matrix (a rotation), through its Hermitian i a."""
    w, v = np.linalg.eigh(1j * a)
    return (v @ np.diag(np.exp(-1j * w)) @ v.conj().T).real


def generators(cfg: DynamicsConfig, family: str) -> tuple[np.ndarray, np.ndarray]:
    """The family's shared G_0 [D, D] and its clip generators G_i [K, D, D]."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES!r}, got {family!r}")
    # linear and nonlinear share their generators (the same hidden numbers, two laws);
    # heldout has its own, so nothing trained on the others tells it theta's directions
    rng = _rng(cfg, "generators", "heldout" if family == "heldout" else "train")
    g0 = _skew(rng, cfg.dim, cfg.shared)
    gi = np.stack([_skew(rng, cfg.dim, cfg.spread) for _ in range(cfg.hidden)])
    return g0, gi


def action_map(cfg: DynamicsConfig) -> np.ndarray:
    """B [D, A], shared by every clip."""
    return cfg.action_scale * _centre(cfg.dim) @ _rng(cfg, "actions").standard_normal((cfg.dim, cfg.action_dim))


def clip_name(family: str, index: int) -> str:
    return f"{family}_{index:05d}"


def parse_clip_name(name: str) -> tuple[str, int]:
    family, _, number = name.rpartition("_")
    if family not in FAMILIES or not number.isdigit():
        raise HopeError(f"clip {name!r} is not a hidden-dynamics clip (FAMILY_NNNNN)")
    return family, int(number)


def hidden_numbers(cfg: DynamicsConfig, family: str, index: int) -> np.ndarray:
    """theta [K] of clip `index` of `family`, uniform in [-1, 1]."""
    return _rng(cfg, "theta", family, index).uniform(-1.0, 1.0, cfg.hidden)


def transition(cfg: DynamicsConfig, family: str, theta: np.ndarray) -> np.ndarray:
    """A(theta) [D, D]."""
    g0, gi = generators(cfg, family)
    return _expm(g0 + np.tensordot(theta, gi, axes=1))


def next_step(family: str, a_matrix: np.ndarray, b_matrix: np.ndarray, z: np.ndarray,
              action: np.ndarray) -> np.ndarray:
    """The noise-free next step: z [..., P, D], action [..., A] -> [..., P, D]."""
    moved = z @ a_matrix.T
    if family == "nonlinear":
        moved = NONLINEAR_GAIN * np.tanh(moved)
    return moved + (action @ b_matrix.T)[..., None, :]


def simulate(cfg: DynamicsConfig, family: str, index: int) -> tuple[np.ndarray, np.ndarray]:
    """One clip: features [T, P, D] float32 and actions [T, A] float32."""
    rng = _rng(cfg, "clip", family, index)
    a_matrix = transition(cfg, family, hidden_numbers(cfg, family, index))
    b_matrix = action_map(cfg)
    actions = rng.standard_normal((cfg.steps, cfg.action_dim))
    z = np.empty((cfg.steps, cfg.patches, cfg.dim))
    first = rng.standard_normal((cfg.patches, cfg.dim)) @ _centre(cfg.dim)
    z[0] = first * math.sqrt(cfg.dim) / np.linalg.norm(first, axis=-1, keepdims=True)  # layer-normed
    for t in range(cfg.steps - 1):
        z[t + 1] = next_step(family, a_matrix, b_matrix, z[t], actions[t])
        z[t + 1] += cfg.noise * rng.standard_normal((cfg.patches, cfg.dim))
    return z.astype(np.float32), actions.astype(np.float32)


def oracle_next(cfg: DynamicsConfig, name: str, features: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """What the true law predicts for steps 1..T-1 from the stored steps 0..T-2 of clip
    `name`: features [T, P, D], actions [T, A] -> [T-1, P, D] (noise-free)."""
    family, index = parse_clip_name(name)
    a_matrix = transition(cfg, family, hidden_numbers(cfg, family, index))
    return next_step(family, a_matrix, action_map(cfg), features[:-1].astype(np.float64),
                     actions[:-1].astype(np.float64))


def store_attrs(cfg: DynamicsConfig) -> dict:
    side = math.isqrt(cfg.patches)
    return {
        "hope_version": __version__,
        "encoder": {"name": "synthetic:hidden-dynamics", "config": {"embed_dim": cfg.dim},
                    "checksum": f"dynamics-{cfg.seed}", "random_features": False},
        "time_mode": "tubelet",
        "frames_per_clip": 2 * cfg.steps,
        "resolution": None,
        "fps": None,
        "tubelet_size": 2,
        "patch_size": 16,
        "patches_per_step": cfg.patches,
        "grid": [side, side],
        "action_dim": cfg.action_dim,
        "state_dim": STATE_DIM,
        "dynamics": asdict(cfg),
    }


def write_dynamics_store(out: str | Path, cfg: DynamicsConfig, clips: dict[str, int], *,
                         on_clip: Callable[[str], None] | None = None) -> Path:
    """Write (or resume) a store at `out` with clips[family] clips of each family."""
    from hopecli.data.store import ClipFeatures, FeatureStore

    for family in clips:
        if family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES!r}, got {family!r}")
    store = FeatureStore.create_or_resume(out, store_attrs(cfg), steps=cfg.steps, dim=cfg.dim)
    if store.attrs.get("dynamics") != asdict(cfg):
        raise HopeError(f"{out}: store was made with other dynamics settings "
                        f"({store.attrs.get('dynamics')!r}); use another --out")
    names = [clip_name(f, i) for f, n in clips.items() for i in range(n)]
    tasks = [f for f, n in clips.items() for _ in range(n)]
    indices = store.add_clips(names, tasks)
    done = store.done
    for name, index in zip(names, indices):
        if not done[index]:
            features, actions = simulate(cfg, *parse_clip_name(name))
            states = np.zeros((cfg.steps, STATE_DIM), dtype=np.float32)
            store.write(index, ClipFeatures(features, actions, states))
        if on_clip is not None:
            on_clip(name)
    return Path(out)


def store_dynamics(store) -> DynamicsConfig | None:
    """The DynamicsConfig of a store written here, None for any other store."""
    attrs = store.attrs.get("dynamics")
    return None if attrs is None else DynamicsConfig.from_attrs(attrs)


def family_counts(names: Sequence[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name in names:
        family = parse_clip_name(name)[0]
        counts[family] = counts.get(family, 0) + 1
    return counts
