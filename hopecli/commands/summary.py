"""Progress and the end-of-run report shared by the commands that write a store clip by clip."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from hopecli.console import err
from hopecli.train.interrupt import Terminated


def report_writes(title: str, result, extra_rows: Sequence[tuple[str, str]], *, as_json: bool,
                  allow_skips: bool, unit: str) -> None:
    """Summary table and skipped inputs on stderr, `--json` on stdout, and a non-zero exit
    when anything was skipped (unless `allow_skips`).

    `result` has `written`, `already_done`, `skipped` (items with `.reason`), `seconds`
    and `to_json()`; `unit` names what was skipped ("file", "clip").
    """
    table = Table(title=title, show_header=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("clips written", str(len(result.written)))
    table.add_row("already done", str(len(result.already_done)))
    table.add_row("skipped", str(len(result.skipped)))
    for name, value in extra_rows:
        table.add_row(name, value)
    table.add_row("seconds", f"{result.seconds:.1f}")
    err.print(table)
    if result.skipped:
        skipped = Table(title="skipped")
        skipped.add_column(f"{unit}: reason", overflow="fold")
        for s in result.skipped:
            skipped.add_row(s.reason)
        err.print(skipped)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
    if result.skipped and not allow_skips:
        raise click.ClickException(
            f"{len(result.skipped)} {unit}(s) skipped; fix them or pass --allow-skips")


@contextmanager
def clip_progress(label: str, out) -> Iterator[dict]:
    """A Rich bar on stderr (none when stderr is not a terminal); yields the `on_skip`,
    `on_start` and `on_clip` callbacks of the writer. Ctrl-C ends the command with exit
    130 and says how to resume: what was written stays valid."""
    progress = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(),
                        TimeRemainingColumn(), console=err, transient=True,
                        disable=not err.is_terminal)
    bar = progress.add_task("clips", total=None)
    written = 0

    def on_clip(_: str) -> None:
        nonlocal written
        written += 1
        progress.advance(bar)

    callbacks = {
        "on_skip": lambda s: progress.console.print(f"[yellow]skipped:[/] {s.reason}",
                                                    highlight=False, soft_wrap=True),
        "on_start": lambda n: progress.update(bar, total=n),
        "on_clip": on_clip,
    }
    try:
        with progress:
            yield callbacks
    except (KeyboardInterrupt, Terminated) as e:
        err.print(f"interrupted: {written} clips written to {out}; "
                  "run the same command again to resume")
        raise SystemExit(e.exit_code if isinstance(e, Terminated) else 130) from None
