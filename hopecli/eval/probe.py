"""A physical probe: ridge regression from a step's features to the simulated object's state.

Feature errors (L1 on layer-normed features) say nothing in physical units. Where the store
carries the object's state per step (`object_states`, from `hope synth` sidecars), a
linear probe fitted on the true features of the training clips turns any features, true or
predicted, into an object state, so a prediction can be scored as "object position off by
0.04 table widths at horizon 3". The probe is scored three ways per horizon: on the true
features of the target step (its ceiling: what the features hold at all), on each model's
predicted features, and on the copy-last baseline's (step 0 for every horizon).

Which features the probe reads: the step's patch features flattened, [P, D] -> P * D
inputs. The object's position is *where* in the patch grid the features differ, so
mean-pooling over patches throws away the very thing to read (measured on the sample
data, random encoder, validation clips: mean-pooled features give 0.148 table widths of
position error, exactly the error of always answering the mean position; the flattened
features 0.097; keeping only 2 to 32 principal directions per patch 0.125 to 0.143). Only
where P * D exceeds MAX_INPUTS (ViT-L at 256 px: 262,144) is each patch's D reduced to
its top principal directions (one PCA over all training patches; 64 per patch for ViT-L)
so that the fit stays small. Ridge is solved in whichever of the primal or dual form is
smaller; its strength is chosen from a grid by k-fold cross-validation over whole clips
(steps of one clip are nearly alike, so leaving out single steps would pick too weak a
penalty). Everything is plain torch.linalg in float64.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from hopecli.errors import HopeError

LAMBDAS = tuple(10.0 ** k for k in range(-5, 4))  # relative to the inputs' mean squared norm per dim
MAX_INPUTS = 16384  # P * components at most
FOLDS = 5


@dataclass
class LinearProbe:
    """features [..., P, D] (layer-normed) -> object state [..., K]."""

    patch_mean: Tensor  # [D]
    basis: Tensor  # [D, r] per-patch principal directions
    x_mean: Tensor  # [P * r]
    y_mean: Tensor  # [K]
    weight: Tensor  # [P * r, K]
    lam: float  # the ridge strength cross-validation chose (relative to the inputs' scale)

    def inputs(self, z: Tensor) -> Tensor:
        """[..., P, D] -> the probe's inputs [..., P * r] (centred)."""
        reduced = (z.double() - self.patch_mean) @ self.basis  # [..., P, r]
        return reduced.flatten(-2) - self.x_mean

    def __call__(self, z: Tensor) -> Tensor:
        return self.inputs(z) @ self.weight + self.y_mean


def ridge(x: Tensor, y: Tensor, lam: float) -> Tensor:
    """argmin_W ||x W - y||^2 + lam ||W||^2 for centred x [n, d], y [n, K] -> W [d, K].

    Solved in the primal (d x d) or the dual (n x n: W = x^T (x x^T + lam I)^-1 y) form,
    whichever is smaller; both give the same W.
    """
    n, d = x.shape
    if d <= n:
        return torch.linalg.solve(x.T @ x + lam * torch.eye(d, dtype=x.dtype), x.T @ y)
    return x.T @ torch.linalg.solve(x @ x.T + lam * torch.eye(n, dtype=x.dtype), y)


def _folds(groups: np.ndarray, k: int) -> list[np.ndarray]:
    """Boolean test masks of k folds that keep every group (clip) whole."""
    names = np.unique(groups)
    k = min(k, len(names))
    order = np.random.default_rng(0).permutation(len(names))
    return [np.isin(groups, names[order[f::k]]) for f in range(k)]


def fit_probe(z: Tensor, y: Tensor, groups: Sequence[int] | None = None, *, components: int | None = None,
              lambdas: Sequence[float] = LAMBDAS, folds: int = FOLDS) -> LinearProbe:
    """Fit the probe on layer-normed features z [n, P, D] and targets y [n, K].

    components: principal directions kept per patch (default: all D, or as many as
    MAX_INPUTS allows). groups [n] names the clip of every row (default: every row its own); the ridge
    strength is the one of `lambdas` with the lowest mean squared error over `folds`
    folds of whole clips (the largest on ties, the safer one).
    """
    z, y = z.double(), y.double()
    n, P, D = z.shape
    if y.shape[0] != n or n < 2:
        raise ValueError(f"need matching rows of features and targets (at least 2), got {n} and {y.shape[0]}")
    patches = z.reshape(-1, D)
    patch_mean = patches.mean(0)
    _, _, vt = torch.linalg.svd(patches - patch_mean, full_matrices=False)
    if components is None:
        components = max(1, MAX_INPUTS // P)
    basis = vt[: min(components, D)].T  # [D, r]
    x = ((z - patch_mean) @ basis).flatten(1)  # [n, P * r]
    groups = np.arange(n) if groups is None else np.asarray(groups)
    lam = lambdas[0]
    if len(lambdas) > 1:
        losses = np.zeros(len(lambdas))
        for test in _folds(groups, folds):
            test_t = torch.from_numpy(test)
            xt, yt = x[~test_t], y[~test_t]
            xm, ym = xt.mean(0), yt.mean(0)
            scale = float(((xt - xm) ** 2).sum() / xt.shape[1])
            for i, candidate in enumerate(lambdas):
                w = ridge(xt - xm, yt - ym, candidate * scale)
                losses[i] += float((((x[test_t] - xm) @ w + ym - y[test_t]) ** 2).mean())
        lam = lambdas[int(np.flatnonzero(losses <= losses.min() * (1 + 1e-9))[-1])]
    x_mean, y_mean = x.mean(0), y.mean(0)
    scale = float(((x - x_mean) ** 2).sum() / x.shape[1])
    return LinearProbe(patch_mean, basis, x_mean, y_mean, ridge(x - x_mean, y - y_mean, lam * scale), float(lam))


def position_error(pred: Tensor, truth: Tensor) -> Tensor:
    """Euclidean distance of the first two dims (the object's x, y in `hope synth`): [..., K] -> [...]."""
    return (pred[..., :2].double() - truth[..., :2].double()).norm(dim=-1)


# -- scoring runs ------------------------------------------------------------------------

SCORED = ("true_features", "copy_last", "model")
UNITS = "sidecar units; hope synth: table widths"


def _read(store, indices: Sequence[int], batch_size: int = 32):
    """Layer-normed features [n, T, P, D], actions, states and object states [n, T, K]."""
    from hopecli.train.data import read_batch
    from hopecli.train.losses import normalize_features

    parts = [read_batch(store, indices[k : k + batch_size]) for k in range(0, len(indices), batch_size)]
    z = normalize_features(torch.cat([p.features for p in parts]))
    actions = torch.cat([p.actions for p in parts])
    states = torch.cat([p.states for p in parts])
    return z, actions, states, torch.from_numpy(store.read_object_states(list(indices)))


_PROBES: dict[tuple, tuple[LinearProbe, int]] = {}


def store_probe(store, train: Sequence[int]) -> tuple[LinearProbe, int]:
    """The probe fitted on every step (with a finite object state) of the clips `train`,
    and the number of rows it was fitted on; cached per store and clip set."""
    key = (str(store.path), tuple(train))
    if key not in _PROBES:
        z, _, _, y = _read(store, list(train))
        groups = np.repeat(np.arange(len(train)), z.shape[1])
        z, y = z.flatten(0, 1), y.flatten(0, 1)
        keep = torch.isfinite(y).all(-1)
        if int(keep.sum()) < 2:
            raise HopeError(f"{store.path}: fewer than 2 training steps with object states to fit a probe on")
        _PROBES[key] = (fit_probe(z[keep], y[keep], groups[keep.numpy()]), int(keep.sum()))
    return _PROBES[key]


@torch.no_grad()
def probe_report(run_dir, steps: int, store_path=None, device: str = "auto") -> dict | None:
    """Probe errors (object position) per horizon 1..steps and per partition of a run's
    validation clips: on the true features of the target step (the probe's ceiling), on
    the copy-last baseline (step 0) and on the model's autoregressive rollout from step 0
    (the `hope eval` horizons). None when the run's store has no object states."""
    from hopecli.runs.checkpoint import load_model
    from hopecli.runs.split import run_split
    from hopecli.train.distributed import resolve_device
    from hopecli.train.losses import normalize_features, rollout

    store, _, tasks, split = run_split(run_dir, store_path)
    if not store.has_object_states:
        return None
    train = sorted(i for t in tasks for i in split.train[t])
    probe, rows = store_probe(store, train)
    dev = resolve_device(device)
    model, _ = load_model(run_dir, device=dev)
    model.eval()
    per_task = {}
    for task in tasks:
        z, a, s, y = _read(store, split.val[task])
        pred = rollout(model, z.to(dev), a.to(dev), s.to(dev), steps).float().cpu()  # [n, H, P, D]
        truth = y[:, 1 : steps + 1]  # [n, H, K]
        answers = {"true_features": probe(z[:, 1 : steps + 1]), "copy_last": probe(z[:, :1]).expand_as(truth),
                   "model": probe(normalize_features(pred))}
        finite = torch.isfinite(truth).all(-1)  # [n, H]
        per_task[task] = {name: [_masked_mean(position_error(answer, truth)[:, h], finite[:, h])
                                 for h in range(steps)] for name, answer in answers.items()}
    mean = {name: [float(np.nanmean([per_task[t][name][h] for t in tasks]))
                   for h in range(steps)] for name in SCORED}
    return {"steps": steps, "units": UNITS, "quantity": "object position error (x, y distance)",
            "tasks": per_task, "mean": mean, "ridge_lambda": probe.lam, "train_rows": rows}


def _masked_mean(values: Tensor, mask: Tensor) -> float:
    return float(values[mask].mean()) if bool(mask.any()) else float("nan")
