"""Click options shared by the commands that read a trained run and new clips."""

from __future__ import annotations

from pathlib import Path

import click


def run_source_options(command):
    """--run, then --store/--index and --weights/--which: where a clip's features come from.

    The command adds its own --clip (one clip for rollout, several for adapt) beside these.
    """
    for option in reversed([
        click.option("--run", "run_dir", type=click.Path(path_type=Path), required=True,
                     help="Run folder written by `hope train`."),
        click.option("--store", type=click.Path(path_type=Path), default=None,
                     help="Read the clip from a feature store made with the run's encoder (with --index)."),
        click.option("--index", type=click.IntRange(min=0), default=None, help="Clip index in --store."),
        click.option("--weights", type=click.Path(path_type=Path), default=None,
                     help="Encoder weights for videos when the run's store was not made with the "
                          "embedded default encoder; their checksum must match the store's."),
        click.option("--which", type=click.Choice(["encoder", "target_encoder"]), default="target_encoder",
                     show_default=True, help="Which encoder of an official checkpoint --weights holds."),
    ]):
        command = option(command)
    return command
