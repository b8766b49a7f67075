"""The end-of-run report shared by the commands that write a store clip by clip."""

from __future__ import annotations

import json
from collections.abc import Sequence

import click
from rich.table import Table

from hopecli.console import err


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
