"""The in-context benchmark: the hidden-dynamics store and its ceilings, against direct
numpy computations of the same quantities, and `hope eval`'s curve on a trained run."""

from __future__ import annotations

import math

import numpy as np
import pytest
from click.testing import CliRunner

from hopecli.cli import hope
from hopecli.data.dynamics import (
    DynamicsConfig, action_map, hidden_numbers, simulate, transition, write_dynamics_store,
)
from hopecli.data.store import FeatureStore
from hopecli.eval.incontext import RIDGE, ceiling_curves

SMALL = DynamicsConfig(dim=8, patches=9, steps=5, hidden=2, noise=0.0, seed=3)


def _ln(z):
    z = z.astype(np.float64)
    return (z - z.mean(-1, keepdims=True)) / np.sqrt(z.var(-1, keepdims=True) + 1e-5)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("dyn") / "icl.zarr"
    write_dynamics_store(path, SMALL, {"linear": 6, "nonlinear": 3, "heldout": 3})
    return FeatureStore.open(path)


def test_the_law_is_a_rotation_per_clip_and_the_steps_stay_layer_normed() -> None:
    a = transition(SMALL, "linear", hidden_numbers(SMALL, "linear", 0))
    assert np.allclose(a @ a.T, np.eye(SMALL.dim), atol=1e-10)
    assert np.allclose(a @ np.ones(SMALL.dim), np.ones(SMALL.dim), atol=1e-10)  # keeps the mean
    other = transition(SMALL, "linear", hidden_numbers(SMALL, "linear", 1))
    assert not np.allclose(a, other)  # clips differ
    z, actions = simulate(SMALL, "linear", 0)
    assert z.shape == (5, 9, 8) and actions.shape == (5, 2)
    want = z[0].astype(np.float64) @ a.T + actions[0].astype(np.float64) @ action_map(SMALL).T
    assert np.allclose(z[1], want, atol=1e-5)  # noise 0: the law itself
    assert np.allclose(z[0].mean(-1), 0, atol=1e-5) and np.allclose(z[0].std(-1), 1, atol=1e-5)


def test_ceilings_equal_a_direct_computation(store) -> None:
    lin = store.indices(["linear"])
    train, val = lin[:4] + store.indices(["nonlinear"]), lin[4:] + store.indices(["heldout"])
    got = ceiling_curves(store, train, val)

    fit = store.read_batch(train)
    zf, af = _ln(fit.features), fit.actions.astype(np.float64)
    rows = [np.concatenate([zf[n, t, p], af[n, t], [1.0]]) for n in range(len(train))
            for t in range(SMALL.steps - 1) for p in range(SMALL.patches)]
    outs = [zf[n, t + 1, p] for n in range(len(train)) for t in range(SMALL.steps - 1) for p in range(SMALL.patches)]
    prior = np.linalg.lstsq(np.array(rows), np.array(outs), rcond=None)[0].T  # [D, D + A + 1]

    data = store.read_batch(val)
    z, acts = _ln(data.features), data.actions.astype(np.float64)
    for k, index in enumerate(val):
        x = np.concatenate([z[k], np.broadcast_to(acts[k][:, None], (5, 9, 2)), np.ones((5, 9, 1))], -1)
        for t in range(SMALL.steps - 1):
            target = z[k, t + 1]
            assert got["copy"][k, t] == pytest.approx(np.abs(z[k, t] - target).mean(), rel=1e-9)
            assert got["no_context"][k, t] == pytest.approx(np.abs(x[t] @ prior.T - target).mean(), rel=1e-9)
            # ridge toward the prior as one stacked least-squares problem
            xs = np.concatenate([x[:t].reshape(-1, x.shape[-1]), math.sqrt(RIDGE) * np.eye(x.shape[-1])])
            ys = np.concatenate([z[k, 1 : t + 1].reshape(-1, SMALL.dim), math.sqrt(RIDGE) * prior.T])
            w = np.linalg.lstsq(xs, ys, rcond=None)[0].T
            assert got["in_context_ls"][k, t] == pytest.approx(np.abs(x[t] @ w.T - target).mean(), rel=1e-6)
    # noise 0: the oracle is exact up to the store's float16
    assert got["oracle"].max() < 5e-3
    assert got["in_context_ls"][:, -1].mean() < 0.5 * got["no_context"][:, -1].mean()


def test_synth_dynamics_writes_the_benchmark_store(tmp_path) -> None:
    out = tmp_path / "bench.zarr"
    result = CliRunner().invoke(hope, ["synth", "--dynamics", "--clips", "8", "--frames", "8", "--out", str(out)])
    assert result.exit_code == 0, result.output
    store = FeatureStore.open(out)
    assert store.task_names() == ["linear", "nonlinear", "heldout"]
    assert [len(store.indices([t])) for t in store.task_names()] == [8, 8, 8]
    assert store.group["features"].shape[1:] == (4, 36, 16)
    assert store.attrs["dynamics"]["steps"] == 4
    again = CliRunner().invoke(hope, ["synth", "--dynamics", "--study", "--out", str(out)])
    assert again.exit_code != 0 and "--dynamics writes its own three families" in again.output


def test_eval_prints_the_in_context_curve_with_frozen_memories(tmp_path) -> None:
    """A (barely) trained HOPE run on a hidden-dynamics store: eval's table, JSON and figure
    carry every ceiling and the run writing and frozen, for the held-out family too."""
    import json

    import torch

    torch.set_num_threads(1)
    store = tmp_path / "icl.zarr"
    write_dynamics_store(store, SMALL, {"linear": 6, "nonlinear": 6, "heldout": 3})
    run = tmp_path / "run"
    trained = CliRunner().invoke(hope, [
        "train", str(store), "--out", str(run), "--preset", "hope_tiny", "--strategy", "joint",
        "--tasks", "linear,nonlinear", "--steps", "1", "--batch-size", "4", "--val-clips", "2",
        "--rollout-weight", "0", "--jump-weight", "0", "--horizon", "1", "--threads", "1"])
    assert trained.exit_code == 0, trained.output
    result = CliRunner().invoke(hope, ["eval", str(run), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)["runs"][0]["in_context"]
    assert report["steps"] == [1, 2, 3, 4]
    assert set(report["families"]) == {"linear", "nonlinear", "heldout"}
    held = report["families"]["heldout"]
    assert held["clips"] == 3 and not held["trained"]
    assert set(held["curves"]) == {"copy", "no_context", "in_context_ls", "oracle", "model", "frozen"}
    assert held["curves"]["model"] != held["curves"]["frozen"]  # the memories write at evaluation
    assert (run / "in_context.png").stat().st_size > 0
    for words in ("in-context curve", "in-context LS", "oracle", "run, frozen"):
        assert words in result.stderr
