"""One rule for every "better than" the commands print: a paired test against the best baseline.

The paired sign-flip test (`sign_flip_p`) decides: `adapt` judges helped / hurt by it,
rollout and plan compare by it here. A comparison is a set of paired values (the same
horizons of one rollout, the same patches of one predicted step): "better" / "worse" when
the paired differences agree (p < SIGNIFICANCE) and the mean difference is larger
than `tolerance` relative to the reference; otherwise "no clear difference". Rollout
compares against the better of copy-last and context-mean, never just copy-last.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

TOLERANCE = 1e-3  # relative differences below this are no difference, whatever the test says
SIGNIFICANCE = 0.05  # a difference counts (better, worse, helped, hurt) when the paired test's p is below this
EXACT_FLIPS = 16  # up to this many paired items the sign-flip test enumerates every flip


def percent(relative: float) -> str:
    """A relative difference in percent with 3 significant digits and its sign, so that a
    difference of 0.007% does not print as "-0.0%"."""
    return f"{100 * relative:+.3g}%"


def sign_flip_p(differences: Sequence[float]) -> float:
    """Two-sided p-value of a paired sign-flip test that per-step differences average zero.

    Under "the method changes nothing" each step's difference (method - frozen) is as
    likely negative as positive, so the observed mean is compared with the means of every
    way of flipping the signs (exact up to EXACT_FLIPS steps, else 20,000 seeded random
    flips). Few steps or differences that go both ways give a large p-value.
    """
    d = np.asarray(differences, dtype=np.float64)
    n = len(d)
    if n == 0 or not np.any(d):
        return 1.0
    if n <= EXACT_FLIPS:
        signs = ((np.arange(2**n)[:, None] >> np.arange(n)) & 1) * 2 - 1  # [2^n, n]
    else:
        signs = np.random.default_rng(0).choice([-1, 1], size=(20_000, n))
    means = np.abs((signs * d).mean(1))
    return float(np.mean(means >= abs(d.mean()) * (1 - 1e-9)))


@dataclass(frozen=True)
class Comparison:
    """A value (lower is better) against a reference on the same paired items."""

    reference: str  # what was compared against, e.g. "context-mean"
    relative: float  # (mean - reference mean) / reference mean
    p_value: float  # paired sign-flip test of the differences
    items: int
    outcome: str  # "better", "worse" or "no clear difference"

    @property
    def percent(self) -> str:
        """The relative difference with 3 significant digits: "-3.91%", "-0.00736%"."""
        return percent(self.relative)

    def test(self, unit: str) -> str:
        """e.g. "paired sign-flip test over 5 horizons, p = 0.31"; `unit` names the paired items."""
        return f"paired sign-flip test over {self.items} {unit}, p = {self.p_value:.2g}"

    def sentence(self, unit: str) -> str:
        """e.g. "-3.91% vs context-mean: no clear difference (paired sign-flip test over 5
        horizons, p = 0.31)"."""
        return f"{self.percent} vs {self.reference}: {self.outcome} ({self.test(unit)})"

    def to_dict(self) -> dict:
        return asdict(self)


def compare(values: Sequence[float], reference: Sequence[float], name: str,
            tolerance: float = TOLERANCE) -> Comparison:
    """Compare paired `values` with `reference` (lower is better) by the module's rule."""
    v, r = np.asarray(values, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    if v.shape != r.shape or v.size == 0:
        raise ValueError(f"paired values need equal non-empty shapes, got {v.shape} and {r.shape}")
    ref_mean = float(r.mean())
    relative = float(v.mean() - ref_mean) / ref_mean if ref_mean else 0.0
    p = sign_flip_p(v - r)
    if p >= SIGNIFICANCE or abs(relative) <= tolerance:
        outcome = "no clear difference"
    else:
        outcome = "better" if relative < 0 else "worse"
    return Comparison(name, relative, p, int(v.size), outcome)


def best_baseline(baselines: dict[str, Sequence[float]]) -> str:
    """The baseline with the lowest mean (name), e.g. context_mean when it beats copy_last."""
    return min(baselines, key=lambda k: float(np.mean(baselines[k])))
