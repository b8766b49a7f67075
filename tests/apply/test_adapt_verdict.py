"""`hope adapt` says "helped" only when the change beats the step-to-step spread, judges the
ViT baseline against its own frozen run, and names each clip window once."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from hopecli.adapt import BASELINE, BASELINE_FROZEN, FROZEN, AdaptConfig, AdaptReport, StepError
from hopecli.cli import hope

FROZEN_ERRORS = [0.063, 0.062, 0.055, 0.058, 0.061, 0.067, 0.058]


def _report(method: list[float], baseline: tuple[list[float], list[float]] | None = None) -> AdaptReport:
    report = AdaptReport(["clip.mp4"], AdaptConfig(methods=("memory",)), False, True, baseline is not None)
    for t, (frozen, m) in enumerate(zip(FROZEN_ERRORS, method)):
        errors = {FROZEN: frozen, "memory": m}
        if baseline is not None:
            errors[BASELINE_FROZEN], errors[BASELINE] = baseline[0][t], baseline[1][t]
        report.steps.append(StepError("clip.mp4#0", t + 1, errors))
    return report


def test_helped_needs_agreeing_steps_and_more_than_the_spread():
    # 0.03% lower on every step: consistent, but far inside the spread of the frozen errors
    assert _report([e * (1 - 3e-4) for e in FROZEN_ERRORS]).outcome("memory") == "no clear change"
    # 10% lower on average but up on three of seven steps: the steps disagree
    mixed = [e * f for e, f in zip(FROZEN_ERRORS, (0.7, 1.02, 0.7, 1.02, 0.7, 1.02, 0.9))]
    report = _report(mixed)
    assert report.p_value("memory") >= 0.05 and report.outcome("memory") == "no clear change"
    # 10% lower on every step: helped; 10% higher: hurt
    assert _report([e * 0.9 for e in FROZEN_ERRORS]).outcome("memory") == "helped"
    assert _report([e * 1.1 for e in FROZEN_ERRORS]).outcome("memory") == "hurt"
    assert _report(FROZEN_ERRORS).outcome("memory") == "changed nothing"
    verdict = _report([e * 0.9 for e in FROZEN_ERRORS]).verdict()
    assert verdict == "Mean next-step L1 0.06057 frozen; memory 0.05451 (-10%, helped, p = 0.016)."


def test_the_baseline_is_judged_against_its_own_frozen_run():
    lower = [e * 0.5 for e in FROZEN_ERRORS]  # the ViT is much better than HOPE here, frozen or not
    report = _report(FROZEN_ERRORS, baseline=(lower, [e * 1.001 for e in lower]))
    assert report.reference(BASELINE) == BASELINE_FROZEN
    assert report.change(BASELINE) == pytest.approx(0.001)  # not -50% against frozen HOPE
    assert report.outcome(BASELINE) == "no clear change"
    assert report.columns == [FROZEN, "memory", BASELINE_FROZEN, BASELINE, "copy_last", "context_mean"]


def test_the_table_names_each_clip_window_once(runs, clips_dir):
    result = CliRunner().invoke(hope, ["adapt", "--run", str(runs["hope_tiny"]), "--clip",
                                       str(clips_dir / "clip0.mp4"), "--baseline", str(runs["vit_tiny"])])
    assert result.exit_code == 0, result.output
    rows = [line for line in result.stderr.splitlines() if line.startswith("│")]
    names = [row.split("│")[1].strip() for row in rows]
    assert names[:6] == ["clip0.mp4#0", "", "", "clip0.mp4#1", "", ""]  # two windows of 3 steps
    assert names[6:] == ["mean", "vs its frozen", "p (sign-flip)", "verdict", "vs copy"]
    header = next(line for line in result.stderr.splitlines() if line.startswith("┃ clip window"))
    assert [c.strip() for c in header.strip("┃ ").split("┃")] == [
        "clip window", "step", "frozen", "memory", "ViT baseline frozen", "ViT baseline", "copy-last",
        "context-mean"]
    assert ("helped / hurt: the change beats the step-to-step spread: the 6 per-step differences from the "
            "same model frozen agree (paired sign-flip test, p < 0.05) and their mean exceeds the standard "
            "error of the frozen mean error") in result.stderr.splitlines()
