"""The continual-learning protocol: experiences per strategy, and a joint run end to end."""

from __future__ import annotations

import math

import pytest
import torch

from hopecli.data.store import FeatureStore
from hopecli.evaluate import run_metrics
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


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_gpu_run_under_bf16_autocast(store, tmp_path):
    model_cfg = preset_config("hybrid_tiny", input_dim=16, action_dim=2, state_dim=2, patches_per_step=4)
    results = train(store, tmp_path / "gpu", model_cfg,
                    TrainConfig(tasks=("a", "b"), steps=2, batch_size=2, horizon=2, device="cuda"))
    assert all(math.isfinite(v) for row in results["R"]["teacher_forcing"] for v in row)
