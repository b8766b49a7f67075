"""What changes a run's numbers besides its model and training configs, recorded in the run.

A run's losses depend, in their last bits, on whether the Titan memory's training step
runs compiled or eager (`--compile`; under `auto` on the CPU that is decided from the
run's length, compiled.training_run), on torch's CPU thread count (the order of a
parallel reduction), on the torch version and on the device type. config.json records
them in its `numerics` section when a run starts:

    {"compile": "auto", "compile_steps": 300, "compiled_train_step": true,
     "threads": 2, "torch": "2.5.1", "device": "cpu"}

A resumed run replays the compile decision: the recorded mode, told the recorded length
of the whole run (not the steps that remain, which would drop a 300-step run resumed at
step 181 under the 250-step threshold and turn it eager). What it cannot replay (another
thread count, torch version or device) it names in a warning.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from hopecli.model.memory import compiled


def record(device: torch.device, total_steps: int) -> dict:
    """The `numerics` section of a new run of `total_steps` optimizer steps on `device`."""
    with compiled.training_run(total_steps):
        train_step = compiled.wants_compile(device, training=True)
    return {"compile": compiled.compile_mode(), "compile_steps": total_steps, "compiled_train_step": train_step,
            "threads": torch.get_num_threads(), "torch": torch.__version__, "device": device.type}


def differences(saved: dict, now: dict) -> list[str]:
    """What a resumed run cannot replay: "threads 2 -> 1", ... (empty when nothing)."""
    return [f"{key} {saved[key]} -> {now[key]}" for key in ("threads", "torch", "device")
            if key in saved and saved[key] != now[key]]


@contextlib.contextmanager
def replayed(saved: dict | None, total_steps: int) -> Iterator[dict]:
    """Inside, the compile mode and training_run length of the run that `saved` (its
    `numerics` section; None for a run from before it) records; yields the section in force.

    A run without the section is treated as started with the mode in force now and
    `total_steps`, which is what such a run decided when it started.
    """
    saved = saved or {"compile": compiled.compile_mode(), "compile_steps": total_steps}
    before = compiled.compile_mode()
    compiled.set_compile(saved["compile"])
    try:
        with compiled.training_run(saved["compile_steps"]):
            yield saved
    finally:
        compiled.set_compile(before)
