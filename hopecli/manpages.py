"""Man pages generated from the Click definitions: `python -m hopecli.manpages man/`.

One page for `hope` and one per subcommand (`hope-extract.1`, ...): NAME, SYNOPSIS,
DESCRIPTION, OPTIONS (one subsection per help panel), EXAMPLES and SEE ALSO, all read from
the commands (HopeCommand's examples, see_also and option_panels). The output depends only
on the command definitions and the version, so a test can regenerate and compare.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

import click

from hopecli.cli import hope
from hopecli.commands.help import HopeCommand
from hopecli.version import __version__


def _escape(text: str) -> str:
    lines = []
    for line in text.replace("\\", "\\\\").splitlines():
        # a line starting with . or ' would be read as a roff request
        lines.append("\\&" + line if line.startswith((".", "'")) else line)
    return "\n".join(lines)


def _paragraphs(text: str) -> str:
    """Click help text to roff: blank lines separate paragraphs, \\b blocks stay verbatim."""
    out: list[str] = []
    for block in click.unstyle(inspect.cleandoc(text or "")).split("\n\n"):
        if block.startswith("\b"):
            out += [".nf", _escape(block[1:].strip("\n")), ".fi"]
        else:
            out += [".PP", _escape(" ".join(line.strip() for line in block.splitlines()))]
    return "\n".join(out)


def render(command: click.Command, name: str) -> str:
    """The roff source of one page."""
    ctx = click.Context(command, info_name=name)
    usage = " ".join(command.collect_usage_pieces(ctx))
    short = command.get_short_help_str(limit=200) if command.help else ""
    page = [
        f'.TH "{name.upper().replace(" ", "-")}" "1" "" "hope {__version__}" "hope manual"',
        ".SH NAME",
        f"{name.replace(' ', '-')} \\- {_escape(short)}",
        ".SH SYNOPSIS",
        f".B {name}\n{_escape(usage)}",
        ".SH DESCRIPTION",
        _paragraphs(command.help or ""),
    ]
    groups = (command.grouped_params(ctx) if isinstance(command, HopeCommand)
              else [(None, command.get_params(ctx))])
    if any(p.get_help_record(ctx) for _, params in groups for p in params):
        page.append(".SH OPTIONS")
    for title, params in groups:
        records = [r for r in (p.get_help_record(ctx) for p in params) if r]
        if records and title and len(groups) > 1:
            page.append(f".SS {_escape(title)}")
        for flags, help_text in records:
            page += [".TP", f"\\fB{_escape(flags)}\\fR", _escape(help_text)]
    if isinstance(command, click.Group):
        page.append(".SH COMMANDS")
        for sub in command.list_commands(ctx):
            cmd = command.get_command(ctx, sub)
            page += [".TP", f"\\fB{sub}\\fR", _escape(cmd.get_short_help_str(limit=200))]
        see_also = [f"hope-{sub}" for sub in command.list_commands(ctx)]
    else:
        see_also = ["hope", *(f"hope-{sub}" for sub in getattr(command, "see_also", []))]
    examples = getattr(command, "examples", [])
    if examples:
        page.append(".SH EXAMPLES")
        for what, line in examples:
            page += [".PP", _escape(what[:1].upper() + what[1:] + ":"), ".RS 4", ".nf", _escape(line), ".fi", ".RE"]
    page += [".SH SEE ALSO", ", ".join(f"\\fB{name}\\fR(1)" for name in see_also)]
    return "\n".join(page) + "\n"


def pages() -> dict[str, str]:
    """File name -> roff source for `hope` and every subcommand."""
    result = {"hope.1": render(hope, "hope")}
    ctx = click.Context(hope, info_name="hope")
    for sub in hope.list_commands(ctx):
        result[f"hope-{sub}.1"] = render(hope.get_command(ctx, sub), f"hope {sub}")
    return result


def write(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("hope*.1"):
        stale.unlink()
    written = []
    for file_name, text in pages().items():
        path = directory / file_name
        path.write_text(text)
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write(Path(sys.argv[1] if len(sys.argv) > 1 else "man")):
        print(path)
