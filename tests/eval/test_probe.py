"""The linear probe: it recovers a known linear map, it reads nothing from shuffled
features, and `hope eval` scores runs through it on a store with object states."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from hopecli.cli import hope
from hopecli.data.synth import synth_clips
from hopecli.eval.probe import fit_probe, position_error, ridge

torch.set_num_threads(1)


def _linear_data(n, P=4, D=8, K=3, noise=0.01, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, P, D, generator=g, dtype=torch.float64)
    w = torch.randn(P * D, K, generator=g, dtype=torch.float64)
    y = z.flatten(1) @ w + torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    return z, y + noise * torch.randn(y.shape, generator=g, dtype=torch.float64)


def test_probe_recovers_a_known_linear_map():
    z, y = _linear_data(600)
    groups = np.arange(600) // 8  # "clips" of 8 steps
    probe = fit_probe(z[:500], y[:500], groups[:500])
    pred = probe(z[500:])
    assert probe.lam <= 1e-2  # cross-validation picks a weak penalty for clean data
    rel = (pred - y[500:]).norm() / (y[500:] - y[500:].mean(0)).norm()
    assert rel < 0.02
    # an error on shuffled features (the same rows, paired with other targets) is far worse
    shuffled = probe(z[500:][torch.randperm(100, generator=torch.Generator().manual_seed(1))])
    assert position_error(pred, y[500:]).mean() * 10 < position_error(shuffled, y[500:]).mean()


def test_probe_reads_where_the_object_is_not_just_what_is_there():
    """A blob at a random patch of a 4 x 4 grid; the target is its (row, column). True
    features put the probe close; the same patches in shuffled order do not."""
    g = torch.Generator().manual_seed(0)
    n, side, D = 400, 4, 6
    where = torch.randint(0, side * side, (n,), generator=g)
    z = 0.01 * torch.randn(n, side * side, D, generator=g)
    z[torch.arange(n), where] += torch.tensor([1.0, -1.0, 0.5, 0.0, 0.3, 0.2])
    y = torch.stack([where // side, where % side], 1).float() / (side - 1)
    probe = fit_probe(z[:300], y[:300])
    true_error = position_error(probe(z[300:]), y[300:]).mean()
    patches = torch.randperm(side * side, generator=g)
    shuffled_error = position_error(probe(z[300:, patches]), y[300:]).mean()
    assert true_error < 0.05 < shuffled_error


def test_ridge_primal_and_dual_agree():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(20, 50, generator=g, dtype=torch.float64), torch.randn(20, 2, generator=g, dtype=torch.float64)
    dual = ridge(x, y, 0.3)
    primal = torch.linalg.solve(x.T @ x + 0.3 * torch.eye(50, dtype=x.dtype), x.T @ y)
    torch.testing.assert_close(dual, primal)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("probe")
    synth_clips(root / "clips", [("low", 0.1), ("high", 0.8)], clips=3, frames=8, resolution=32)
    runner = CliRunner()
    result = runner.invoke(hope, ["extract", str(root / "clips"), "--out", str(root / "s.zarr"), "--frames", "8"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(hope, ["train", str(root / "s.zarr"), "--out", str(root / "run"), "--preset", "vit_tiny",
                                  "--steps", "2", "--batch-size", "2", "--val-fraction", "0.3"])
    assert result.exit_code == 0, result.output
    return root


def test_eval_scores_runs_through_the_probe(trained):
    result = CliRunner().invoke(hope, ["eval", str(trained / "run"), "--json"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    probe = json.loads(result.stdout)["runs"][0]["probe"]
    assert probe["steps"] == 3 and set(probe["tasks"]) == {"low", "high"}
    for name in ("true_features", "copy_last", "model"):
        assert len(probe["mean"][name]) == 3 and all(np.isfinite(probe["mean"][name]))
    assert "probe: object position error" in result.stderr and "true (probe ceiling)" in result.stderr
    off = CliRunner().invoke(hope, ["eval", str(trained / "run"), "--no-probe", "--json"])
    assert off.exit_code == 0 and json.loads(off.stdout)["runs"][0]["probe"] is None


def test_probe_on_a_store_without_object_states_is_refused(tmp_path):
    from tests.train.conftest import make_store

    store = make_store(tmp_path / "s.zarr", {"a": 3, "b": 3})
    runner = CliRunner()
    result = runner.invoke(hope, ["train", str(store), "--out", str(tmp_path / "run"), "--preset", "vit_tiny",
                                  "--steps", "1", "--batch-size", "2"])
    assert result.exit_code == 0, result.output
    quiet = runner.invoke(hope, ["eval", str(tmp_path / "run"), "--json"])
    assert quiet.exit_code == 0 and json.loads(quiet.stdout)["runs"][0]["probe"] is None
    asked = runner.invoke(hope, ["eval", str(tmp_path / "run"), "--probe"])
    assert asked.exit_code == 1
    assert "--probe needs object states, and the run's store has none" in asked.output
