"""`hope import`: the earlier pipeline's pre-encoded clip folders -> feature store."""

import json
from pathlib import Path

import numpy as np
import pytest
import zarr
from click.testing import CliRunner

from hopecli.cli import hope
from hopecli.data.store import FeatureStore
from hopecli.importer import ImportConfig, TaskRange, import_clips

T, N, D, A, ROWS = 4, 16, 8, 7, 8  # steps, patches (4 x 4), width, action dim, frames
NAME = "vjepa2_vitl16"
TASKS = ["--task", "base=0:3", "--task", "shift=3:5"]  # clip 5 lies outside both


def _feature_path(src: Path, k: int) -> Path:
    return src / f"clip_{k:05d}" / "feature_maps" / f"{NAME}.npy"


def _action_path(src: Path, k: int) -> Path:
    return src / f"clip_{k:05d}" / "actions_states" / "actions.npy"


def _make_source(root: Path, clips: int = 6) -> tuple[Path, list[np.ndarray], list[np.ndarray]]:
    """Clip folders in their layout; clip k's feature map is stored [T, N, D], flattened
    [T*N, D] or [T, H, W, D] by k % 3. Returns the folder, features [T, N, D], actions."""
    rng = np.random.default_rng(0)
    src = root / "clips"
    features, actions = [], []
    for k in range(clips):
        f = rng.standard_normal((T, N, D)).astype(np.float32)
        a = rng.standard_normal((ROWS, A)).astype(np.float32)
        stored = [f, f.reshape(T * N, D), f.reshape(T, 4, 4, D)][k % 3]
        _feature_path(src, k).parent.mkdir(parents=True)
        _action_path(src, k).parent.mkdir(parents=True)
        np.save(_feature_path(src, k), stored)
        np.save(_action_path(src, k), a)
        features.append(f)
        actions.append(a)
    np.save(src / "clip_00000" / "actions_states" / "extrinsics.npy", np.zeros((T, A - 1)))
    return src, features, actions


def _run(*args):
    return CliRunner().invoke(hope, ["import", *[str(a) for a in args]])


def _arrays(path: Path) -> dict[str, np.ndarray]:
    group = zarr.open_group(str(path), mode="r")
    return {name: group[name][:] for name in ("features", "actions", "states", "done", "clip", "task")}


def test_import_keeps_features_and_applies_their_action_rule(tmp_path):
    src, features, actions = _make_source(tmp_path)
    out = tmp_path / "store.zarr"
    result = _run(src, "--out", out, "--patches-per-step", N, *TASKS, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["clips_written"], summary["clips_skipped"]) == (6, 0)
    assert summary["clips_with_extrinsics"] == 1
    assert '1 clip(s) lie outside every --task range; their task label is ""' in result.stderr

    # read with plain zarr, no hope code
    stored = _arrays(out)
    assert list(stored["clip"]) == [f"clip_{k:05d}" for k in range(6)]
    assert list(stored["task"]) == ["base"] * 3 + ["shift"] * 2 + [""]
    assert stored["done"].all()
    assert stored["features"].dtype == np.float16
    for k in range(6):
        np.testing.assert_array_equal(stored["features"][k], features[k].astype(np.float16))
        want = np.zeros((T, A), np.float32)
        want[0] = actions[k][1]  # original index 1 -> step 0, every other step zero
        np.testing.assert_array_equal(stored["actions"][k], want)
        np.testing.assert_array_equal(stored["states"][k], np.zeros((T, A), np.float32))

    attrs = FeatureStore.open(out).attrs
    assert attrs["encoder"] == {"name": f"imported:{NAME}", "config": {"feature_map": NAME, "embed_dim": D},
                                "checksum": "imported", "random_features": False}
    assert (attrs["time_mode"], attrs["frames_per_clip"], attrs["patches_per_step"]) == ("tubelet", ROWS, N)
    assert (attrs["grid"], attrs["action_dim"], attrs["state_dim"]) == ([4, 4], A, A)


def test_mean_mode_averages_each_tubelet(tmp_path):
    src, _, actions = _make_source(tmp_path, clips=3)
    out = tmp_path / "store.zarr"
    result = _run(src, "--out", out, "--patches-per-step", N, "--action-mode", "mean")
    assert result.exit_code == 0, result.output
    stored = FeatureStore.open(out)
    for k in range(3):
        want = np.array([(actions[k][2 * t] + actions[k][2 * t + 1]) / 2 for t in range(T)])
        np.testing.assert_allclose(stored.read(k).actions, want, rtol=1e-6)
    assert stored.tasks == ["", "", ""]


def test_resume_after_interruption_gives_the_same_store(tmp_path):
    src, _, _ = _make_source(tmp_path)
    config = ImportConfig(patches_per_step=N, tasks=(TaskRange("base", 0, 3),))
    written = []

    def crash_after_two(name: str) -> None:
        written.append(name)
        if len(written) == 2:
            raise KeyboardInterrupt

    partial = tmp_path / "partial.zarr"
    with pytest.raises(KeyboardInterrupt):
        import_clips(src, partial, config, on_clip=crash_after_two)
    assert FeatureStore.open(partial).done.sum() == 2

    result = _run(src, "--out", partial, "--patches-per-step", N, "--task", "base=0:3", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["clips_written"], summary["clips_already_done"]) == (4, 2)

    whole = tmp_path / "whole.zarr"
    import_clips(src, whole, config)
    resumed, fresh = _arrays(partial), _arrays(whole)
    for name in fresh:
        np.testing.assert_array_equal(resumed[name], fresh[name], err_msg=name)


def test_resume_with_another_action_mode_is_refused(tmp_path):
    src, _, _ = _make_source(tmp_path, clips=3)
    out = tmp_path / "store.zarr"
    assert _run(src, "--out", out, "--patches-per-step", N).exit_code == 0
    result = _run(src, "--out", out, "--patches-per-step", N, "--action-mode", "mean")
    assert result.exit_code == 1
    assert result.stderr == (f"Error: {out}: store was imported with action_mode = 'first', not 'mean'; "
                             "use another --out or the settings it was made with\n")


def test_broken_clips_are_named_and_skipped(tmp_path):
    src, features, _ = _make_source(tmp_path)
    truncated = _feature_path(src, 2)
    truncated.write_bytes(truncated.read_bytes()[:300])
    np.save(_feature_path(src, 3), np.zeros((T, N, D + 1), np.float32))  # wrong D
    nan = features[4].copy()
    nan[1, 2, 3] = np.nan
    np.save(_feature_path(src, 4), nan.reshape(T * N, D))
    out = tmp_path / "store.zarr"

    result = _run(src, "--out", out, "--patches-per-step", N)
    assert result.exit_code == 1
    assert f"skipped: {truncated}: cannot be loaded (mmap length is greater than file size)" in result.stderr
    assert f"skipped: {_feature_path(src, 3)}: feature width D = 9, the other clips have 8" in result.stderr
    assert f"skipped: {_feature_path(src, 4)}: NaN or infinite values" in result.stderr
    assert result.stderr.endswith("Error: 3 clip(s) skipped; fix them or pass --allow-skips\n")
    store = FeatureStore.open(out)
    assert [store.clips[i] for i in store.indices()] == ["clip_00000", "clip_00001", "clip_00005"]
    np.testing.assert_array_equal(store.read(store.clips.index("clip_00005")).features,
                                  features[5].astype(np.float16))

    again = _run(src, "--out", out, "--patches-per-step", N, "--allow-skips", "--json")
    assert again.exit_code == 0, again.output
    summary = json.loads(again.stdout)
    assert (summary["clips_written"], summary["clips_already_done"], summary["clips_skipped"]) == (0, 3, 3)


def test_flat_feature_maps_need_patches_per_step(tmp_path):
    src, _, _ = _make_source(tmp_path, clips=2)
    out = tmp_path / "store.zarr"
    result = _run(src, "--out", out)
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: {_feature_path(src, 1)}: flattened [T*N, D] feature map of shape [{T * N}, {D}]; "
        "give --patches-per-step N so its steps can be told apart\n"
    )
    assert not out.exists()


def test_bad_task_ranges_are_usage_errors(tmp_path):
    src, _, _ = _make_source(tmp_path, clips=1)
    out = tmp_path / "store.zarr"
    bad = _run(src, "--out", out, "--task", "base=5")
    assert bad.exit_code == 2 and "'base=5' is not NAME=START:END" in bad.stderr
    overlap = _run(src, "--out", out, "--task", "a=0:5", "--task", "b=4:9")
    assert overlap.exit_code == 2 and "task ranges overlap: a=0:5 and b=4:9" in overlap.stderr


@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_compression_codes_the_features_and_reads_back_the_same(tmp_path, compression):
    src, features, _ = _make_source(tmp_path / "src", clips=2)
    out = tmp_path / "s.zarr"
    result = _run(src, "--out", out, "--patches-per-step", N, "--compression", compression)
    assert result.exit_code == 0, result.output
    array = zarr.open_group(str(out), mode="r")["features"]
    assert [type(c).__name__ for c in array.metadata.codecs] == (
        ["BytesCodec"] if compression == "none" else ["BytesCodec", "ZstdCodec"])
    assert np.array_equal(_arrays(out)["features"], np.stack(features).astype(np.float16).reshape(array.shape))
