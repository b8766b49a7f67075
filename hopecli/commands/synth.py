"""`hope synth`: planar push clips from a 2D physics engine, with their sidecars; or, with
--dynamics, the in-context benchmark's feature store (hopecli.data.dynamics)."""

from __future__ import annotations

from pathlib import Path

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from hopecli.commands.help import HopeCommand
from hopecli.console import err
from hopecli.data.synth import PRESETS, STUDY, Regime

DEFAULT_REGIMES = (("low", 0.1), ("mid", 0.4), ("high", 0.8))


def _friction(name: str, mu: float) -> Regime:
    if not mu >= 0:
        raise click.BadParameter(f"friction {mu:g} is negative")
    return Regime(name, mu)


def _regimes(frictions: tuple[str, ...], named: tuple[str, ...]) -> list[Regime]:
    """Regimes from --friction values (labelled muX) and --regime PRESET or NAME=MU."""
    regimes: list[Regime] = []
    for group in frictions:
        for text in group.split(","):
            try:
                mu = float(text)
            except ValueError:
                raise click.BadParameter(f"{text!r} is not a number",
                                         param_hint="--friction") from None
            regimes.append(_friction(f"mu{mu:g}", mu))
    for text in named:
        name, sep, value = text.partition("=")
        if not sep:
            if name not in PRESETS:
                raise click.BadParameter(
                    f"{text!r} is neither a preset ({', '.join(STUDY)}) nor NAME=MU",
                    param_hint="--regime")
            regimes.append(PRESETS[name])
            continue
        if name in PRESETS:
            raise click.BadParameter(f"{name!r} names a preset: give it without '={value}', "
                                     "or label the friction regime differently",
                                     param_hint="--regime")
        try:
            mu = float(value)
        except ValueError:
            mu = None
        if not name or mu is None:
            raise click.BadParameter(f"{text!r} is not NAME=MU", param_hint="--regime")
        regimes.append(_friction(name, mu))
    names = [regime.name for regime in regimes]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise click.BadParameter(f"task label {duplicates[0]!r} given twice")
    return regimes or [Regime(name, mu) for name, mu in DEFAULT_REGIMES]


def _summary(regimes: list[Regime], clips: int, mass: float, title: str) -> Table:
    """One row per regime: its label and the physics its clips share."""
    table = Table(title=title)
    for column in ("task", "friction", "mass", "size", "walls", "spin", "clips"):
        table.add_column(column)
    for regime in regimes:
        shift = regime.shift
        scale = shift.scale if shift is not None else 1.0
        spin = shift.spin if shift is not None else 0.0
        table.add_row(regime.name, f"{regime.friction:g}", f"{mass * scale**2:g}",
                      f"{scale:g}x", "yes" if shift is not None and shift.walls else "no",
                      f"±{spin:g} rad/s" if spin else "0", str(clips))
    return table


EXAMPLES = [
    ("three friction regimes of 14 clips each (how sample_data/ was made)",
     "hope synth --out sample_data --clips 14 --regime low=0.1 --regime mid=0.4 --regime high=0.8 --seed 0"),
    ("the earlier pipeline's shift study: base and five physics shifts, 12 clips each",
     "hope synth --study --clips 12 --out study"),
    ("the in-context benchmark: a feature store of hidden-dynamics clips (no video, no encoder)",
     "hope synth --dynamics --clips 128 --out icl.zarr"),
]


def _dynamics(out: Path, clips: int, frames: int, seed: int) -> None:
    """--dynamics: write the hidden-dynamics feature store and say what is in it."""
    from hopecli.data.dynamics import DynamicsConfig, write_dynamics_store

    if frames % 2 or frames < 6:
        raise click.BadParameter(f"{frames} frames: --dynamics needs an even number of at least 6 "
                                 "(two frames a step, as a tubelet store)", param_hint="--frames")
    cfg = DynamicsConfig(steps=frames // 2, seed=seed)
    counts = {"linear": clips, "nonlinear": clips, "heldout": max(8, clips // 4)}
    with Progress(TextColumn("synth"), BarColumn(), MofNCompleteColumn(), console=err,
                  transient=True, disable=not err.is_terminal) as progress:
        bar = progress.add_task("clips", total=sum(counts.values()))
        write_dynamics_store(out, cfg, counts, on_clip=lambda _: progress.advance(bar))
    table = Table(title=f"{sum(counts.values())} hidden-dynamics clips in {out} "
                        f"({cfg.steps} steps x {cfg.patches} patches x {cfg.dim} features)")
    for column in ("task", "law of every patch", "hidden numbers", "clips"):
        table.add_column(column)
    laws = {"linear": "z' = A(theta) z + B a", "nonlinear": "z' = 1.5 tanh(A(theta) z) + B a",
            "heldout": "z' = A(theta) z + B a, generators of its own"}
    for family, count in counts.items():
        table.add_row(family, laws[family], str(cfg.hidden), str(count))
    err.print(table)
    err.print("train on linear,nonlinear (`hope train STORE --tasks linear,nonlinear --strategy joint`); "
              "`hope eval` then shows the in-context curve beside copy, the no-context map, "
              "in-context least squares and the oracle, heldout included")


# the --help panels, in order; every option belongs to one (tests/test_help.py checks)
PANELS = [
    ("Clips", ["--clips", "--frames", "--resolution", "--fps", "--seed", "--single"]),
    ("Physics", ["--friction", "--regime", "--study", "--mass", "--shape"]),
    ("Output", ["--out", "--dynamics", "--help"]),
]


@click.command(cls=HopeCommand, examples=EXAMPLES, see_also=["extract", "train"],
               option_panels=PANELS)
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder to write clip.mp4 + clip.npz pairs into.")
@click.option("--clips", default=12, show_default=True, type=click.IntRange(min=1),
              help="Clips per regime.")
@click.option("--frames", default=16, show_default=True, type=click.IntRange(min=2),
              help="Frames per clip.")
@click.option("--resolution", default=128, show_default=True, type=click.IntRange(min=16),
              help="Frame width and height in pixels (even).")
@click.option("--fps", default=8.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Frames per second (physics runs at 240 Hz regardless).")
@click.option("--friction", "frictions", multiple=True, metavar="MU[,MU...]",
              help="Table friction coefficients; each becomes a task labelled muMU. Repeatable.")
@click.option("--regime", "named", multiple=True, metavar="PRESET|NAME=MU",
              help="A preset regime (base, scaling, dissipation, discretization, kinematics, "
                   "compositional; the task label is its name) or a named friction regime "
                   "NAME=MU. Repeatable. Default without --friction/--regime/--study: "
                   "low=0.1, mid=0.4, high=0.8.")
@click.option("--study", is_flag=True,
              help="Write a shift study: base and the five shift presets, --clips each.")
@click.option("--mass", default=1.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Object mass (the pusher's force is limited, so heavy objects move slower); "
                   "scaled objects weigh more in proportion to their area.")
@click.option("--shape", default="mixed", show_default=True,
              type=click.Choice(["box", "disc", "mixed"]),
              help="Object shape; mixed picks one per clip. Spinning presets always use a box.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0),
              help="Base seed; each clip's seed follows from it, its task and its index.")
@click.option("--single", metavar="NAME", default=None,
              help="Write one clip of the one given regime as OUT/NAME.mp4 (+ NAME.npz).")
@click.option("--dynamics", is_flag=True,
              help="Write a feature store (OUT, Zarr) of hidden-dynamics clips instead of videos: "
                   "the in-context benchmark. --clips each of the linear and nonlinear families, "
                   "a quarter as many (at least 8) of the held-out family; --frames / 2 steps.")
def command(out, clips, frames, resolution, fps, frictions, named, study, mass, shape, seed,
            single, dynamics):
    """Simulate planar pushing and write clips with action/state sidecars.

    A pusher driven by smooth random commanded displacements pushes a box or disc across
    a table (pymunk physics, top-down view). A friction regime changes only the table
    friction; the presets shift the physics as a continual-learning study does: base (the
    standard push), scaling (a 1.6x wider, heavier object), dissipation (3x friction),
    discretization (walls to bounce off), kinematics (a spinning box) and compositional
    (scaled, walled and spinning at once). Each clip is an H.264 video and a .npz sidecar
    with actions [F, 2], states [F, 2] (pusher position), object_states [F, 3], fps,
    friction, mass, shape, task and seed; a preset's sidecar also records scale, size,
    walls, wall_inset, spin and spin_friction. The same seed always gives the same clips.

    With --dynamics, OUT is a feature store of clips whose every patch follows a hidden
    law of the clip (a rotation set by a few hidden numbers, linear or through tanh, plus
    the action): only the clip's own earlier steps reveal it, so `hope eval` can tell
    whether a predictor learns in context, against copy, the best no-context map,
    in-context least squares and the oracle.
    """
    from hopecli.data.synth import synth_clips

    if dynamics:
        if study or frictions or named or single is not None:
            raise click.UsageError("--dynamics writes its own three families: leave out "
                                   "--study, --friction, --regime and --single")
        _dynamics(out, clips, frames, seed)
        return
    if study:
        if frictions or named or single is not None:
            raise click.UsageError("--study writes its own six regimes: leave out "
                                   "--friction, --regime and --single")
        regimes = [PRESETS[name] for name in STUDY]
    else:
        regimes = _regimes(frictions, named)
    if single is not None:
        if len(regimes) != 1:
            raise click.UsageError("--single needs exactly one --friction or --regime")
        clips = 1
    if resolution % 2:
        raise click.BadParameter(f"{resolution} is odd (H.264 needs an even size)",
                                 param_hint="--resolution")
    with Progress(TextColumn("synth"), BarColumn(), MofNCompleteColumn(), console=err,
                  transient=True, disable=not err.is_terminal) as progress:
        bar = progress.add_task("clips", total=len(regimes) * clips)
        written = synth_clips(out, regimes, clips=clips, frames=frames, resolution=resolution,
                              fps=fps, mass=mass, shape=shape, seed=seed, single=single,
                              on_clip=lambda _: progress.advance(bar))
    title = f"{len(written)} clip{'' if len(written) == 1 else 's'} in {out}"
    err.print(_summary(regimes, clips, mass, title))
