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


@pytest.mark.parametrize("name", sorted(cli.COMMANDS))
def test_every_command_groups_all_its_options_in_panels(name):
    command = _command(name)
    groups = command.grouped_params(click.Context(command))
    assert len(groups) >= 2 and "Options" not in [title for title, _ in groups]
    text = _help(name)
    assert all(f"╭─ {title} ─" in text for title, _ in groups)


def test_hope_help_imports_no_command_and_no_torch():
    """`hope --help` lists the commands from its docstring; Click's own list would import
    every command module, and with train's the model and torch (5-10 s)."""
    import subprocess
    import sys

    code = ("import sys\nfrom hopecli.cli import hope\ntry:\n    hope(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('hopecli.commands.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "hope train     train a predictor" in out
    assert out.splitlines()[-1] == "[]"


@pytest.mark.parametrize("width", [80, 100])
@pytest.mark.parametrize("name", ["train", "profile"])
def test_help_never_breaks_a_preset_name(name, width):
    import re

    from hopecli.model.presets import PRESETS

    result = CliRunner().invoke(cli.hope, [name, "--help"], env={"TERMINAL_WIDTH": str(width), "COLUMNS": str(width)})
    words = re.findall(r"[A-Za-z0-9_]+", result.output)
    broken = [w for w in words if w.startswith(("hope_", "vit_", "hybrid_")) and w not in PRESETS]
    assert broken == []
    assert "hope_phase5" in words and "hope_tiny" in words


@pytest.mark.parametrize("width", [80, 100])
@pytest.mark.parametrize("name", sorted(cli.COMMANDS))
def test_help_has_no_runs_of_blank_lines(name, width):
    result = CliRunner().invoke(cli.hope, [name, "--help"], env={"TERMINAL_WIDTH": str(width), "COLUMNS": str(width)})
    blank = [not line.strip() for line in result.output.splitlines()]
    assert not any(a and b for a, b in zip(blank, blank[1:]))


@pytest.mark.parametrize("name", ["eval", "adapt", "rollout", "profile"])
def test_compile_help_of_commands_that_do_not_train_speaks_of_no_training_run(name):
    option = next(p for p in _command(name).params if p.name == "compile")
    assert "250" not in option.help and "training steps" not in option.help
    train = next(p for p in _command("train").params if p.name == "compile")
    assert "250 steps or more" in train.help and "with a warning" in train.help


def test_the_parameter_matched_vit_is_named_in_the_preset_help():
    """vit_tiny at --pattern TTTTT has hope_tiny's parameter count (the demo's ViT baseline):
    within 1% at the embedded encoder's width (192) and 64 patches, as the help says."""
    from hopecli.model.presets import preset_config
    from hopecli.train.estimate import count_parameters

    option = next(p for p in _command("train").params if p.name == "preset")
    assert "vit_tiny with --pattern TTTTT is the ViT with hope_tiny's parameter count" in option.help
    shapes = {"input_dim": 192, "action_dim": 2, "state_dim": 2, "patches_per_step": 64}
    hope = count_parameters(preset_config("hope_tiny", **shapes))
    vit = count_parameters(preset_config("vit_tiny", pattern="TTTTT", **shapes))
    assert abs(vit - hope) <= 0.01 * hope
