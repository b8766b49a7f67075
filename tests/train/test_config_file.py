"""`hope train --config FILE` and `--print-config`: files, command-line overrides, repeating a run."""

from __future__ import annotations

import json

from click.testing import CliRunner

from hopecli.cli import hope


def _run(*args):
    return CliRunner().invoke(hope, [str(a) for a in args], catch_exceptions=False)


def _printed(*args) -> dict:
    result = _run("train", *args, "--print-config")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_yaml_config_is_resolved_and_flags_override_it(store_path, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(f"""
preset: hope_tiny
store: {store_path}
model:
  pattern: H
  memory: {{update_rule: gd}}
train:
  tasks: [b, a]
  steps: 3
  batch_size: 2
  optim: {{lr: 0.002, schedule: wsd}}
""")
    resolved = _printed("--config", config, "--lr", "0.01", "--memory-heads", "2")
    assert resolved["preset"] == "hope_tiny"
    assert resolved["store"]["path"] == str(store_path.resolve())
    assert resolved["model"]["pattern"] == "H" and resolved["model"]["input_dim"] == 16  # from the store
    assert resolved["model"]["memory"]["update_rule"] == "gd" and resolved["model"]["memory"]["heads"] == 2
    train = resolved["train"]
    assert train["tasks"] == ["b", "a"] and train["steps"] == 3 and train["batch_size"] == 2
    assert train["optim"]["lr"] == 0.01 and train["optim"]["schedule"] == "wsd"
    assert train["optim"]["weight_decay"] == 0.04  # the option's default fills what neither gives


def test_epochs_on_the_command_line_replace_the_files_steps(store_path, tmp_path):
    config = tmp_path / "run.json"
    config.write_text(json.dumps({"preset": "vit_tiny", "train": {"steps": 5}}))
    train = _printed(store_path, "--config", config, "--epochs", "2")["train"]
    assert train["steps"] is None and train["epochs"] == 2.0


def test_preset_on_the_command_line_replaces_the_files_model(store_path, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("preset: hope_tiny\nmodel: {pattern: HHH}\ntrain: {steps: 1}\n")
    assert _printed(store_path, "--config", config, "--preset", "vit_tiny")["model"]["pattern"] == "TT"


def test_a_runs_config_json_repeats_the_run(store_path, tmp_path):
    first = tmp_path / "first"
    result = _run("train", store_path, "--out", first, "--preset", "hope_tiny", "--tasks", "a", "--steps", "1",
                  "--batch-size", "2", "--update-rule", "gd", "--cms-periods", "1,2", "--val-clips", "1")
    assert result.exit_code == 0, result.output
    saved = json.loads((first / "config.json").read_text())
    again = _printed("--config", first / "config.json")
    assert again["model"] == saved["model"] and again["train"] == saved["train"]
    assert again["store"]["path"] == saved["store"]["path"]
    assert saved["preset"] == again["preset"] == "hope_tiny"  # recorded, not the default's name
    # and trains: the second run's config.json equals the first's but for the seed given on the command line
    second = tmp_path / "second"
    result = _run("train", "--config", first / "config.json", "--out", second, "--seed", "1")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("preset hope_tiny: HH predictor")
    repeated = json.loads((second / "config.json").read_text())
    assert repeated["model"] == saved["model"] and repeated["preset"] == "hope_tiny"
    assert repeated["train"] == {**saved["train"], "seed": 1}


def test_printed_config_round_trips(store_path, tmp_path):
    first = _printed(store_path, "--preset", "hybrid_tiny", "--steps", "2,3", "--tasks", "a,b", "--jump-k", "2")
    path = tmp_path / "printed.json"
    path.write_text(json.dumps(first))
    assert _printed("--config", path) == first


def test_config_file_mistakes_are_one_line(store_path, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  stepz: 3\nmodel: {memory: {rule: gd}}\n")
    result = _run("train", store_path, "--out", tmp_path / "r", "--config", bad)
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == f"Error: {bad}: unknown field(s) model.memory.rule, train.stepz"
    bad.write_text("trian: {steps: 3}\n")
    result = _run("train", store_path, "--out", tmp_path / "r", "--config", bad)
    assert result.exit_code == 1
    assert result.output == f"Error: {bad}: unknown section(s) trian; expected preset, store, model, train\n"
    bad.write_text("train: [steps\n")
    result = _run("train", store_path, "--out", tmp_path / "r", "--config", bad)
    assert result.output == f"Error: {bad}: not valid YAML at line 2\n"
    result = _run("train", "--out", tmp_path / "r", "--steps", "1")
    assert result.output.splitlines()[-1] == "Error: Missing argument 'STORE' (or a --config that names a store)."
    result = _run("train", store_path, "--steps", "1")
    assert result.output.splitlines()[-1] == "Error: Missing option '--out'."
    assert not (tmp_path / "r").exists()


def test_the_readme_yaml_example_resolves(tmp_path, monkeypatch):
    import re
    from pathlib import Path

    from .conftest import make_store

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    example = re.search(r"```yaml\n(.*?)```", readme, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    make_store(tmp_path / "demo_out" / "sample.zarr", {"low": 2, "mid": 2, "high": 2})
    (tmp_path / "run.yaml").write_text(example)
    resolved = _printed("--config", "run.yaml")
    assert resolved["preset"] == "hope_tiny" and resolved["model"]["pattern"] == "HHH"
    assert resolved["model"]["memory"]["update_rule"] == "gd"
    assert resolved["train"]["tasks"] == ["low", "mid", "high"] and resolved["train"]["optim"]["lr"] == 0.002


def test_a_config_json_without_a_preset_is_labelled_by_its_file(store_path, tmp_path):
    """config.json of a run from before runs recorded their preset: its model section is
    the whole model, so the announcement names the file, not a preset it may not be."""
    first = tmp_path / "first"
    assert _run("train", store_path, "--out", first, "--preset", "vit_tiny", "--tasks", "a", "--steps", "1",
                "--batch-size", "2", "--val-clips", "1").exit_code == 0
    saved = json.loads((first / "config.json").read_text())
    del saved["preset"]
    old = tmp_path / "old.json"
    old.write_text(json.dumps(saved))
    assert _printed("--config", old)["preset"] is None
    result = _run("train", "--config", old, "--out", tmp_path / "second")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"the model of {old}: TT predictor")
    assert json.loads((tmp_path / "second" / "config.json").read_text())["model"] == saved["model"]
