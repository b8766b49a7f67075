"""What a newcomer reads first: grouped help, real examples, man pages, "did you mean"."""

from __future__ import annotations

import shlex

import click
import pytest
from click.testing import CliRunner

from hopecli import cli
from hopecli.commands.help import HopeCommand
from hopecli.manpages import pages

WIDE = {"TERMINAL_WIDTH": "240", "COLUMNS": "240"}
TRAIN_PANELS = ["Continual learning", "Data", "Model", "Optimisation", "Output"]


def _command(name: str) -> click.Command:
    return cli.hope.get_command(click.Context(cli.hope), name)


def _help(name: str) -> str:
    result = CliRunner().invoke(cli.hope, [name, "--help"], env=WIDE)
    assert result.exit_code == 0, result.output
    return result.output


def test_train_help_shows_the_option_panels_in_order():
    text = _help("train")
    starts = [text.index(f"╭─ {title} ─") for title in TRAIN_PANELS]
    assert starts == sorted(starts)
    assert "╭─ Options ─" not in text  # nothing left over outside the five panels
    model = text[starts[2]:starts[3]]
    assert "--update-rule" in model and "--preset" in model and "--lr " not in model
    assert "--lr " in text[starts[3]:starts[4]]


def test_every_train_option_is_in_exactly_one_panel():
    command = _command("train")
    groups = command.grouped_params(click.Context(command))
    assert [title for title, _ in groups] == TRAIN_PANELS
    names = [p.name for _, params in groups for p in params]
    options = [p.name for p in command.get_params(click.Context(command)) if isinstance(p, click.Option)]
    assert sorted(names) == sorted(options)


@pytest.mark.parametrize("name", sorted(cli.COMMANDS))
def test_every_command_has_real_examples(name):
    command = _command(name)
    assert isinstance(command, HopeCommand)
    assert 2 <= len(command.examples) <= 3
    flags = {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
    for what, line in command.examples:
        assert what and not what.endswith(".")
        words = shlex.split(line)
        first = words.index("hope")
        assert words[first + 1] == name, line
        for word in words[first + 2:]:
            if word in ("|", "&&", ">"):
                break
            if word.startswith("--"):
                assert word in flags, f"{line}: {word} is not an option of hope {name}"
    text = _help(name)
    assert "╭─ Examples ─" in text
    flat = " ".join(text.replace("│", " ").split())
    for _, line in command.examples:
        assert " ".join(line.split()) in flat
    assert "See also: hope " in text


def test_man_pages_have_option_groups_examples_and_see_also():
    man = pages()
    train = man["hope-train.1"]
    assert [line[4:] for line in train.splitlines() if line.startswith(".SS ")] == TRAIN_PANELS
    for file_name, text in man.items():
        sections = [line[4:] for line in text.splitlines() if line.startswith(".SH ")]
        assert sections[-2:] == ["EXAMPLES", "SEE ALSO"], (file_name, sections)
    # the pipeline list of hope.1 stays a verbatim block, not one run-together paragraph
    assert ".nf\nPipeline:\n  hope synth     make sample clips" in man["hope.1"]
    assert "\\fBhope-train\\fR(1)" in man["hope-eval.1"].split(".SH SEE ALSO")[1]


def test_a_misspelt_command_gets_a_suggestion():
    result = CliRunner().invoke(cli.hope, ["trian"])
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == (
        "Error: No such command 'trian'. Did you mean 'train'? "
        "Commands: adapt, check, eval, extract, import, profile, rollout, synth, train.")


def test_an_unknown_command_lists_the_commands():
    result = CliRunner().invoke(cli.hope, ["frobnicate"])
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == (
        "Error: No such command 'frobnicate'. "
        "Commands: adapt, check, eval, extract, import, profile, rollout, synth, train.")
