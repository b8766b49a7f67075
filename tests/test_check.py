"""`hope check` on stores and runs damaged in several ways, `--repair`, and `hope extract`
re-doing a clip whose chunks do not read back."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from hopecli.cli import hope
from hopecli.data.store import FeatureStore
from hopecli.data.synth import PushConfig, simulate_push, write_clip
from tests.faults import corrupt_json, delete_chunk, truncate_chunk

WINDOW = 8


def _run(*args):
    return CliRunner().invoke(hope, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def extracted(tmp_path_factory) -> tuple[Path, Path]:
    """Two tiny clips of two windows each and the store `hope extract` made of them."""
    root = tmp_path_factory.mktemp("extracted")
    clips = root / "clips"
    clips.mkdir()
    for i, friction in enumerate((0.2, 0.8)):
        write_clip(simulate_push(PushConfig(frames=2 * WINDOW, resolution=32, friction=friction, seed=i,
                                            task=f"mu{friction}")), clips / f"clip{i}.mp4")
    result = _run("extract", clips, "--out", root / "store.zarr", "--frames", WINDOW, "--device", "cpu")
    assert result.exit_code == 0, result.output
    return clips, root / "store.zarr"


@pytest.fixture
def store(extracted, tmp_path) -> Path:
    return Path(shutil.copytree(extracted[1], tmp_path / "store.zarr"))


def _damage_three_ways(store: Path) -> None:
    truncate_chunk(store, "features", 1)
    delete_chunk(store, "actions", 2)
    delete_chunk(store, "done", 3)


def _same_clips(a: Path, b: Path) -> bool:
    x, y = FeatureStore.open(a), FeatureStore.open(b)
    return x.clips == y.clips and all(
        np.array_equal(getattr(x.read(i), k), getattr(y.read(i), k))
        for i in range(len(x)) for k in ("features", "actions", "states"))


def test_check_lists_every_damaged_clip(store):
    assert _run("check", store).exit_code == 0
    _damage_three_ways(store)
    result = _run("check", store, "--json")
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == (f"Error: {store}: 3 damaged of 4 clip(s) checked; "
                                              f"`hope check {store} --repair` extracts them again")
    found = json.loads(result.output[result.output.index("{"):result.output.rindex("}") + 1])
    assert [(f["clip"], Path(f["path"]).relative_to(store).as_posix()) for f in found["findings"]] == [
        ("clip0.mp4#1", "features/c/1/0/0/0"), ("clip1.mp4#0", "actions/c/2/0/0"), ("clip1.mp4#1", "done/c/3")]
    assert "does not decode" in found["findings"][0]["problem"]
    assert "is missing" in found["findings"][1]["problem"]
    assert "not marked done" in found["findings"][2]["problem"]


def test_repair_extracts_the_damaged_clips_again(extracted, store):
    _damage_three_ways(store)
    result = _run("check", store, "--repair")
    assert result.exit_code == 0, result.output
    assert result.output.count("repaired:") == 3
    assert _same_clips(store, extracted[1])


def test_repair_without_the_videos_leaves_the_clips_out(extracted, store, tmp_path):
    attrs = json.loads((store / "zarr.json").read_text())
    attrs["attributes"]["source_root"] = str(tmp_path / "gone")
    (store / "zarr.json").write_text(json.dumps(attrs))
    truncate_chunk(store, "features", 1)
    result = _run("check", store, "--repair")
    assert result.exit_code == 1
    assert "not repaired: 1 clip(s) ('clip0.mp4#1')" in result.output
    with pytest.warns(UserWarning, match="not marked done"):
        assert FeatureStore.open(store).indices() == [0, 2, 3]  # left out, never read as zeros


def test_extract_redoes_a_clip_whose_chunks_do_not_read_back(extracted, store):
    clips, original = extracted
    truncate_chunk(store, "features", 0)
    delete_chunk(store, "states", 3)
    result = _run("extract", clips, "--out", store, "--frames", WINDOW, "--device", "cpu", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output[result.output.index("{"):result.output.rindex("}") + 1])
    assert (summary["clips_written"], summary["clips_already_done"]) == (2, 2)
    assert _same_clips(store, original)


def test_check_names_damaged_store_metadata(store):
    meta = corrupt_json(store / "features" / "zarr.json")
    result = _run("check", store)
    assert result.exit_code == 1
    assert f"damaged: {meta}: damaged store metadata (not valid JSON" in result.output


def test_check_run(tmp_path):
    from tests.train.conftest import make_store

    store = make_store(tmp_path / "s.zarr", {"a": 4})
    run = tmp_path / "run"
    assert _run("train", store, "--out", run, "--preset", "vit_tiny", "--tasks", "a", "--steps", "1",
                "--batch-size", "2", "--horizon", "1").exit_code == 0
    assert _run("check", run).exit_code == 0
    corrupt_json(run / "checkpoints" / "latest.json", "{}")
    corrupt_json(run / "split.json", "[]")
    (run / "checkpoints" / "experience-0" / "state.pt").write_bytes(b"\0" * 10)
    result = _run("check", run)
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.startswith("damaged:")]
    assert lines[0] == f"damaged: {run / 'split.json'}: the file must be an object, got a list"
    assert lines[1] == f"damaged: {run / 'checkpoints' / 'latest.json'}: name is missing"
    assert lines[2].startswith(f"damaged: {run / 'checkpoints' / 'experience-0' / 'state.pt'}: cannot read "
                               "training state safely")
    assert result.output.splitlines()[-1] == f"Error: {run}: 3 damaged of 7 file(s) checked"
