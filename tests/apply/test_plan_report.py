"""`hope rollout --plan` says whether planning got closer to the goal, prints action vectors
one per line, and its figure shows the goal and the rollout under the planned actions."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from hopecli.cli import hope
from hopecli.clips import clip_from_store
from hopecli.plan import rollout_energy, sequence_energies
from hopecli.runs.load import load_run


def test_sequence_energies_are_the_planners_energies(runs, store_path):
    run = load_run(runs["hope_tiny"])
    clip = clip_from_store(store_path, 0, run)
    z, a, s = clip.tensors(run.device)
    goal = z[3]
    sequences = {"zero": torch.zeros(2, 2), "own": torch.from_numpy(clip.actions[1:3])}
    energies = sequence_energies(run.model, z[:2], a[:2], s[:2], goal, sequences)
    with torch.no_grad():
        state = run.model(z[None, :1], a[None, :1], s[None, :1]).state
        direct = rollout_energy(run.model, state, z[1], s[1], goal, 1)(torch.stack(list(sequences.values())))
    assert list(energies) == ["zero", "own"]
    assert [energies["zero"], energies["own"]] == [float(v) for v in direct]


def _plan(runs, clips_dir, tmp_path, *extra):
    return CliRunner().invoke(hope, ["rollout", "--run", str(runs["hope_tiny"]), "--clip",
                                     str(clips_dir / "clip1.mp4"), "--context", "2", "--plan", "--goal",
                                     str(clips_dir / "clip0.mp4"), "--samples", "6", "--top-k", "2",
                                     "--iterations", "2", "--horizon", "2", "--max-action", "0.05", *extra])


def test_plan_prints_three_energies_and_a_verdict(runs, clips_dir, tmp_path):
    result = _plan(runs, clips_dir, tmp_path, "--json")
    assert result.exit_code == 0, result.output
    energies = json.loads(result.stdout)["plan"]["energies"]
    assert set(energies) == {"planned", "own", "zero"}
    lines = result.stderr.splitlines()
    start = lines.index("energy after 2 step(s) from step 1 (L1 to the goal; lower is closer):")
    assert lines[start + 1:start + 4] == [
        f"  planned actions:         {energies['planned']:.6f}",
        f"  the clip's own actions:  {energies['own']:.6f}",
        f"  zero actions:            {energies['zero']:.6f}",
    ]
    verdicts = json.loads(result.stdout)["plan"]["verdicts"]
    patches = json.loads((runs["hope_tiny"] / "config.json").read_text())["model"]["patches_per_step"]
    words = {"better": "got closer to the goal than", "worse": "ended farther from the goal than",
             "no clear difference": "made no clear difference against"}
    for offset, (key, name) in enumerate((("own", "the clip's own actions"), ("zero", "zero actions")), start=4):
        v = verdicts[key]
        assert v["reference"] == name and v["items"] == patches  # the goal's patches pair the energies
        assert v["relative"] == pytest.approx((energies["planned"] - energies[key]) / energies[key], abs=1e-5)
        assert lines[start + offset] == (
            f"planning {words[v['outcome']]} {name}: energy {100 * v['relative']:+.3g}% "
            f"(paired sign-flip test over {patches} patches, p = {v['p_value']:.2g})")
        clear = v["p_value"] < 0.05 and abs(v["relative"]) > 1e-3
        assert v["outcome"] == ("no clear difference" if not clear else "better" if v["relative"] < 0 else "worse")
    assert "rollout of clip1.mp4#0 from 2 context step(s), planned actions" in lines
    assert ("CEM planning toward " + str(clips_dir / "clip0.mp4") + " (6 samples, top 2, 2 iterations, "
            "horizon 2)") in lines


def test_each_planned_action_vector_is_one_line(runs, clips_dir, tmp_path):
    result = _plan(runs, clips_dir, tmp_path)
    assert result.exit_code == 0, result.output
    vector = r"\[[+-]\d\.\d{4}, [+-]\d\.\d{4}\]"
    rows = [line for line in result.stderr.splitlines() if line.startswith("│") and re.search(vector, line)]
    # the step row holds the executed action, the first planned one and the clip's own; the next line the
    # second planned action; no vector is ever split over two lines
    assert len(re.findall(vector, rows[0])) == 3 and len(re.findall(vector, rows[1])) == 1
    assert not any(re.search(r"\[[+-]\d\.\d{4},\s*│", line) for line in result.stderr.splitlines())


def test_plan_figure_shows_goal_and_planned_rollout(runs, clips_dir, tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    figures, savefig = [], Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda fig, *a, **k: (figures.append(fig), savefig(fig, *a, **k)))
    result = _plan(runs, clips_dir, tmp_path, "--png", str(tmp_path / "plan.png"))
    assert result.exit_code == 0, result.output
    fig = figures[0]
    columns = 2 + 1 + 1  # 2 observed steps, 1 executed planned step, the goal
    axes = np.array(fig.axes).reshape(-1, columns)
    assert [row[0].get_ylabel() for row in axes] == ["video", "observed, goal", "predicted"]
    assert [ax.get_title() for ax in axes[0]] == ["step 0 (ctx)", "step 1 (ctx)", "step 2", "goal"]
    has_image = [[bool(ax.images) for ax in row] for row in axes]
    assert has_image == [[True, True, False, True],  # no frames of the clip's own future; the goal's frame
                         [True, True, False, True],  # observed steps, then the goal
                         [False, False, True, False]]  # the rollout under the planned action
    assert "planned actions" in fig._suptitle.get_text()
