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

Beyond friction and mass, a `Shift` changes the physics the way the seeds' continual-learning
study shifts it, so that a synthetic study has the same shape as theirs (base training, then
five shifts; `PRESETS`, in `STUDY` order):

- `base`: the standard push;
- `scaling`: the object 1.6x as wide, its mass scaled with its area;
- `dissipation`: three times the base table friction;
- `discretization`: a square arena of walls inside the table (elasticity 0.8), so the object
  bounces: discrete events in otherwise smooth dynamics;
- `kinematics`: a box launched spinning, with little friction against spin, so it keeps
  turning (the marker on the box shows its angle);
- `compositional`: scaled, walled and spinning at once, a mix no single shift trains on.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
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
ARENA_INSET = 15.0  # cm from each table edge to the centre line of a shift's arena walls
ARENA_WALL_RADIUS = 1.5  # cm, half the thickness of an arena wall
WALL_ELASTICITY = 0.8  # restitution of the object bouncing off an arena wall
SUPERSAMPLE = 2  # render at 2x and average, for smooth edges

SHAPES = ("box", "disc")
BACKGROUND = (226, 220, 205)
OBJECT_COLOR = (196, 64, 52)
MARKER_COLOR = (245, 205, 70)
PUSHER_COLOR = (44, 84, 196)
WALL_COLOR = (72, 72, 84)


@dataclass(frozen=True)
class Shift:
    """Physics beyond table friction and mass: object size, arena walls, spin.

    The default is the standard push. `spin` is the object's initial angular velocity (rad/s,
    positive turns from +x toward +y); `spin_friction` scales the table's friction torque
    against spin (1: the Coulomb torque of the contact patch; near 0: the object keeps
    turning, as on an air table).
    """

    scale: float = 1.0
    walls: bool = False
    spin: float = 0.0
    spin_friction: float = 1.0

    def __post_init__(self) -> None:
        if not (self.scale > 0 and math.isfinite(self.scale)):
            raise ValueError(f"scale must be a positive number, got {self.scale!r}")
        if not isinstance(self.walls, bool):
            raise ValueError(f"walls must be True or False, got {self.walls!r}")
        if not math.isfinite(self.spin):
            raise ValueError(f"spin must be a finite number, got {self.spin!r}")
        if not self.spin_friction >= 0:
            raise ValueError(f"spin_friction must be >= 0, got {self.spin_friction!r}")


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
    shift: Shift | None = None  # None: a plain friction clip, whose sidecar records no shift

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
        if self.shift is not None and not isinstance(self.shift, Shift):
            raise ValueError(f"shift must be a Shift or None, got {self.shift!r}")
        lo, hi = self.bounds
        if self.radius + 1.0 > (hi - lo) / 2 - 2 * PUSHER_RADIUS:
            raise ValueError(f"scale {self.physics.scale!r} makes the {self.shape} too large "
                             f"for a {hi - lo:g} cm {'arena' if self.physics.walls else 'table'}")

    @property
    def physics(self) -> Shift:
        """The shift in effect (the standard push when `shift` is None)."""
        return self.shift if self.shift is not None else Shift()

    @property
    def half_width(self) -> float:
        """Half the object's width in cm: half the box side or the disc radius."""
        return (BOX_SIDE / 2 if self.shape == "box" else DISC_RADIUS) * self.physics.scale

    @property
    def radius(self) -> float:
        """Distance from the object's centre to its farthest point (a box's corner), cm."""
        return self.half_width * (math.sqrt(2.0) if self.shape == "box" else 1.0)

    @property
    def bounds(self) -> tuple[float, float]:
        """Low and high x (and y) of the space the object moves in: arena or table, cm."""
        if self.physics.walls:
            return ARENA_INSET, TABLE - ARENA_INSET
        return 0.0, TABLE


@dataclass(frozen=True)
class PushClip:
    """A simulated clip. Row f of each array belongs to video frame f."""

    config: PushConfig
    frames: np.ndarray  # [F, R, R, 3] uint8 RGB
    actions: np.ndarray  # [F, 2] float32, commanded pusher displacement from frame f to f+1
    states: np.ndarray  # [F, 2] float32, pusher position at frame f
    object_states: np.ndarray  # [F, 3] float32, object x, y (normalised) and angle (rad)


class _Table:
    """The pymunk space: walls (and a shift's arena), object with table friction, pusher.

    The object's elasticity is 1, so a contact's restitution is the other shape's: 0 for the
    pusher and the table edge, WALL_ELASTICITY for arena walls.
    """

    def __init__(self, config: PushConfig, object_pos: np.ndarray, angle: float,
                 pusher_pos: np.ndarray) -> None:
        self.space = pymunk.Space()
        static = self.space.static_body
        for a, b in (((0, 0), (TABLE, 0)), ((TABLE, 0), (TABLE, TABLE)),
                     ((TABLE, TABLE), (0, TABLE)), ((0, TABLE), (0, 0))):
            wall = pymunk.Segment(static, a, b, 1.0)
            wall.friction = CONTACT_FRICTION
            self.space.add(wall)
        physics = config.physics
        if physics.walls:
            lo, hi = config.bounds
            for a, b in (((lo, lo), (hi, lo)), ((hi, lo), (hi, hi)),
                         ((hi, hi), (lo, hi)), ((lo, hi), (lo, lo))):
                wall = pymunk.Segment(static, a, b, ARENA_WALL_RADIUS)
                wall.friction = CONTACT_FRICTION
                wall.elasticity = WALL_ELASTICITY
                self.space.add(wall)

        m = config.mass
        half = config.half_width
        if config.shape == "box":
            moment = pymunk.moment_for_box(m, (2 * half, 2 * half))
            r_eff = 0.3826 * 2 * half
        else:
            moment = pymunk.moment_for_circle(m, 0.0, half)
            r_eff = 2.0 / 3.0 * half
        self.object = pymunk.Body(m, moment)
        self.object.position = tuple(object_pos)
        self.object.angle = angle
        self.object.angular_velocity = physics.spin
        if config.shape == "box":
            shape = pymunk.Poly.create_box(self.object, (2 * half, 2 * half))
        else:
            shape = pymunk.Circle(self.object, half)
        shape.friction = CONTACT_FRICTION
        shape.elasticity = 1.0
        slide = pymunk.PivotJoint(static, self.object, (0, 0), (0, 0))
        spin = pymunk.GearJoint(static, self.object, 0.0, 1.0)
        torque = config.friction * m * GRAVITY * r_eff * physics.spin_friction
        for joint, limit in ((slide, config.friction * m * GRAVITY), (spin, torque)):
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

    def __init__(self, rng: np.random.Generator, reach: float,
                 room: tuple[float, float]) -> None:
        self.rng = rng
        self.reach = reach
        self.room = room  # low, high goal for the object's centre: face on against a wall
        self.goal = self._new_goal()
        self.noise = np.zeros(2)
        self.effort = abs(rng.normal())  # start out pushing
        self.command = np.zeros(2)

    def _new_goal(self) -> np.ndarray:
        return np.clip(self.rng.uniform(0.25 * TABLE, 0.75 * TABLE, size=2), *self.room)

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
    if config.physics.walls:
        lo, hi = config.bounds
        square = np.maximum(np.abs(xs - TABLE / 2), np.abs(ys - TABLE / 2))  # sup-norm radius
        image[np.abs(square - (hi - lo) / 2) <= ARENA_WALL_RADIUS] = WALL_COLOR
    c, s = math.cos(angle), math.sin(angle)
    dx, dy = xs - object_pos[0], ys - object_pos[1]
    lx, ly = c * dx + s * dy, -s * dx + c * dy  # pixel in the object's own frame
    half = config.half_width
    if config.shape == "box":
        body = (np.abs(lx) <= half) & (np.abs(ly) <= half)
        mark = (half / 2, half / 2)  # off both axes: shows the angle mod 360
        mark_r = 2 * half / 7
    else:
        body = lx**2 + ly**2 <= half**2
        mark = (half / 2, 0.0)
        mark_r = half / 3.5
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
    reach = config.half_width + PUSHER_RADIUS
    lo, hi = config.bounds
    object_pos = rng.uniform(0.3 * TABLE, 0.7 * TABLE, size=2)
    # clear of the walls whatever the angle (a no-op for the standard object on the table)
    object_pos = np.clip(object_pos, lo + config.radius + 1.0, hi - config.radius - 1.0)
    angle = float(rng.uniform(-math.pi, math.pi))
    wall = ARENA_WALL_RADIUS if config.physics.walls else 0.0
    policy = _PushPolicy(rng, reach, (lo + wall + config.half_width, hi - wall - config.half_width))
    # start behind the object as seen from the first goal, a short run-up away
    start = object_pos - (reach + rng.uniform(4.0, 16.0)) * _unit(policy.goal - object_pos)
    start = np.clip(start + rng.normal(scale=3.0, size=2), lo + 2 * PUSHER_RADIUS,
                    hi - 2 * PUSHER_RADIUS)
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


@dataclass(frozen=True)
class Regime:
    """A task of a synthetic set: its label and the physics all its clips share.

    `shift` None is a plain friction regime (as the shipped samples: the sidecar records
    friction and mass, nothing else); a Shift, the default one included, makes a regime of
    a shift study, whose sidecars record the whole physics. `shape` fixes the object's
    shape (a spinning disc would show little), None leaves it to `synth_clips`.
    """

    name: str
    friction: float = 0.4
    shift: Shift | None = None
    shape: str | None = None

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name:
            raise ValueError(f"regime name must be a non-empty file name part, got {self.name!r}")
        if not self.friction >= 0:
            raise ValueError(f"friction must be >= 0, got {self.friction!r}")
        if self.shape is not None and self.shape not in SHAPES:
            raise ValueError(f"shape must be one of {SHAPES} or None, got {self.shape!r}")


SPIN = 6.0  # rad/s, the spinning regimes' initial angular velocity (sign drawn per clip)
PRESETS: dict[str, Regime] = {
    "base": Regime("base", shift=Shift()),
    "scaling": Regime("scaling", shift=Shift(scale=1.6)),
    "dissipation": Regime("dissipation", friction=1.2, shift=Shift()),
    "discretization": Regime("discretization", shift=Shift(walls=True)),
    "kinematics": Regime("kinematics", shift=Shift(spin=SPIN, spin_friction=0.02), shape="box"),
    "compositional": Regime("compositional", shape="box",
                            shift=Shift(scale=1.6, walls=True, spin=SPIN, spin_friction=0.02)),
}
STUDY = tuple(PRESETS)  # base training first, then the five shifts


def clip_seed(seed: int, task: str, index: int) -> int:
    """Seed of clip `index` of a task: fixed by (seed, task name, index) alone, so adding a
    task or more clips leaves the other clips unchanged."""
    entropy = [seed, zlib.crc32(task.encode()), index]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def clip_config(regime: Regime, index: int, *, seed: int = 0, mass: float = 1.0,
                shape: str = "mixed", frames: int = 16, resolution: int = 128,
                fps: float = 8.0) -> PushConfig:
    """The config of clip `index` of a regime. `mass` is the standard object's: a scaled one
    weighs mass * scale^2 (same material, more area). A spin's sign is drawn from the seed."""
    s = clip_seed(seed, regime.name, index)
    shift = regime.shift
    if shift is not None and shift.spin and (s >> 1) % 2:  # bit 0 picks "mixed" shapes
        shift = replace(shift, spin=-shift.spin)
    scale = shift.scale if shift is not None else 1.0
    return PushConfig(frames=frames, resolution=resolution, fps=fps, friction=regime.friction,
                      mass=mass * scale**2, seed=s, task=regime.name, shift=shift,
                      shape=regime.shape or (SHAPES[s % 2] if shape == "mixed" else shape))


def shift_record(config: PushConfig) -> dict[str, float | bool]:
    """What a shift clip's sidecar records beyond friction and mass; {} for a plain clip.

    size is the object's width (box side, disc diameter) and wall_inset the distance of the
    arena walls from the table edge (0 without walls), both in table widths like the states.
    """
    if config.shift is None:
        return {}
    shift = config.shift
    return {"scale": float(shift.scale), "size": 2 * config.half_width / TABLE,
            "walls": shift.walls, "wall_inset": ARENA_INSET / TABLE if shift.walls else 0.0,
            "spin": float(shift.spin), "spin_friction": float(shift.spin_friction)}


def write_clip(clip: PushClip, video: str | Path) -> Path:
    """Write `video` (H.264) and its sidecar (same stem, .npz); returns the video path."""
    cfg = clip.config
    video = write_video(video, clip.frames, cfg.fps)
    save_sidecar(sidecar_path(video), clip.actions, clip.states, task=cfg.task,
                 object_states=clip.object_states, fps=float(cfg.fps),
                 friction=float(cfg.friction), mass=float(cfg.mass), seed=cfg.seed,
                 shape=cfg.shape, **shift_record(cfg))
    return video


def synth_clips(out: str | Path, regimes: Sequence[Regime | tuple[str, float]], *,
                clips: int = 12, frames: int = 16, resolution: int = 128, fps: float = 8.0,
                mass: float = 1.0, shape: str = "mixed", seed: int = 0, single: str | None = None,
                on_clip: Callable[[Path], None] | None = None) -> list[Path]:
    """Write `clips` clips per regime into `out` as `{name}_{i:03d}.mp4`.

    A regime is a `Regime` (e.g. `PRESETS["scaling"]`) or a (name, friction) pair, a plain
    friction regime. With `single`, exactly one regime and one clip are written as
    `{single}.mp4`. `shape` is "box", "disc" or "mixed" (chosen per clip from its seed) for
    regimes that do not fix it. Returns the video paths.
    """
    regimes = [r if isinstance(r, Regime) else Regime(r[0], r[1]) for r in regimes]
    if not regimes:
        raise ValueError("give at least one regime")
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
    for regime in regimes:
        for index in range(clips):
            config = clip_config(regime, index, seed=seed, mass=mass, shape=shape,
                                 frames=frames, resolution=resolution, fps=fps)
            name = single if single is not None else f"{regime.name}_{index:03d}"
            written.append(write_clip(simulate_push(config), out / f"{name}.mp4"))
            if on_clip is not None:
                on_clip(written[-1])
    return written
