"""The command group itself: help, version, error rendering, and man pages kept in sync."""

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from hopecli import __version__, cli
from hopecli.errors import InputError
from hopecli.manpages import pages

MAN_DIR = Path(__file__).resolve().parents[1] / "man"


def test_version():
    result = CliRunner().invoke(cli.hope, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"hope, version {__version__}"


def test_every_command_is_listed_in_help():
    result = CliRunner().invoke(cli.hope, ["--help"])
    assert result.exit_code == 0
    for name in cli.COMMANDS:
        assert name in result.output


def test_library_error_becomes_one_line(monkeypatch):
    @click.command()
    def broken():
        raise InputError("clip.mp4: cannot decode frame 3")

    monkeypatch.setitem(cli.COMMANDS, "broken", "broken")
    monkeypatch.setattr(cli.HopeGroup, "get_command", lambda self, ctx, name: broken)
    result = CliRunner().invoke(cli.hope, ["broken"])
    assert result.exit_code == 1
    assert result.output == "Error: clip.mp4: cannot decode frame 3\n"


@pytest.mark.parametrize("file_name", sorted(pages()))
def test_man_page_is_current(file_name):
    shipped = MAN_DIR / file_name
    assert shipped.exists(), f"{shipped} missing: run `make man`"
    assert shipped.read_text() == pages()[file_name], f"{shipped} is stale: run `make man`"


def test_no_stray_man_pages():
    assert sorted(p.name for p in MAN_DIR.glob("hope*.1")) == sorted(pages())
