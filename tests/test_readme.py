"""The README's Python API example runs as written, on a run trained here."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import torch
from click.testing import CliRunner

from hopecli.cli import hope

ROOT = Path(__file__).resolve().parents[1]

torch.set_num_threads(1)


def readme_api_example() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Python API\n", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_python_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sample_data").symlink_to(ROOT / "sample_data")
    clips = [f"sample_data/{name}.mp4" for name in ("low_000", "low_001", "mid_000", "mid_001")]
    runner = CliRunner()
    result = runner.invoke(hope, ["extract", *clips, "--out", "demo_out/sample.zarr"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(hope, ["train", "demo_out/sample.zarr", "--out", "demo_out/hope_naive", "--preset",
                                  "hope_tiny", "--tasks", "low,mid", "--steps", "2", "--batch-size", "2",
                                  "--val-fraction", "0.5"])
    assert result.exit_code == 0, result.output

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(readme_api_example(), "README.md", "exec"), {})
    lines = printed.getvalue().splitlines()
    assert lines[0] == "HH 2"
    assert lines[1] == "new_friction.mp4#0 (8, 64, 192) (8, 2)"
    assert len(eval(lines[2])) == 6  # errors 1..6 steps ahead from context 2 of 8 steps
    assert lines[3] == "(3, 64, 192)"
    assert lines[4].startswith("Mean next-step L1 ") and "frozen; memory " in lines[4]
    assert 0 < float(lines[5]) < 10
