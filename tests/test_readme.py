"""The README's Python API example runs as written, and the README's tour is the recorded demo.

The tour's blocks of command output are bench/demo_record.log, one recorded run of
`make demo-record`, rendered by bench/tour.py; its prose quotes no measured number that the
record does not hold.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import torch
from click.testing import CliRunner

from hopecli.cli import hope

ROOT = Path(__file__).resolve().parents[1]

torch.set_num_threads(1)


def _tour_module():
    spec = importlib.util.spec_from_file_location("bench_tour", ROOT / "bench" / "tour.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


tour = _tour_module()
README = (ROOT / "README.md").read_text()
RECORD = tour.RECORD.read_text()


def readme_api_example() -> str:
    return tour.api_example(README)


def test_readme_python_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sample_data").symlink_to(ROOT / "sample_data")
    clips = [f"sample_data/{name}.mp4" for name in ("low_000", "low_001", "mid_000", "mid_001")]
    runner = CliRunner()
    result = runner.invoke(hope, ["extract", *clips, "--out", "demo_out/sample.zarr"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(hope, ["train", "demo_out/sample.zarr", "--out", "demo_out/hope_naive/seed0", "--preset",
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


def test_recorded_blocks_are_the_record():
    record = tour.entries(RECORD)
    assert len(tour.blocks(README)) >= 10
    assert tour.differences(README, record) == []


def test_the_check_finds_a_changed_block():
    first, end, select, _ = tour.blocks(README)[0]
    lines = README.splitlines()
    lines[end - 1] = lines[end - 1] + " 0.1"
    changed = "\n".join(lines)
    assert [d for d in tour.differences(changed, tour.entries(RECORD)) if select in d]


def _in_record(number: str) -> bool:
    return re.search(rf"(?<![\d.]){re.escape(number)}(?![\d])", RECORD) is not None


def test_tour_quotes_only_numbers_of_the_record():
    numbers = tour.quoted_numbers(tour.tour(README))
    assert len(numbers) >= 10  # the tour does quote the run
    assert [n for n in numbers if not _in_record(n)] == []
    assert not _in_record("0.123456789")


def test_quoted_numbers_skip_code_and_names():
    text = "H.264 at 0.0654 (+4.7%, v3)\n```\n0.999\n```\n<!-- 0.5 -->-118.0%"
    assert tour.quoted_numbers(text) == ["0.0654", "4.7%", "118.0%"]


def test_pick_marks_gaps():
    lines = [str(i) for i in range(1, 11)]
    assert tour.pick(lines, "1-2,5,9-") == ["1", "2", "...", "5", "...", "9", "10"]
    assert tour.pick(lines, "1-3") == ["1", "2", "3", "..."]
    with pytest.raises(ValueError):
        tour.pick(lines, "4-12")


def test_the_record_is_one_finished_run_of_make_demo():
    head = RECORD.splitlines()[:5]
    assert head[0].startswith("# started ") and head[1].startswith("# commit ")
    assert "HOPE_THREADS=1" in RECORD and "# finished after " in RECORD
    record = tour.entries(RECORD)
    assert record and all(e.rc == 0 for e in record), [e.command for e in record if e.rc != 0]
    make = shutil.which("make")
    if make is None:
        pytest.skip("no make here")
    stamp = ROOT / ".venv" / ".hope-installed"
    dry = subprocess.run([make, "-n", "--no-print-directory", "demo", "DEMO=demo_out", "REC=REC",
                          "-o", str(stamp), "-o", ".venv/.hope-installed"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    commands = [" ".join(line.split()[1:]) for line in dry.replace("\\\n", " ").splitlines()
                if line.startswith("REC ")]
    commands = [re.sub(r"^\S*/hope ", "hope ", c) for c in commands]
    recorded = [e.command for e in record if e.command.startswith("hope ")]
    assert recorded == commands
