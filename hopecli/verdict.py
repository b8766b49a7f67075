"""One rule for every "better than" the commands print: a paired test against the best baseline.

`adapt` decides helped / hurt with a paired sign-flip test (adapt.sign_flip_p); rollout
and plan use the same test here. A comparison is a set of paired values (the same
horizons of one rollout, the same patches of one predicted step): "better" / "worse" when
the paired differences agree (p < adapt.SIGNIFICANCE) and the mean difference is larger
than `tolerance` relative to the reference; otherwise "no clear difference". Rollout
compares against the better of copy-last and context-mean, never just copy-last.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

TOLERANCE = 1e-3  # relative differences below this are no difference, whatever the test says


@dataclass(frozen=True)
class Comparison:
    """A value (lower is better) against a reference on the same paired items."""

    reference: str  # what was compared against, e.g. "context-mean"
    relative: float  # (mean - reference mean) / reference mean
    p_value: float  # paired sign-flip test of the differences
    items: int
    outcome: str  # "better", "worse" or "no clear difference"

    def sentence(self, unit: str) -> str:
        """e.g. "-3.9% vs context-mean: no clear difference (paired sign-flip test over 5
        horizons, p = 0.31)"; `unit` names the paired items."""
        return (f"{100 * self.relative:+.1f}% vs {self.reference}: {self.outcome} "
                f"(paired sign-flip test over {self.items} {unit}, p = {self.p_value:.2g})")

    def to_dict(self) -> dict:
        return asdict(self)


def compare(values: Sequence[float], reference: Sequence[float], name: str,
            tolerance: float = TOLERANCE) -> Comparison:
    """Compare paired `values` with `reference` (lower is better) by the module's rule."""
    from hopecli.adapt import SIGNIFICANCE, sign_flip_p

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
