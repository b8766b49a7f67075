"""`hope synth`: planar push clips from a 2D physics engine, with their sidecars."""

from __future__ import annotations

from pathlib import Path

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from hopecli.console import err

DEFAULT_REGIMES = (("low", 0.1), ("mid", 0.4), ("high", 0.8))


def _regimes(frictions: tuple[str, ...], named: tuple[str, ...]) -> list[tuple[str, float]]:
    """(task, mu) pairs from --friction values (labelled muX) and --regime name=mu."""
    result: list[tuple[str, float]] = []
    for group in frictions:
        for text in group.split(","):
            try:
                mu = float(text)
            except ValueError:
                raise click.BadParameter(f"{text!r} is not a number",
                                         param_hint="--friction") from None
            result.append((f"mu{mu:g}", mu))
    for text in named:
        name, sep, value = text.partition("=")
        try:
            mu = float(value)
        except ValueError:
            mu = None
        if not sep or not name or mu is None:
            raise click.BadParameter(f"{text!r} is not NAME=MU", param_hint="--regime")
        result.append((name, mu))
    negative = [mu for _, mu in result if not mu >= 0]
    if negative:
        raise click.BadParameter(f"friction {negative[0]:g} is negative")
    names = [name for name, _ in result]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise click.BadParameter(f"task label {duplicates[0]!r} given twice")
    return result or list(DEFAULT_REGIMES)


@click.command()
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder to write clip.mp4 + clip.npz pairs into.")
@click.option("--clips", default=12, show_default=True, type=click.IntRange(min=1),
              help="Clips per friction regime.")
@click.option("--frames", default=16, show_default=True, type=click.IntRange(min=2),
              help="Frames per clip.")
@click.option("--resolution", default=128, show_default=True, type=click.IntRange(min=16),
              help="Frame width and height in pixels (even).")
@click.option("--fps", default=8.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Frames per second (physics runs at 240 Hz regardless).")
@click.option("--friction", "frictions", multiple=True, metavar="MU[,MU...]",
              help="Table friction coefficients; each becomes a task labelled muMU. Repeatable.")
@click.option("--regime", "named", multiple=True, metavar="NAME=MU",
              help="A named friction regime (the task label is NAME). Repeatable. "
                   "Default without --friction/--regime: low=0.1, mid=0.4, high=0.8.")
@click.option("--mass", default=1.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Object mass (the pusher's force is limited, so heavy objects move slower).")
@click.option("--shape", default="mixed", show_default=True,
              type=click.Choice(["box", "disc", "mixed"]),
              help="Object shape; mixed picks one per clip.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0),
              help="Base seed; each clip's seed follows from it, its task and its index.")
@click.option("--single", metavar="NAME", default=None,
              help="Write one clip of the one given regime as OUT/NAME.mp4 (+ NAME.npz).")
def command(out, clips, frames, resolution, fps, frictions, named, mass, shape, seed, single):
    """Simulate planar pushing and write clips with action/state sidecars.

    A pusher driven by smooth random commanded displacements pushes a box or disc across
    a table with the given friction (pymunk physics, top-down view). Each clip is an
    H.264 video and a .npz sidecar with actions [F, 2], states [F, 2] (pusher position),
    object_states [F, 3], fps, friction, mass, task and seed. The same seed always
    gives the same clips.
    """
    from hopecli.data.synth import synth_clips

    regimes = _regimes(frictions, named)
    if single is not None:
        if len(regimes) != 1:
            raise click.UsageError("--single needs exactly one --friction or --regime")
        clips = 1
    if resolution % 2:
        raise click.BadParameter(f"{resolution} is odd (H.264 needs an even size)",
                                 param_hint="--resolution")
    with Progress(TextColumn("synth"), BarColumn(), MofNCompleteColumn(), console=err,
                  transient=True) as progress:
        bar = progress.add_task("clips", total=len(regimes) * clips)
        written = synth_clips(out, regimes, clips=clips, frames=frames, resolution=resolution,
                              fps=fps, mass=mass, shape=shape, seed=seed, single=single,
                              on_clip=lambda _: progress.advance(bar))
    table = Table(title=f"{len(written)} clip{'' if len(written) == 1 else 's'} in {out}")
    for column in ("task", "friction", "clips"):
        table.add_column(column)
    for task, mu in regimes:
        table.add_row(task, f"{mu:g}", str(clips))
    err.print(table)
