"""Conformance: our engine against the reference loop on the raw env, same actions, per episode.

One task of each suite, 2 trials (2 workers: trial 1 may run in a worker that never ran trial
0), 64 px, a few steps. libero_10 task 9 (the microwave) runs by default, the other suites are
marked slow.
"""

from __future__ import annotations

import numpy as np
import pytest

from worldvla_bench.cli import main
from worldvla_bench.conformance import (
    ConformanceConfig,
    compare_episode,
    random_sequence,
    run_conformance,
)
from worldvla_bench.envs.reference_loop import ReferenceEpisode, run_reference_task
from worldvla_bench.errors import BenchError
from worldvla_bench.protocol import Protocol, RunOptions
from worldvla_bench.records import episode_stem, load_episode_arrays, read_episodes
from worldvla_bench.rollout import run_evaluation
from worldvla_bench.tasks import load_suite

STEPS = 8


@pytest.mark.parametrize("suite, task_id", [
    pytest.param("libero_10", 9, id="libero_10"),
    pytest.param("libero_spatial", 0, id="libero_spatial", marks=pytest.mark.slow),
    pytest.param("libero_object", 1, id="libero_object", marks=pytest.mark.slow),
    pytest.param("libero_goal", 3, id="libero_goal", marks=pytest.mark.slow),
    pytest.param("libero_90", 20, id="libero_90", marks=pytest.mark.slow),
])
def test_our_engine_agrees_with_the_reference_loop(suite, task_id, tmp_path):
    config = ConformanceConfig(Protocol(suite, image_size=64, max_steps=STEPS),
                               RunOptions(tasks=str(task_id), trials=2, workers=2,
                                          progress=False),
                               sequences=("random",), out=tmp_path)
    table = run_conformance(config)
    assert len(table) == 2 and list(table["trial"]) == [0, 1]
    assert table["agrees"].all(), table.to_string()
    assert (table["state_max_abs_diff"] == 0).all() and (table["frames_differing"] == 0).all()
    assert (tmp_path / "conformance.csv").exists() and (tmp_path / "conformance.md").exists()
    records = read_episodes(tmp_path / "random_ours")
    assert {(r["seeding"], r["scene_seed"], r["scene_resets"]) for r in records} == {
        ("openvla", 0, 0), ("openvla", 0, 1)}


def test_the_hashed_seeding_disagrees_with_the_reference_loop(tmp_path):
    """The check has teeth: the same actions in the scene of a per-episode seed differ in
    frames from OpenVLA's loop (the fixtures stand elsewhere)."""
    suite = load_suite("libero_10")
    actions = random_sequence(7, suite.name, 9, 0, 5)
    actions_dir = tmp_path / "actions"
    (actions_dir / "episodes").mkdir(parents=True)
    np.savez(actions_dir / "episodes" / f"{episode_stem(suite.name, 9, 0)}.npz", actions=actions)
    run_dir = run_evaluation(
        Protocol(suite.name, policy="replay", policy_kwargs={"run": str(actions_dir)},
                 seeding="hashed", image_size=64, max_steps=5),
        RunOptions(run_dir=tmp_path / "ours", tasks="9", trials=1, workers=1, save_frames=True,
                   progress=False))
    record = read_episodes(run_dir)[0]
    ours = load_episode_arrays(run_dir / record["episode_file"])
    reference = run_reference_task(suite, 9, 0, [actions], 64, 5)[0]
    result = compare_episode("random", 9, 0, record, ours, reference)
    assert not result.agrees and result.frames_differing > 0.001


def _reference(frames: np.ndarray, state: np.ndarray, success_step=None) -> ReferenceEpisode:
    return ReferenceEpisode(0, success_step is not None, success_step, len(frames) - 1, state,
                            {"agentview": frames})


def test_compare_episode_counts_differing_values_and_steps():
    frames = np.zeros((3, 4, 4, 3), np.uint8)
    state = np.arange(5.0)
    record = {"success": True, "steps": 2}
    ours = {"frames_agentview": frames.copy(), "final_state": state.copy()}
    same = compare_episode("random", 0, 0, record, ours, _reference(frames, state, 2))
    assert same.agrees and same.frames_differing == 0 and same.state_max_abs_diff == 0
    ours["frames_agentview"][1, 0, 0, 0] = 3
    one = compare_episode("random", 0, 0, record, ours, _reference(frames, state, 2))
    assert not one.agrees and one.frames_max_abs_diff == 3
    assert one.frames_differing == pytest.approx(1 / frames.size)
    assert compare_episode("random", 0, 0, record, ours, _reference(frames, state, 2),
                           pixel_tol=3).agrees
    ours["frames_agentview"] = frames.copy()
    late = compare_episode("random", 0, 0, record, ours, _reference(frames, state, None))
    assert not late.agrees and late.success_step == 2 and late.success_step_ref is None
    ours["final_state"] = state + 1e-9
    assert not compare_episode("random", 0, 0, record, ours, _reference(frames, state, 2)).agrees


def test_random_sequences_are_seeded_per_episode():
    a = random_sequence(7, "libero_goal", 3, 1, 10)
    np.testing.assert_array_equal(a, random_sequence(7, "libero_goal", 3, 1, 10))
    assert not np.array_equal(a, random_sequence(7, "libero_goal", 3, 2, 10))
    assert a.shape == (10, 7) and a.min() >= -1 and a.max() <= 1


def test_bad_configurations_are_named():
    with pytest.raises(BenchError, match="no reference loop"):
        ConformanceConfig(Protocol("libero_spatial", seeding="hashed"))
    with pytest.raises(BenchError, match="sequences"):
        ConformanceConfig(Protocol("libero_spatial"), sequences=("human",))


def test_cli_exits_non_zero_on_a_disagreement(monkeypatch, tmp_path, capsys):
    import pandas as pd

    import worldvla_bench.conformance as conformance

    row = {"sequences": "random", "task_id": 0, "trial": 0, "success": False,
           "success_ref": False, "success_step": None, "success_step_ref": None, "steps": 5,
           "state_max_abs_diff": 0.0, "frames_differing": 0.0, "frames_max_abs_diff": 0,
           "agrees": True}
    tables = [pd.DataFrame([row]), pd.DataFrame([row, {**row, "trial": 1, "agrees": False}])]
    monkeypatch.setattr(conformance, "run_conformance", lambda config: tables.pop(0))
    argv = ["conformance", "--suite", "libero_spatial", "--out", str(tmp_path / "c")]
    assert main(argv) == 0
    assert main(argv) == 1
    assert "1 of 2 episodes disagree" in capsys.readouterr().err


def test_cli_help_names_the_seedings(capsys):
    with pytest.raises(SystemExit):
        main(["conformance", "--help"])
    assert "openpi" in capsys.readouterr().out
