"""The chunked Titan memory of an earlier git revision, to time before / after side by side.

    load_chunked("598eb85")  ->  that revision's titan_chunked, importable beside today's
    load_module("598eb85")   ->  that revision's whole chunked module

The old module's source is read with `git show` and imported under a private name; it
must only use helpers (activation, config, diagnostics, state) that still exist.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import inspect
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from hopecli.model.memory import titan

ROOT = Path(__file__).resolve().parent.parent
PATH = "hopecli/model/memory/chunked.py"


def load_module(rev: str):
    """hopecli/model/memory/chunked.py as it was at `rev`, imported under a private name;
    its titan_chunked_compat takes today's config."""
    source = subprocess.run(
        ["git", "show", f"{rev}:{PATH}"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    folder = Path(tempfile.mkdtemp(prefix="hope-before-"))
    path = folder / f"chunked_{rev}.py"
    path.write_text(source)
    name = f"hopecli.model.memory._chunked_{rev}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    old = module.titan_chunked
    takes = inspect.signature(old).parameters

    def titan_chunked(x, state, gates, cfg, **kwargs):
        # older revisions read eta_max / eta_init as plain numbers
        cfg = dataclasses.replace(cfg, eta_max=cfg.eta_bound, eta_init=cfg.eta_start)
        keep = kwargs.pop("keep_state", True) if "keep_state" not in takes else True
        y, new, diag = old(x, state, gates, cfg, **kwargs)
        return (y, new, diag) if keep else (y, None, {})  # a revision before keep_state made every write

    module.titan_chunked_compat = titan_chunked
    return module


def load_chunked(rev: str) -> Callable:
    """titan_chunked as it was at `rev`."""
    return load_module(rev).titan_chunked_compat


@contextlib.contextmanager
def chunked_impl(fn: Callable) -> Iterator[None]:
    """Every SelfModifyingTitan in this process runs `fn` as its chunked path meanwhile."""
    saved = titan.IMPLS["chunked"]
    titan.IMPLS["chunked"] = fn
    try:
        yield
    finally:
        titan.IMPLS["chunked"] = saved


def under(fn: Callable, closure: Callable[[], object]) -> Callable[[], object]:
    """closure, run with `fn` as the chunked path."""

    def run():
        with chunked_impl(fn):
            return closure()

    return run
