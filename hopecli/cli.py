"""The `hope` command group. Each subcommand lives in `hopecli/commands/<name>.py`.

Subcommands are imported on first use so that `hope --help` does not pay for torch.
"""

from __future__ import annotations

import difflib
import errno
import importlib
import sys
import warnings

import click

from hopecli.errors import HopeError, describe_os_error
from hopecli.threads import prepare_environment
from hopecli.train.interrupt import Terminated, exit_on_signals
from hopecli.version import __version__

# name -> module under hopecli.commands exposing `command`
COMMANDS: dict[str, str] = {
    "synth": "synth",
    "extract": "extract",
    "import": "import_",
    "train": "train",
    "eval": "eval",
    "rollout": "rollout",
    "adapt": "adapt",
    "profile": "profile",
    "check": "check",
}


class HopeGroup(click.Group):
    """Lazy subcommands, and library errors turned into one `Error: ...` line.

    The one place where errors become that line: HopeError (the library's own) and the
    OSErrors of a user's machine (full or read-only disk, another user's folder, a symlink
    loop), which name their file. Other errors are bugs and keep their traceback.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        return importlib.import_module(f"hopecli.commands.{COMMANDS[name]}").command

    def format_commands(self, ctx: click.Context, formatter) -> None:
        """Nothing: the docstring's "Pipeline" block lists the commands, and Click's own list
        would import every command module (and torch) to read their first lines."""

    def resolve_command(self, ctx: click.Context, args: list[str]):
        name = args[0]
        if name not in COMMANDS and not name.startswith("-"):
            close = difflib.get_close_matches(name, COMMANDS, n=1, cutoff=0.6)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            ctx.fail(f"No such command {name!r}.{hint} Commands: {', '.join(sorted(COMMANDS))}.")
        return super().resolve_command(ctx, args)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except HopeError as e:
            raise click.ClickException(str(e)) from e
        except OSError as e:
            if e.errno == errno.EPIPE:  # a closed pipe: Click's own handling
                raise
            raise click.ClickException(describe_os_error(e)) from e


@click.group(cls=HopeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hope")
def hope() -> None:
    """Action-conditioned video world models with self-modifying memories.

    Every stage reads and writes plain files (videos, Zarr feature stores, run folders),
    so stages compose in shell pipelines. Progress and tables go to stderr, --json
    results to stdout. `hope COMMAND --help` shows a command's options and examples.

    \b
    Pipeline:
      hope synth     make sample clips with a 2D physics engine
      hope extract   frozen V-JEPA 2 encoder -> Zarr feature store
      hope import    bring pre-encoded .npy clips of the earlier pipeline into a store
      hope train     train a predictor (HOPE, hybrid or ViT baseline)
      hope eval      continual-learning metrics and per-horizon error
      hope adapt     test-time adaptation (memory / LayerNorm) on new clips
      hope rollout   autoregressive prediction and CEM planning
      hope profile   per-component latency, throughput and memory
      hope check     verify a store or a run folder; repair a store's damaged clips
    """


hope.examples = [
    ("encode the shipped sample clips (embedded encoder: random features, for trying things out)",
     "hope extract sample_data --out demo_out/sample.zarr"),
    ("train the CPU-sized HOPE predictor on the three friction regimes, one after another",
     "hope train demo_out/sample.zarr --out demo_out/hope --preset hope_tiny --tasks low,mid,high --steps 100 "
     "--val-clips 3"),
    ("its error matrices and continual-learning metrics",
     "hope eval demo_out/hope"),
]
hope.epilog = "\b\nQuick start (the shipped sample clips, on the CPU, a few minutes):\n" + "\n".join(
    f"  # {what}\n  {line}" for what, line in hope.examples)


def _plain_warning(message, category, filename, lineno, line=None) -> str:
    """hope's own warnings as one "warning: ..." line, like the commands' other warnings;
    other libraries' keep Python's format (their source line says where they come from)."""
    if category.__module__.startswith("hopecli"):
        return f"warning: {message}\n"
    return _python_format(message, category, filename, lineno, line)


_python_format = warnings.formatwarning


def main() -> None:
    exit_on_signals()  # first: a signal during start-up exits 130 / 143 too
    try:
        prepare_environment()  # before torch is imported: OpenMP reads it once
        warnings.formatwarning = _plain_warning
        hope()
    except Terminated as e:
        print(f"stopped by {e}", file=sys.stderr)
        sys.exit(e.exit_code)
