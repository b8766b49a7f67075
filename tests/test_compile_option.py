"""--compile / HOPE_COMPILE on every command that runs a model sets the Titan memory's
compile policy (hopecli/model/memory/compiled.py)."""

from __future__ import annotations

import importlib

import click
import pytest
from click.testing import CliRunner

from hopecli.commands.options import compile_option
from hopecli.model.memory.compiled import compile_mode, set_compile

MODEL_COMMANDS = ["train", "adapt", "rollout", "eval", "profile"]


@pytest.fixture(autouse=True)
def restore_mode():
    yield
    set_compile("auto")


@compile_option
@click.command()
def probe() -> None:
    click.echo(compile_mode())


def test_compile_option_and_env_set_the_policy(monkeypatch):
    monkeypatch.delenv("HOPE_COMPILE", raising=False)
    assert CliRunner().invoke(probe, ["--compile", "on"]).output.strip() == "on"
    assert CliRunner().invoke(probe, []).output.strip() == "auto"
    assert CliRunner().invoke(probe, [], env={"HOPE_COMPILE": "off"}).output.strip() == "off"
    result = CliRunner().invoke(probe, ["--compile", "yes"])
    assert result.exit_code == 2 and "'yes' is not one of 'auto', 'on', 'off'" in result.output


@pytest.mark.parametrize("name", MODEL_COMMANDS)
def test_every_model_command_takes_compile(name):
    command = importlib.import_module(f"hopecli.commands.{name}").command
    assert any("--compile" in p.opts for p in command.params), name


def test_the_help_states_the_cpu_training_threshold():
    from hopecli.model.memory.compiled import CPU_TRAIN_STEPS

    command = importlib.import_module("hopecli.commands.train").command
    (option,) = [p for p in command.params if "--compile" in p.opts]
    assert f"a run of {CPU_TRAIN_STEPS} steps or more" in option.help
