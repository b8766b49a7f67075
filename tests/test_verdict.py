"""Verdicts against baselines (hopecli.verdict): a paired test decides, and a difference
inside the noise or under the tolerance is "no clear difference"."""

from __future__ import annotations

import numpy as np
import pytest

from hopecli.rollout import RolloutResult
from hopecli.verdict import best_baseline, compare, percent, sign_flip_p


def test_sign_flip_p_is_exact_for_few_steps():
    assert sign_flip_p([-1.0] * 7) == pytest.approx(2 / 128)  # all 7 agree: 2 of the 128 flips are as extreme
    assert sign_flip_p([-1.0, 1.0, -1.0, 1.0]) == 1.0  # no direction at all
    assert sign_flip_p([0.0, 0.0]) == 1.0 and sign_flip_p([]) == 1.0
    assert sign_flip_p([-1.0] * 5 + [0.5]) == pytest.approx(4 / 64)  # flips of the 0.5 step are as extreme too
    assert sign_flip_p([-1.0] * 30) < 1e-3  # past 16 steps: seeded random flips


def test_a_consistent_difference_is_better_or_worse():
    ref = np.linspace(0.1, 0.2, 20)
    assert compare(ref * 0.9, ref, "copy-last").outcome == "better"
    assert compare(ref * 1.1, ref, "copy-last").outcome == "worse"


def test_a_difference_that_goes_both_ways_is_no_clear_difference():
    ref = np.linspace(0.1, 0.2, 20)
    noisy = ref + np.where(np.arange(20) % 2, 0.02, -0.021)  # a mean 0.3% lower, half the time higher
    c = compare(noisy, ref, "context-mean")
    assert c.outcome == "no clear difference" and c.p_value > 0.5


def test_a_tiny_consistent_difference_is_under_the_tolerance():
    """The plan verdict's case: energies 3e-5 apart (0.01%) are no difference, however consistent."""
    ref = np.full(64, 0.3)
    c = compare(ref - 3e-5, ref, "zero actions")
    assert c.p_value < 0.05 and c.outcome == "no clear difference"
    assert c.sentence("patches") == ("-0.01% vs zero actions: no clear difference (paired sign-flip test "
                                     f"over 64 patches, p = {c.p_value:.2g})")


def test_percent_keeps_three_significant_digits():
    assert [percent(x) for x in (-0.0391, 0.0114, -7.36e-5, 0.0)] == ["-3.91%", "+1.14%", "-0.00736%", "+0%"]


def test_rollout_is_compared_with_the_better_baseline():
    """The issue's case: -3.9% vs copy-last, but context-mean is lower still."""
    copy = [0.080, 0.085, 0.088, 0.090, 0.092]
    mean = [0.078, 0.082, 0.084, 0.085, 0.086]
    model = [0.077, 0.081, 0.085, 0.086, 0.087]
    assert best_baseline({"copy_last": copy, "context_mean": mean}) == "context_mean"
    result = RolloutResult("clip", 2, np.zeros((5, 1, 1)), np.zeros((5, 2)), True, model,
                           {"copy_last": copy, "context_mean": mean})
    summary = result.to_dict()
    assert summary["mean_l1_vs_copy"] < 0  # better than copy ...
    versus = summary["vs_best_baseline"]
    assert versus["reference"] == "context-mean"  # ... but judged against the better baseline
    assert versus["relative"] == pytest.approx(np.mean(model) / np.mean(mean) - 1)
    assert versus["outcome"] == "no clear difference"  # 5 horizons that go both ways
