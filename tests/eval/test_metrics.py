"""Continual-learning metrics against answers worked out by hand."""

from __future__ import annotations

import pytest

from hopecli.eval.metrics import continual_metrics, final_stream_metrics, gap_closed, stream_metrics

# rows: after experience i (one task each, in column order); columns: task j
R = [
    [0.30, 0.50, 0.60],
    [0.27, 0.28, 0.55],
    [0.40, 0.33, 0.25],
]
INITIAL = [0.70, 0.65, 0.80]


def test_metrics_by_hand():
    m = continual_metrics(R, initial=INITIAL)
    # mean of the last row: (0.40 + 0.33 + 0.25) / 3
    assert m["avg_error"] == pytest.approx(0.98 / 3)
    # mean of the diagonal: (0.30 + 0.28 + 0.25) / 3
    assert m["plasticity"] == pytest.approx(0.83 / 3)
    # task 0: 0.40 - min(0.30, 0.27) = 0.13; task 1: 0.33 - 0.28 = 0.05 -> 0.09
    assert m["forgetting"] == pytest.approx(0.09)
    # task 0: 0.30 - 0.40 = -0.10; task 1: 0.28 - 0.33 = -0.05 -> -0.075
    assert m["backward_transfer"] == pytest.approx(-0.075)
    # task 1: 0.65 - 0.50 = 0.15; task 2: 0.80 - 0.55 = 0.25 -> 0.20
    assert m["forward_transfer"] == pytest.approx(0.20)


def test_forgetting_ignores_rows_before_the_task_was_learned():
    # task 1's error before its own experience (0.10) is lower than after; it is not "best earlier"
    m = continual_metrics([[0.3, 0.10, 0.9], [0.3, 0.20, 0.9], [0.3, 0.25, 0.2]])
    assert m["forgetting"] == pytest.approx((0.0 + 0.05) / 2)


def test_joint_run_one_experience_for_all_tasks():
    m = continual_metrics([[0.25, 0.26]], first_trained=[0, 0], initial=[0.7, 0.7])
    assert m["avg_error"] == pytest.approx(0.255)
    assert m["plasticity"] == pytest.approx(0.255)
    assert m["forgetting"] is None and m["backward_transfer"] is None and m["forward_transfer"] is None


# the seeds' protocol: base training, then three tasks; columns: base, t1, t2, t3
R_BASE = [
    [0.20, 0.50, 0.60, 0.70],  # after base
    [0.25, 0.30, 0.30, 0.65],  # after t1 (t2 already improved: 0.30, before its own training)
    [0.30, 0.28, 0.35, 0.60],  # after t2
    [0.28, 0.45, 0.50, 0.40],  # after t3
]


def test_seeds_metric_family_by_hand():
    m = stream_metrics(R_BASE)
    # stream error: mean over the seen columns j <= i
    # 0.20; (0.25 + 0.30) / 2; (0.30 + 0.28 + 0.35) / 3; (0.28 + 0.45 + 0.50 + 0.40) / 4
    assert m["stream_error"] == pytest.approx([0.20, 0.275, 0.93 / 3, 1.63 / 4])
    # experience forgetting: R[i][j] - min over ALL earlier rows k < i of R[k][j]
    # row 1: base 0.25 - 0.20 = 0.05
    # row 2: base 0.30 - min(0.20, 0.25) = 0.10; t1 0.28 - min(0.50, 0.30) = -0.02
    # row 3: base 0.28 - 0.20 = 0.08; t1 0.45 - min(0.50, 0.30, 0.28) = 0.17;
    #        t2 0.50 - min(0.60, 0.30, 0.35) = 0.20 (the 0.30 from before t2's own training counts)
    ef = m["experience_forgetting"]
    assert ef[0] == [None] * 4
    assert ef[1][0] == pytest.approx(0.05) and ef[1][1:] == [None] * 3
    assert ef[2][:2] == pytest.approx([0.10, -0.02]) and ef[2][2:] == [None] * 2
    assert ef[3][:3] == pytest.approx([0.08, 0.17, 0.20]) and ef[3][3] is None
    # stream forgetting: mean of each row's EF; 0 after base
    assert m["stream_forgetting"] == pytest.approx([0.0, 0.05, 0.08 / 2, 0.45 / 3])
    # BWT (theirs): mean over j < i of R[i][j] - R[j][j]; positive = the error grew
    # row 1: 0.25 - 0.20; row 2: (0.10 + (0.28 - 0.30)) / 2; row 3: (0.08 + 0.15 + 0.15) / 3
    assert m["backward_transfer"][0] is None
    assert m["backward_transfer"][1:] == pytest.approx([0.05, 0.04, 0.38 / 3])
    # FWT (theirs): mean error on the not yet trained columns j > i
    # row 0: (0.50 + 0.60 + 0.70) / 3; row 1: (0.30 + 0.65) / 2; row 2: 0.60; row 3: none
    assert m["forward_transfer"][:3] == pytest.approx([0.60, 0.475, 0.60]) and m["forward_transfer"][3] is None
    final = final_stream_metrics(m)
    assert final["stream_error"] == pytest.approx(0.4075) and final["stream_forgetting"] == pytest.approx(0.15)
    assert final["backward_transfer"] == pytest.approx(0.38 / 3)
    assert final["forward_transfer"] == pytest.approx((0.60 + 0.475 + 0.60) / 3)  # mean over rows 0..2
    # ours on the same R, for contrast: forgetting only counts rows from the task's training on
    # base 0.28 - min(0.20, 0.25, 0.30) = 0.08; t1 0.45 - min(0.30, 0.28) = 0.17; t2 0.50 - 0.35 = 0.15
    ours = continual_metrics(R_BASE)
    assert ours["forgetting"] == pytest.approx(0.40 / 3)
    assert ours["backward_transfer"] == pytest.approx(-0.38 / 3)  # the opposite sign of theirs
    assert ours["avg_error"] == pytest.approx(final["stream_error"])  # every column seen at the end


def test_seeds_metrics_of_a_joint_run_and_of_missing_errors():
    m = stream_metrics([[0.25, 0.35]], first_trained=[0, 0])
    assert m["stream_error"] == pytest.approx([0.30]) and m["stream_forgetting"] == [0.0]
    assert m["backward_transfer"] == [None] and m["forward_transfer"] == [None]
    assert final_stream_metrics(m)["forward_transfer"] is None
    # a NaN (diverged) error: stream error / FWT of its row missing, forgetting and BWT skip it
    m = stream_metrics([[0.2, 0.5, 0.6], [0.3, 0.3, None], [0.4, None, 0.2]])
    assert m["forward_transfer"][1] is None and m["stream_error"][2] is None
    assert m["stream_forgetting"][2] == pytest.approx(0.2) and m["backward_transfer"][2] == pytest.approx(0.2)


def test_gap_closed_reproduces_the_seed_table():
    # seeds/002: naive ViT 0.3720, joint ViT 0.2502; HOPE phase 1 0.3958 -> -19.5 %, phase 2 0.3987 -> -21.9 %
    assert gap_closed(0.3958, 0.3720, 0.2502) == pytest.approx(-0.195, abs=5e-4)
    assert gap_closed(0.3987, 0.3720, 0.2502) == pytest.approx(-0.219, abs=5e-4)
    assert gap_closed(0.3720, 0.3720, 0.2502) == 0.0
    assert gap_closed(0.2502, 0.3720, 0.2502) == 1.0
    # a joint baseline no better than the naive one leaves the gap undefined, not sign-flipped
    assert gap_closed(0.3, 0.3, 0.3) is None
    assert gap_closed(0.2, 0.3, 0.35) is None


def test_bad_shapes_are_value_errors():
    with pytest.raises(ValueError, match="first_trained"):
        continual_metrics(R, first_trained=[0, 1, 3])
    with pytest.raises(ValueError, match="initial"):
        continual_metrics(R, initial=[0.1, 0.2])
    with pytest.raises(ValueError, match="first_trained"):
        stream_metrics(R, first_trained=[0, 1])
