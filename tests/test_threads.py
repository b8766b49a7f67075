"""The thread policy: --threads / HOPE_THREADS on every computing command, torchrun's one
thread per process, and spinning OpenMP waits set before torch starts."""

from __future__ import annotations

import importlib
import os
import platform
import sys

import click
import pytest
import torch
from click.testing import CliRunner

from hopecli.cli import COMMANDS
from hopecli.commands.options import threads_option
from hopecli.threads import apply_threads, default_threads


@pytest.fixture(autouse=True)
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@threads_option
@click.command()
def probe() -> None:
    click.echo(torch.get_num_threads())


def test_threads_option_and_env_set_torchs_pool(monkeypatch):
    monkeypatch.delenv("HOPE_THREADS", raising=False)
    assert CliRunner().invoke(probe, ["--threads", "1"]).output.strip() == "1"
    assert CliRunner().invoke(probe, [], env={"HOPE_THREADS": "3"}).output.strip() == "3"
    result = CliRunner().invoke(probe, ["--threads", "0"])
    assert result.exit_code == 2 and "0 is not in the range x>=1" in result.output


def test_default_is_every_core_or_one_per_torchrun_process(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert default_threads() == os.cpu_count()
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # what torchrun sets
    assert default_threads() == 1
    assert apply_threads(None) == 1 and torch.get_num_threads() == 1
    with pytest.raises(ValueError, match="threads must be at least 1, got 0"):
        apply_threads(0)


@pytest.mark.parametrize("name", [n for n in COMMANDS if n != "synth"])
def test_every_computing_command_takes_threads(name):
    command = importlib.import_module(f"hopecli.commands.{COMMANDS[name]}").command
    assert any("--threads" in p.opts for p in command.params), name


def test_hope_sets_spinning_waits_before_torch():
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    code = "\n".join([
        "import os, sys",
        "from hopecli.cli import main",
        "try:",
        "    main()",
        "except SystemExit:",
        "    pass",
        "print('torch imported' if 'torch' in sys.modules else 'torch not imported', os.environ['OMP_WAIT_POLICY'])",
    ])
    out = subprocess.run([sys.executable, "-c", code, "--version"], env=env, capture_output=True, text=True,
                         check=True).stdout
    assert out.strip().splitlines()[-1] == "torch not imported ACTIVE"


# tensors of 4 to 28 MiB made and freed, as an eager memory step makes them; the page
# faults of the rounds after the first, per round
_CHURN = """
import os, resource, sys
from hopecli.cli import main
try:
    main()
except SystemExit:
    pass
import torch
def churn():
    live = [torch.ones(n << 18) for n in (20, 4, 28, 12, 20, 8)]
    doubled = [t * 2 for t in live]
    del live, doubled
churn()
start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    churn()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start) // 3)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or not platform.libc_ver()[0] == "glibc",
                    reason="the allocator policy is glibc's")
def test_hope_keeps_freed_tensor_memory_instead_of_faulting_it_in_again():
    import subprocess

    def faults(policy: str) -> int:
        env = {**os.environ, "HOPE_MALLOC": policy}
        out = subprocess.run([sys.executable, "-c", _CHURN, "--version"], env=env, capture_output=True, text=True,
                             check=True).stdout
        return int(out.strip().splitlines()[-1])

    system, tuned = faults("system"), faults("")
    # glibc's own policy maps most of these blocks afresh each round (47,000 faults of 4 KiB
    # pages a round when measured, 171 MiB); kept, at most one block comes back from the kernel
    assert system > 10_000 and tuned < system / 4, (system, tuned)
