"""Planar push clips from a 2D physics engine (pymunk), rendered top-down.

A round pusher, driven by commanded displacements (the actions), pushes one object (a box
or a disc) across a walled square table. The table is seen from above, so pymunk's gravity
plays no part; sliding friction with the table is modelled instead by two constraints
from the object to the static table body, as pymunk's top-down examples do:

- a `PivotJoint` with `max_bias = 0` and `max_force = mu * m * g` holds the object's
  linear velocity at zero with at most the Coulomb friction force (dry friction: a
  constant deceleration `mu * g` while sliding, rest once stopped);
- a `GearJoint` with `max_bias = 0` and `max_force = mu * m * g * r_eff` does the same for
  spin, with r_eff the mean distance of the contact patch from its centre (2/3 r for a
  disc, about 0.383 a for a square of side a).

The pusher is a dynamic body servoed to the commanded velocity by a force-limited
`PivotJoint` from a kinematic control body, so a heavy or high-friction object slows it:
the recorded state (where the pusher really is) can differ from the integrated actions.
Friction and mass are therefore visible only through motion, which is what a world model
has to pick up.

Units are centimetres and seconds on a 100 cm table; what is recorded is normalised by the
table size: x to the right, y downwards (image rows), both in [0, 1].
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pymunk

from hopecli.data.sidecar import save_sidecar, sidecar_path
from hopecli.data.video import write_video

TABLE = 100.0  # cm, side of the square table seen by the camera
GRAVITY = 981.0  # cm / s^2, for the friction force mu * m * g
PHYSICS_HZ = 240.0  # simulation substeps per second
PUSHER_RADIUS = 4.5
PUSHER_MASS = 1.0
PUSHER_MAX_FORCE = 2000.0  # g cm / s^2, the servo's force limit
MAX_SPEED = 70.0  # cm / s, commanded pusher speed at full effort
BOX_SIDE = 16.0
DISC_RADIUS = 9.0
CONTACT_FRICTION = 0.3  # pusher-object and object-wall contact, not the table
SUPERSAMPLE = 2  # render at 2x and average, for smooth edges

SHAPES = ("box", "disc")
BACKGROUND = (226, 220, 205)
OBJECT_COLOR = (196, 64, 52)
MARKER_COLOR = (245, 205, 70)
PUSHER_COLOR = (44, 84, 196)


@dataclass(frozen=True)
class PushConfig:
    """One clip: physics parameters, recording settings and the seed that fixes the rest."""

    frames: int = 16
    resolution: int = 128
    fps: float = 8.0
    friction: float = 0.4
    mass: float = 1.0
    shape: str = "box"
    seed: int = 0
    task: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.frames, int) or self.frames < 2:
            raise ValueError(f"frames must be an integer >= 2, got {self.frames!r}")
        if not isinstance(self.resolution, int) or self.resolution < 16 or self.resolution % 2:
            raise ValueError(f"resolution must be an even integer >= 16, got {self.resolution!r}")
        if not self.fps > 0:
            raise ValueError(f"fps must be positive, got {self.fps!r}")
        if not self.friction >= 0:
            raise ValueError(f"friction must be >= 0, got {self.friction!r}")
        if not self.mass > 0:
            raise ValueError(f"mass must be positive, got {self.mass!r}")
        if self.shape not in SHAPES:
            raise ValueError(f"shape must be one of {SHAPES}, got {self.shape!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")


@dataclass(frozen=True)
class PushClip:
    """A simulated clip. Row f of each array belongs to video frame f."""

    config: PushConfig
    frames: np.ndarray  # [F, R, R, 3] uint8 RGB
    actions: np.ndarray  # [F, 2] float32, commanded pusher displacement from frame f to f+1
    states: np.ndarray  # [F, 2] float32, pusher position at frame f
    object_states: np.ndarray  # [F, 3] float32, object x, y (normalised) and angle (rad)


class _Table:
    """The pymunk space: walls, object with table friction, servoed pusher."""

    def __init__(self, config: PushConfig, object_pos: np.ndarray, angle: float,
                 pusher_pos: np.ndarray) -> None:
        self.space = pymunk.Space()
        static = self.space.static_body
        for a, b in (((0, 0), (TABLE, 0)), ((TABLE, 0), (TABLE, TABLE)),
                     ((TABLE, TABLE), (0, TABLE)), ((0, TABLE), (0, 0))):
            wall = pymunk.Segment(static, a, b, 1.0)
            wall.friction = CONTACT_FRICTION
            self.space.add(wall)

        m = config.mass
        if config.shape == "box":
            moment = pymunk.moment_for_box(m, (BOX_SIDE, BOX_SIDE))
            r_eff = 0.3826 * BOX_SIDE
        else:
            moment = pymunk.moment_for_circle(m, 0.0, DISC_RADIUS)
            r_eff = 2.0 / 3.0 * DISC_RADIUS
        self.object = pymunk.Body(m, moment)
        self.object.position = tuple(object_pos)
        self.object.angle = angle
        if config.shape == "box":
            shape = pymunk.Poly.create_box(self.object, (BOX_SIDE, BOX_SIDE))
        else:
            shape = pymunk.Circle(self.object, DISC_RADIUS)
        shape.friction = CONTACT_FRICTION
        slide = pymunk.PivotJoint(static, self.object, (0, 0), (0, 0))
        spin = pymunk.GearJoint(static, self.object, 0.0, 1.0)
        for joint, limit in ((slide, config.friction * m * GRAVITY),
                             (spin, config.friction * m * GRAVITY * r_eff)):
            joint.max_bias = 0.0
            joint.max_force = limit
        self.space.add(self.object, shape, slide, spin)

        self.control = pymunk.Body(body_type=pymunk.Body.KINEMATIC)
        self.pusher = pymunk.Body(PUSHER_MASS, math.inf)
        self.pusher.position = tuple(pusher_pos)
        tip = pymunk.Circle(self.pusher, PUSHER_RADIUS)
        tip.friction = CONTACT_FRICTION
        servo = pymunk.PivotJoint(self.control, self.pusher, (0, 0), (0, 0))
        servo.max_bias = 0.0
        servo.max_force = PUSHER_MAX_FORCE
        self.space.add(self.control, self.pusher, tip, servo)

    def step(self, velocity: np.ndarray, seconds: float, substeps: int) -> None:
        self.control.velocity = tuple(velocity)
        for _ in range(substeps):
            self.space.step(seconds / substeps)

    def object_state(self) -> tuple[np.ndarray, float]:
        return np.array(self.object.position), float(self.object.angle)

    def pusher_position(self) -> np.ndarray:
        return np.array(self.pusher.position)


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 1e-9 else np.zeros_like(v)


class _PushPolicy:
    """Smooth random pushing: steer the object toward a wandering goal on the table.

    Behind the object (seen from the goal) the pusher drives through it; elsewhere it heads
    for the approach point behind it, often bumping it on the way. Direction noise and an
    effort level are slow random processes, and the command is low-pass filtered, so the
    pusher speeds up, slows down and sometimes stops, letting the object slide free.
    """

    def __init__(self, rng: np.random.Generator, reach: float) -> None:
        self.rng = rng
        self.reach = reach
        self.goal = self._new_goal()
        self.noise = np.zeros(2)
        self.effort = abs(rng.normal())  # start out pushing
        self.command = np.zeros(2)

    def _new_goal(self) -> np.ndarray:
        return self.rng.uniform(0.25 * TABLE, 0.75 * TABLE, size=2)

    def __call__(self, pusher: np.ndarray, obj: np.ndarray) -> np.ndarray:
        """Commanded pusher velocity (cm/s) for the next frame."""
        if np.linalg.norm(self.goal - obj) < 6.0 or self.rng.random() < 0.1:
            self.goal = self._new_goal()
        direction = _unit(self.goal - obj)
        rel = pusher - obj
        along = float(rel @ direction)
        across = abs(float(rel @ np.array([-direction[1], direction[0]])))
        if along < -0.5 * self.reach and across < self.reach:
            target = obj + 1.5 * self.reach * direction
        else:
            target = obj - (self.reach + 4.0) * direction
        self.noise = 0.7 * self.noise + 0.3 * self.rng.normal(size=2)
        self.effort = 0.7 * self.effort + math.sqrt(1 - 0.7**2) * self.rng.normal()
        speed = MAX_SPEED * min(max(0.55 + 0.6 * self.effort, 0.0), 1.0)
        wanted = speed * _unit(_unit(target - pusher) + 0.5 * self.noise)
        self.command = 0.5 * self.command + 0.5 * wanted
        return self.command


def _render(config: PushConfig, object_pos: np.ndarray, angle: float,
            pusher_pos: np.ndarray, grid: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """One top-down RGB frame [R, R, 3] uint8 (table coordinates, y down)."""
    xs, ys = grid  # [S, S] pixel centres in cm
    image = np.empty(xs.shape + (3,), np.float32)
    image[:] = BACKGROUND
    c, s = math.cos(angle), math.sin(angle)
    dx, dy = xs - object_pos[0], ys - object_pos[1]
    lx, ly = c * dx + s * dy, -s * dx + c * dy  # pixel in the object's own frame
    if config.shape == "box":
        body = (np.abs(lx) <= BOX_SIDE / 2) & (np.abs(ly) <= BOX_SIDE / 2)
        mark = (BOX_SIDE / 4, BOX_SIDE / 4)  # off both axes: shows the angle mod 360
        mark_r = BOX_SIDE / 7
    else:
        body = lx**2 + ly**2 <= DISC_RADIUS**2
        mark = (DISC_RADIUS / 2, 0.0)
        mark_r = DISC_RADIUS / 3.5
    image[body] = OBJECT_COLOR
    image[(lx - mark[0]) ** 2 + (ly - mark[1]) ** 2 <= mark_r**2] = MARKER_COLOR
    tip = (xs - pusher_pos[0]) ** 2 + (ys - pusher_pos[1]) ** 2 <= PUSHER_RADIUS**2
    image[tip] = PUSHER_COLOR
    r = config.resolution
    image = image.reshape(r, SUPERSAMPLE, r, SUPERSAMPLE, 3).mean(axis=(1, 3))
    return np.round(image).astype(np.uint8)


def simulate_push(config: PushConfig) -> PushClip:
    """Simulate and render one clip; the same config (seed included) gives the same arrays."""
    rng = np.random.default_rng(config.seed)
    reach = (BOX_SIDE / 2 if config.shape == "box" else DISC_RADIUS) + PUSHER_RADIUS
    object_pos = rng.uniform(0.3 * TABLE, 0.7 * TABLE, size=2)
    angle = float(rng.uniform(-math.pi, math.pi))
    policy = _PushPolicy(rng, reach)
    # start behind the object as seen from the first goal, a short run-up away
    start = object_pos - (reach + rng.uniform(4.0, 16.0)) * _unit(policy.goal - object_pos)
    start = np.clip(start + rng.normal(scale=3.0, size=2), 2 * PUSHER_RADIUS,
                    TABLE - 2 * PUSHER_RADIUS)
    table = _Table(config, object_pos, angle, start)

    size = config.resolution * SUPERSAMPLE
    centres = (np.arange(size) + 0.5) * (TABLE / size)
    grid = np.meshgrid(centres, centres, indexing="xy")
    substeps = max(1, round(PHYSICS_HZ / config.fps))

    frames, actions, states, object_states = [], [], [], []
    for _ in range(config.frames):
        obj, obj_angle = table.object_state()
        pusher = table.pusher_position()
        frames.append(_render(config, obj, obj_angle, pusher, grid))
        states.append(pusher / TABLE)
        object_states.append([obj[0] / TABLE, obj[1] / TABLE, obj_angle])
        velocity = policy(pusher, obj)
        actions.append(velocity / config.fps / TABLE)
        table.step(velocity, 1.0 / config.fps, substeps)
    return PushClip(
        config=config,
        frames=np.stack(frames),
        actions=np.asarray(actions, np.float32),
        states=np.asarray(states, np.float32),
        object_states=np.asarray(object_states, np.float32),
    )


def clip_seed(seed: int, task: str, index: int) -> int:
    """Seed of clip `index` of a task: fixed by (seed, task name, index) alone, so adding a
    task or more clips leaves the other clips unchanged."""
    entropy = [seed, zlib.crc32(task.encode()), index]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def write_clip(clip: PushClip, video: str | Path) -> Path:
    """Write `video` (H.264) and its sidecar (same stem, .npz); returns the video path."""
    cfg = clip.config
    video = write_video(video, clip.frames, cfg.fps)
    save_sidecar(sidecar_path(video), clip.actions, clip.states, task=cfg.task,
                 object_states=clip.object_states, fps=float(cfg.fps),
                 friction=float(cfg.friction), mass=float(cfg.mass), seed=cfg.seed,
                 shape=cfg.shape)
    return video


def synth_clips(out: str | Path, regimes: Sequence[tuple[str, float]], *, clips: int = 12,
                frames: int = 16, resolution: int = 128, fps: float = 8.0, mass: float = 1.0,
                shape: str = "mixed", seed: int = 0, single: str | None = None,
                on_clip: Callable[[Path], None] | None = None) -> list[Path]:
    """Write `clips` clips per (task, friction) regime into `out` as `{task}_{i:03d}.mp4`.

    With `single`, exactly one regime and one clip are written as `{single}.mp4`. `shape` is
    "box", "disc" or "mixed" (chosen per clip from its seed). Returns the video paths.
    """
    if not regimes:
        raise ValueError("give at least one (task, friction) regime")
    if shape not in SHAPES + ("mixed",):
        raise ValueError(f"shape must be one of {SHAPES + ('mixed',)}, got {shape!r}")
    if clips < 1:
        raise ValueError(f"clips must be >= 1, got {clips!r}")
    if single is not None and (len(regimes) != 1 or clips != 1):
        raise ValueError(f"single {single!r} writes one clip of one regime, got "
                         f"{len(regimes)} regimes x {clips} clips")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for task, friction in regimes:
        for index in range(clips):
            s = clip_seed(seed, task, index)
            config = PushConfig(frames=frames, resolution=resolution, fps=fps,
                                friction=friction, mass=mass, seed=s, task=task,
                                shape=SHAPES[s % 2] if shape == "mixed" else shape)
            name = single if single is not None else f"{task}_{index:03d}"
            written.append(write_clip(simulate_push(config), out / f"{name}.mp4"))
            if on_clip is not None:
                on_clip(written[-1])
    return written
