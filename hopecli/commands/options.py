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


def _apply_threads(ctx: click.Context, param: click.Parameter, value: int | None) -> None:
    from hopecli.threads import apply_threads

    apply_threads(value)


def threads_option(command):
    """--threads N (or HOPE_THREADS): torch's CPU threads for this command (hopecli/threads.py)."""
    return click.option(
        "--threads", type=click.IntRange(min=1), default=None, envvar="HOPE_THREADS", expose_value=False,
        callback=_apply_threads,
        help="CPU threads for torch (env HOPE_THREADS). Default: every core (1 per process under "
             "torchrun); use 1 on a machine shared with other jobs.",
    )(command)


def _apply_compile(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    from hopecli.console import err
    from hopecli.model.memory.compiled import set_compile, set_compile_notice

    set_compile(value)
    set_compile_notice(lambda message: err.print(message, style="dim", highlight=False, soft_wrap=True))


COMPILE_HELP = ("torch.compile the Titan memory (env HOPE_COMPILE). auto (default): on a GPU; on the CPU "
                "eager, as compiling takes longer than it saves outside a long training run; on: also on "
                "the CPU; a failed compilation falls back to eager with one warning.")
TRAIN_COMPILE_HELP = ("torch.compile the Titan memory (env HOPE_COMPILE). auto (default): on a GPU, and on the "
                      "CPU for the training steps of a run of 250 steps or more (shorter runs do not repay the "
                      "compilation; on compiles them anyway, with a warning); a failed compilation falls back "
                      "to eager with one warning.")


def compile_option(command, help: str = COMPILE_HELP):
    """--compile auto|on|off (or HOPE_COMPILE): torch.compile of the Titan memory (compiled.py)."""
    return click.option(
        "--compile", type=click.Choice(["auto", "on", "off"]), default=None, envvar="HOPE_COMPILE",
        expose_value=False, callback=_apply_compile, help=help,
    )(command)


def train_compile_option(command):
    """--compile as `hope train` explains it: auto's rule for training runs on the CPU."""
    return compile_option(command, TRAIN_COMPILE_HELP)
