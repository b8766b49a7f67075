"""The compiled Titan chunk step (hopecli/model/memory/compiled.py): it computes what the
eager step computes, outputs and gradients, and a failed compilation falls back to eager
with one warning instead of breaking the run."""

from __future__ import annotations

import functools
import os
import shutil
import warnings

import pytest
import torch

from hopecli.model.memory import SelfModifyingTitan, TitanConfig, chunked, compiled
from hopecli.model.memory.compiled import CompiledStep, set_compile, wants_compile

DIM, LENGTH, BATCH, CHUNK = 24, 15, 2, 5


@pytest.fixture(autouse=True)
def restore():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    set_compile("auto")


def make(kind: str = "mlp", rule: str = "dgd") -> SelfModifyingTitan:
    """A tiny fp32 memory with rates large enough that every update matters."""
    cfg = TitanConfig(dim=DIM, heads=3, hidden_mult=2.0, kind=kind, update_rule=rule,
                      eta_max=0.9, eta_init=0.3, alpha_init=0.9)
    torch.manual_seed(0)
    titan = SelfModifyingTitan(cfg)
    with torch.no_grad():
        for p in (titan.eta_proj, titan.alpha_proj):
            p.normal_(0.0, 0.3)
    return titan


def run(titan: SelfModifyingTitan, mode: str, chunk: int = CHUNK) -> tuple[torch.Tensor, tuple, dict]:
    """Readouts, final state and the gradients of a fixed random loss, under `mode`."""
    set_compile(mode)
    titan.zero_grad()
    torch.manual_seed(1)
    x = torch.randn(BATCH, LENGTH, DIM, requires_grad=True)
    y, state, _ = titan(x, chunk_size=chunk)
    gen = torch.Generator().manual_seed(7)
    loss = (y * torch.randn(y.shape, generator=gen)).sum()
    for w in state.layers:
        loss = loss + (w * torch.randn(w.shape, generator=gen)).sum()
    loss.backward()
    grads = {name: p.grad.clone() for name, p in titan.named_parameters()}
    grads["x"] = x.grad.clone()
    return y.detach(), tuple(w.detach() for w in state.layers), grads


def rel_rms(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).square().mean().sqrt() / b.square().mean().sqrt().clamp_min(1e-30)).item()


def assert_same(got, want, tol: float) -> None:
    (y, layers, grads), (y_ref, layers_ref, grads_ref) = got, want
    assert rel_rms(y, y_ref) < tol
    for w, w_ref in zip(layers, layers_ref):
        assert rel_rms(w, w_ref) < tol
    assert set(grads) == set(grads_ref)
    for name in grads_ref:
        assert rel_rms(grads[name], grads_ref[name]) < 10 * tol, name


def fresh_step(monkeypatch, compiler=None) -> CompiledStep:
    torch._dynamo.reset()
    step = CompiledStep(chunked._step, compiler)
    monkeypatch.setattr(chunked, "COMPILED_STEP", step)
    return step


def test_policy_modes_and_env(monkeypatch):
    monkeypatch.setenv("HOPE_COMPILE", "on")
    assert set_compile(None) == "on" and wants_compile(torch.device("cpu"))
    assert set_compile("auto") == "auto"
    assert wants_compile(torch.device("cuda")) and wants_compile(torch.device("cpu")) == compiled.COMPILE_ON_CPU
    set_compile("off")
    assert not wants_compile(torch.device("cuda"))
    with pytest.raises(ValueError, match="compile mode must be one of .*, got 'fast'"):
        set_compile("fast")


# inductor builds C++ kernels on the CPU; without a compiler `hope` runs eager (the
# fallback tests below), and there is nothing compiled to compare
HAS_CXX = any(shutil.which(c) for c in (os.environ.get("CXX", "g++"), "c++", "clang++"))


@pytest.mark.skipif(not HAS_CXX, reason="no C++ compiler for inductor's CPU kernels")
def test_inductor_step_equals_eager(monkeypatch):
    """The real compiler (C++ kernels on the CPU), one graph for every chunk of the sequence."""
    titan = make()
    want = run(titan, "off")
    step = fresh_step(monkeypatch)
    got = run(titan, "on")
    assert step.compiled is not None and step.failure is None
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1
    assert_same(got, want, 1e-5)


@pytest.mark.parametrize("kind, rule", [("mlp", "gd"), ("linear", "dgd")])
def test_traced_step_equals_eager(monkeypatch, kind, rule):
    """Graph capture and the traced backward (aot_eager: no C++ build, so fast)."""
    titan = make(kind, rule)
    want = run(titan, "off")
    step = fresh_step(monkeypatch, functools.partial(torch.compile, backend="aot_eager"))
    got = run(titan, "on")
    assert step.compiled is not None and step.failure is None
    assert_same(got, want, 1e-6)


def test_traced_step_solving_in_blocks_equals_eager(monkeypatch):
    """One chunk of 15 tokens solved in blocks of at most 4 (chunked.solve_spans), traced."""
    monkeypatch.setattr(chunked, "BLOCK", 4)
    assert len(chunked.solve_spans(LENGTH, 8, 16, chunked.BLOCK)) == 4  # head dim 8, hidden 16
    titan = make()
    want = run(titan, "off", chunk=LENGTH)
    step = fresh_step(monkeypatch, functools.partial(torch.compile, backend="aot_eager"))
    got = run(titan, "on", chunk=LENGTH)
    assert step.compiled is not None and step.failure is None
    assert_same(got, want, 1e-6)


def run_recording_warnings(titan, times: int = 1) -> tuple[list, list[str]]:
    """`times` compiled runs, and the messages of the RuntimeWarnings they gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = [run(titan, "on") for _ in range(times)]
    return results, [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]


def test_failed_compilation_warns_once_and_runs_eager(monkeypatch):
    def broken(fn):
        def call(*args, **kwargs):
            raise RuntimeError("inductor said no\nmore detail")
        return call

    titan = make()
    want = run(titan, "off")
    step = fresh_step(monkeypatch, broken)
    (got, again), messages = run_recording_warnings(titan, 2)
    assert messages == [
        "torch.compile of the Titan memory failed, running it eager from now on "
        "(RuntimeError: inductor said no)"
    ]
    assert step.failure == "RuntimeError: inductor said no"
    assert_same(got, want, 1e-12)
    assert_same(again, want, 1e-12)


class _FailingBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, y):
        return y.clone()

    @staticmethod
    def backward(ctx, grad):
        raise RuntimeError("backward kernel did not build")


def test_failure_in_the_first_backward_falls_back_before_the_run_uses_it(monkeypatch):
    """The backward is compiled lazily: a failure there is caught by the check on copies."""
    def backward_breaks(fn):
        def call(*args, **kwargs):
            y, new, stats, history = fn(*args, **kwargs)
            return _FailingBackward.apply(y), new, stats, history
        return call

    titan = make()
    want = run(titan, "off")
    step = fresh_step(monkeypatch, backward_breaks)
    (got,), messages = run_recording_warnings(titan)
    assert messages == [
        "torch.compile of the Titan memory failed, running it eager from now on "
        "(RuntimeError: backward kernel did not build)"
    ]
    assert_same(got, want, 1e-12)


def test_backward_check_leaves_a_checkpointed_run_unchanged(monkeypatch):
    """The check runs inside checkpoint_chunks' forward; the traced step's gradients still match."""
    titan = make()
    assert titan.cfg.checkpoint_chunks
    want = run(titan, "off")
    step = fresh_step(monkeypatch, functools.partial(torch.compile, backend="aot_eager"))
    got = run(titan, "on")
    assert step.backward_checked and step.failure is None
    assert_same(got, want, 1e-6)


def _saved_bytes(titan: SelfModifyingTitan) -> int:
    """Bytes the autograd graph of one forward keeps for the backward."""
    seen = {}

    def pack(t):
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    x = torch.randn(BATCH, LENGTH, DIM, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        titan(x, chunk_size=CHUNK)
    return sum(seen.values())


def test_a_compiled_recomputed_chunk_keeps_its_solves_and_wide_products_only(monkeypatch):
    """checkpoint_chunks, compiled: the chunk is recomputed inside the graph, keeping what
    chunked._keep_for_backward keeps: more than an eager chunk recomputed whole keeps (its
    inputs), less than a chunk not recomputed; the gradients are the eager ones."""
    monkeypatch.setattr(chunked, "SAVE_INNER", 16)  # the hidden width of these small memories
    titan = make()
    want = run(titan, "off")
    whole = _saved_bytes(titan)
    fresh_step(monkeypatch, functools.partial(torch.compile, backend="aot_eager"))
    set_compile("on")
    selective = _saved_bytes(titan)
    titan.cfg.recompute = "whole"
    assert _saved_bytes(titan) == whole  # recomputed whole on request, compiled too
    titan.cfg.recompute = "selective"
    titan.cfg.checkpoint_chunks = False
    kept = _saved_bytes(titan)
    titan.cfg.checkpoint_chunks = True
    assert whole < selective < kept / 2
    assert_same(run(titan, "on"), want, 1e-6)


def test_compilation_uses_the_user_cache_folder_and_says_compiling(monkeypatch, tmp_path):
    """Inductor's caches go under HOPE_CACHE_DIR (the user's cache folder, a temp dir here),
    and the notice hears when the compilation starts and how long it took."""
    monkeypatch.setenv(compiled.CACHE_ENV, str(tmp_path))
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    heard: list[str] = []
    compiled.set_compile_notice(heard.append)
    try:
        fresh_step(monkeypatch, functools.partial(torch.compile, backend="aot_eager"))
        run(make(), "on")
    finally:
        compiled.set_compile_notice(None)
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "inductor")
    # one start and one end per compilation (here the full chunk, then the shorter last one)
    assert len(heard) >= 2 and len(heard) % 2 == 0
    for start, end in zip(heard[::2], heard[1::2]):
        assert start == f"compiling the Titan memory (torch.compile, cache {tmp_path / 'inductor'}) ..."
        assert end.startswith("compiled in ") and end.endswith(" s")


def test_cache_folder_follows_xdg_then_home(monkeypatch, tmp_path):
    monkeypatch.delenv(compiled.CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert compiled.cache_dir() == tmp_path / "xdg" / "hope"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert compiled.cache_dir() == tmp_path / ".cache" / "hope"
