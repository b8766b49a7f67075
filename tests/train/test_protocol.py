"""The continual-learning protocol: experiences per strategy, and a joint run end to end."""

from __future__ import annotations

import math

import pytest
import torch

from hopecli.data.store import FeatureStore
from hopecli.errors import HopeError
from hopecli.eval.metrics import run_metrics
from hopecli.model.presets import preset_config
from hopecli.train.config import TrainConfig
from hopecli.train.continual import plan_protocol, train
from hopecli.train.distributed import World

from .conftest import make_store


@pytest.fixture
def store(tmp_path):
    return FeatureStore.open(make_store(tmp_path / "s.zarr", {"a": 6, "b": 6, "c": 6}))


def test_naive_one_task_per_experience_in_the_given_order(store):
    p = plan_protocol(store, TrainConfig(tasks=("c", "a"), steps=3, batch_size=4), World())
    assert [(e.name, e.tasks, e.steps) for e in p.experiences] == [("c", ("c",), 3), ("a", ("a",), 3)]
    assert p.first_trained == [0, 1]
    assert set(p.experiences[0].plan.indices) == set(store.indices(["c"])) - set(p.val["c"])


def test_joint_is_one_experience_with_the_steps_of_all_tasks(store):
    p = plan_protocol(store, TrainConfig(strategy="joint", steps=3, batch_size=4), World())
    (e,) = p.experiences
    assert e.name == "joint" and e.steps == 9 and p.first_trained == [0, 0, 0]
    assert len(e.plan.indices) == sum(len(store.indices([t])) - len(p.val[t]) for t in "abc")


def test_epochs_count_training_clips(store):
    p = plan_protocol(store, TrainConfig(epochs=2.0, batch_size=4), World())
    n_train = len(p.experiences[0].plan.indices)  # 6 clips, 1 held out
    assert n_train == 5 and p.experiences[0].steps == math.ceil(2.0 * 5 / 4)


def test_replay_draws_only_earlier_training_clips(store):
    p = plan_protocol(store, TrainConfig(strategy="replay", steps=2, batch_size=4, replay_size=3,
                                         replay_fraction=0.5), World())
    assert p.experiences[0].plan.replay == [] and p.experiences[0].plan.replay_count == 0
    second, third = p.experiences[1].plan, p.experiences[2].plan
    assert second.replay_count == 2 and len(second.replay) == 3
    assert set(second.replay) <= set(p.experiences[0].plan.indices)
    earlier = set(p.experiences[0].plan.indices) | set(p.experiences[1].plan.indices)
    assert set(third.replay) <= earlier
    assert not set(third.replay) & {i for v in p.val.values() for i in v}


def test_joint_run_has_one_row_and_no_forgetting(store, tmp_path):
    model_cfg = preset_config("vit_tiny", input_dim=16, action_dim=2, state_dim=2, patches_per_step=4)
    results = train(store, tmp_path / "joint", model_cfg,
                    TrainConfig(strategy="joint", tasks=("a", "b"), steps=1, batch_size=2, horizon=1))
    assert len(results["R"]["teacher_forcing"]) == 1 and len(results["R"]["teacher_forcing"][0]) == 2
    m = run_metrics(results)["teacher_forcing"]
    assert m["avg_error"] == pytest.approx(m["plasticity"]) and m["forgetting"] is None


@pytest.fixture
def study(tmp_path):
    """A base partition, then two tasks (store order: base 0..7, a 8..12, b 13..17)."""
    return FeatureStore.open(make_store(tmp_path / "study.zarr", {"base": 8, "a": 5, "b": 5}))


def test_base_experience_first_then_tasks_each_with_its_budget(study):
    cfg = TrainConfig(base_task="base", tasks=("b", "a"), steps=(3, 2), base_epochs=1.0, batch_size=4, val_clips=2)
    p = plan_protocol(study, cfg, World())
    # base: 6 training clips, one epoch of batches of 4 -> 2 steps; then b 3 steps, a 2 steps
    assert [(e.name, e.tasks, e.steps) for e in p.experiences] == [
        ("base", ("base",), 2), ("b", ("b",), 3), ("a", ("a",), 2)]
    assert p.tasks == ["base", "b", "a"] and p.base == "base" and p.first_trained == [0, 1, 2]
    # the last 2 clips of every partition are held out, whatever the strategy
    assert p.val == {"base": [6, 7], "b": [16, 17], "a": [11, 12]}
    assert p.experiences[0].plan.indices == [0, 1, 2, 3, 4, 5]


def test_base_without_its_own_budget_gets_the_tasks_one_and_tasks_default_to_the_rest(study):
    p = plan_protocol(study, TrainConfig(base_task="base", steps=4, batch_size=2), World())
    assert [(e.name, e.steps) for e in p.experiences] == [("base", 4), ("a", 4), ("b", 4)]


def test_joint_with_base_trains_everything_at_once_for_the_sum_of_the_budgets(study):
    p = plan_protocol(study, TrainConfig(strategy="joint", base_task="base", base_steps=5, steps=2,
                                         batch_size=2), World())
    (e,) = p.experiences
    assert e.name == "joint" and e.tasks == ("base", "a", "b") and e.steps == 5 + 2 + 2
    assert p.first_trained == [0, 0, 0]
    assert set(e.plan.indices) == {i for t in ("base", "a", "b") for i in study.indices([t])} - {
        i for v in p.val.values() for i in v}


def test_replay_after_base_draws_base_clips_too(study):
    cfg = TrainConfig(strategy="replay", base_task="base", steps=1, batch_size=4, replay_size=100, val_clips=1)
    p = plan_protocol(study, cfg, World())
    base, a, b = (e.plan for e in p.experiences)
    assert base.replay == [] and sorted(a.replay) == base.indices  # the buffer holds all it saw
    assert sorted(b.replay) == sorted(base.indices + a.indices)


def test_budget_and_base_errors(study, tmp_path):
    with pytest.raises(HopeError, match=r"the per-task steps \[1, 2, 3\] give 3 budget\(s\) for 2 task\(s\)"):
        plan_protocol(study, TrainConfig(base_task="base", base_steps=1, steps=(1, 2, 3)), World())
    with pytest.raises(ValueError, match="the base task 'a' must not be one of the tasks"):
        TrainConfig(base_task="a", tasks=("a", "b"), steps=1)
    with pytest.raises(ValueError, match="they need a base_task"):
        TrainConfig(steps=1, base_epochs=2.0)
    with pytest.raises(ValueError, match="give the base experience its own"):
        TrainConfig(base_task="base", steps=(1, 2))
    with pytest.raises(ValueError, match=r"one value for each of the 2 tasks, got \(1, 2, 3\)"):
        TrainConfig(tasks=("a", "b"), steps=(1, 2, 3))
    only_base = FeatureStore.open(make_store(tmp_path / "base.zarr", {"base": 3}))
    with pytest.raises(HopeError, match="no task to learn after the base task 'base'"):
        plan_protocol(only_base, TrainConfig(base_task="base", steps=1), World())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_gpu_run_under_bf16_autocast(store, tmp_path):
    model_cfg = preset_config("hybrid_tiny", input_dim=16, action_dim=2, state_dim=2, patches_per_step=4)
    results = train(store, tmp_path / "gpu", model_cfg,
                    TrainConfig(tasks=("a", "b"), steps=2, batch_size=2, horizon=2, device="cuda"))
    assert all(math.isfinite(v) for row in results["R"]["teacher_forcing"] for v in row)
