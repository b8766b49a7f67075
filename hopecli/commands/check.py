"""`hope check`: verify a feature store or a run folder; list what is damaged."""

from __future__ import annotations

import json
from pathlib import Path

import click

from hopecli.commands.help import HopeCommand
from hopecli.commands.options import threads_option
from hopecli.console import err

EXAMPLES = [
    ("every chunk of every clip of a store",
     "hope check demo_out/sample.zarr"),
    ("make a store's damaged clips unfinished and extract them again from their videos",
     "hope check demo_out/sample.zarr --repair"),
    ("every file of a run folder, as JSON",
     "hope check demo_out/hope --json"),
]


# the --help panels, in order; every option belongs to one (tests/test_help.py checks)
PANELS = [
    ("Repair", ["--repair", "--weights", "--which", "--device", "--threads"]),
    ("Output", ["--json", "--help"]),
]


@click.command(cls=HopeCommand, examples=EXAMPLES, see_also=["extract", "train"], option_panels=PANELS)
@click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--repair", is_flag=True,
              help="Store: remove the damaged clips' chunks (so they are never read) and extract them "
                   "again from their videos when these are still where the store was made from.")
@click.option("--weights", type=click.Path(exists=True, path_type=Path), default=None,
              help="With --repair: the encoder weights the store was made with (not needed for the "
                   "embedded encoder); their checksum must match the store's.")
@click.option("--which", type=click.Choice(["encoder", "target_encoder"]), default="target_encoder",
              show_default=True, help="With --repair: which encoder of an official checkpoint --weights holds.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="With --repair: where to encode.")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON on stdout.")
@threads_option
def command(path, repair, weights, which, device, as_json):
    """Verify a feature store or a run folder, and list what is damaged.

    A store (PATH holds zarr.json): its metadata, clip names and task labels, and every
    chunk of every clip marked done: the file is there (Zarr would read a missing one as
    zeros), it decodes, its values are finite. A run (PATH holds config.json): config.json,
    split.json, results.json, metrics.jsonl, checkpoints/latest.json and each checkpoint's
    weights and state.pt, each against its schema. One line per damaged file or clip; the
    exit code is 1 when anything is damaged. Unfinished clips (a writer at work, or killed)
    are listed but are not damage: running the extract again finishes them.
    """
    from hopecli.check import check, repair_store

    report = check(path)
    if repair and report.damaged:
        if report.what != "store":
            raise click.UsageError("--repair repairs stores; a damaged run file is restored by training "
                                   "again or from a copy")
        for finding in report.damaged:
            err.print(f"[red]damaged:[/] {finding.line()}", highlight=False, soft_wrap=True)
        report = repair_store(report, str(weights) if weights else None, which, device)
        for name in report.repaired:
            err.print(f"[green]repaired:[/] {name}", highlight=False, soft_wrap=True)
        if report.not_repaired:
            err.print(f"[yellow]not repaired:[/] {len(report.not_repaired)} clip(s) ({report.not_repaired[0]!r}"
                      f"{' ...' if len(report.not_repaired) > 1 else ''}): their video is gone, the store was "
                      "imported (run `hope import` again), or the encoder is not at hand (--weights); they are "
                      "left out of train and eval until written again", highlight=False, soft_wrap=True)
        after = check(path)
        after.repaired, after.not_repaired = report.repaired, report.not_repaired
        report = after
    else:
        for finding in report.findings:
            label = {"damaged": "[red]damaged:[/]", "unfinished": "[yellow]unfinished:[/]",
                     "leftover": "[yellow]left over:[/]"}[finding.kind]
            err.print(f"{label} {finding.line()}", highlight=False, soft_wrap=True)
    unit = "clip(s)" if report.what == "store" else "file(s)"
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    damaged = [f for f in report.damaged if f.clip not in report.not_repaired]
    if damaged:
        hint = f"; `hope check {path} --repair` extracts them again" if report.what == "store" else ""
        raise click.ClickException(f"{path}: {len(report.damaged)} damaged of {report.checked} {unit} "
                                   f"checked{hint}")
    if report.not_repaired:
        raise click.ClickException(f"{path}: {len(report.not_repaired)} damaged clip(s) not repaired; they are "
                                   "left out of train and eval")
    err.print(f"[green]ok:[/] {path}: {report.checked} {unit} checked, none damaged", highlight=False)
