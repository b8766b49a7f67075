"""Sidecar validation: every bad file gets one message naming it and the problem."""

import numpy as np
import pytest

from hopecli.data.sidecar import load_sidecar, save_sidecar, sidecar_path
from hopecli.errors import InputError


def _good(frames=4):
    return np.zeros((frames, 2), np.float32), np.ones((frames, 2), np.float32)


def test_round_trip(tmp_path):
    actions, states = _good()
    path = save_sidecar(tmp_path / "c.npz", actions, states, task="low",
                        object_states=np.zeros((4, 3)), friction=0.1, seed=5, shape="box")
    sidecar = load_sidecar(path, frames=4)
    assert np.array_equal(sidecar.actions, actions) and np.array_equal(sidecar.states, states)
    assert sidecar.task == "low" and sidecar.object_states.shape == (4, 3)
    assert sidecar.meta == {"friction": 0.1, "seed": 5, "shape": "box"}
    assert sidecar_path(tmp_path / "c.mp4") == path


def test_missing_file(tmp_path):
    with pytest.raises(InputError) as e:
        load_sidecar(tmp_path / "c.npz")
    assert str(e.value) == (f"{tmp_path / 'c.npz'}: sidecar missing "
                            "(each clip needs a .npz with actions and states)")


def test_not_an_npz(tmp_path):
    path = tmp_path / "c.npz"
    path.write_bytes(b"not a zip")
    with pytest.raises(InputError, match=f"^{path}: not a readable .npz file"):
        load_sidecar(path)


def _write(path, **arrays):
    with path.open("wb") as f:
        np.savez(f, **arrays)
    return path


@pytest.mark.parametrize("arrays, message", [
    ({"actions": np.zeros((4, 2))}, "missing key 'states'"),
    ({"actions": np.zeros(4), "states": np.zeros((4, 2))},
     "'actions' has shape [4] and dtype float64, expected numbers of shape [frames, dims]"),
    ({"actions": np.zeros((4, 2)), "states": np.zeros((3, 2))},
     "'states' has 3 rows but 'actions' has 4"),
    ({"actions": np.array([[0.0, np.nan]] * 4), "states": np.zeros((4, 2))},
     "'actions' contains NaN or infinite values"),
    ({"actions": np.zeros((4, 2)), "states": np.zeros((4, 2)), "task": np.array([1, 2])},
     "'task' must be a single string, got dtype int64"),
], ids=["missing-key", "wrong-shape", "rows-disagree", "nan", "task-not-string"])
def test_bad_contents_named(tmp_path, arrays, message):
    path = _write(tmp_path / "clip.npz", **arrays)
    with pytest.raises(InputError) as e:
        load_sidecar(path)
    assert str(e.value) == f"{path}: {message}"


def test_frame_count_must_match_video(tmp_path):
    actions, states = _good(4)
    path = save_sidecar(tmp_path / "c.npz", actions, states)
    with pytest.raises(InputError) as e:
        load_sidecar(path, frames=6)
    assert str(e.value) == f"{path}: 4 rows of actions and states but the video has 6 frames"
