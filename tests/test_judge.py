"""The success judge: labels from the simulator's check, metrics, split by episode, a judge
trained in seconds on committed real frames, checkpoint round trip, the train-judge command.

`tests/fixtures/judge_frames.npz` holds real libero_goal agentview frames (32 px) with their
labels; `tests/fixtures/make_judge_fixture.py` makes it from runs recorded as the "Success judge"
section of docs/world_models_as_simulators.md says (its docstring has the exact command).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import split_config

from worldvla_bench.errors import BenchError
from worldvla_bench.worldmodel.judge import (
    JudgeNet,
    SuccessJudge,
    TrainConfig,
    binary_metrics,
    expected_calibration_error,
    judge_probabilities,
    load_judge,
    split_episodes,
    train_judge,
)
from worldvla_bench.worldmodel.judge_data import (
    LabelledFrames,
    episode_labels,
    hold_frames,
    read_labelled_runs,
)

FIXTURE = Path(__file__).parent / "fixtures" / "judge_frames.npz"


def _frames(n: int, episodes: list[str], tasks: list[str], labels=None) -> LabelledFrames:
    rng = np.random.default_rng(0)
    return LabelledFrames(
        frames=rng.integers(0, 255, (n, 32, 32, 3), dtype=np.uint8),
        labels=np.zeros(n, bool) if labels is None else np.asarray(labels, bool),
        episode=np.asarray(episodes), task=np.asarray(tasks), source=np.full(n, "run"),
        step=np.arange(n), final=np.zeros(n, bool), hold=np.zeros(n, bool))


# -- labels and metrics -------------------------------------------------------------------------
def test_episode_labels_mark_only_the_last_frame_of_a_success():
    np.testing.assert_array_equal(episode_labels(4, True), [False, False, False, True])
    np.testing.assert_array_equal(episode_labels(4, False), [False] * 4)


def test_binary_metrics_by_hand():
    probs = np.array([0.9, 0.8, 0.3, 0.6, 0.1, 0.2, 0.05, 0.4])
    labels = np.array([1, 1, 1, 0, 0, 0, 0, 0], bool)
    m = binary_metrics(probs, labels)
    assert (m["tp"], m["fn"], m["fp"], m["tn"]) == (2, 1, 1, 4)
    assert m["majority_rate"] == 5 / 8 and m["accuracy"] == 6 / 8
    assert m["precision"] == 2 / 3 and m["recall"] == 2 / 3 and m["specificity"] == 4 / 5
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 4 / 5) / 2)
    assert m["brier"] == pytest.approx(np.mean((probs - labels) ** 2))
    assert math.isnan(binary_metrics(np.array([0.1]), np.array([False]))["recall"])


def test_expected_calibration_error_by_hand():
    # bin [0.2, 0.3): probs 0.25 x2, one positive -> |0.5 - 0.25| x 2/4; bin [0.9, 1.0]: 1.0 x2,
    # both positive -> 0
    probs = np.array([0.25, 0.25, 1.0, 1.0])
    labels = np.array([1, 0, 1, 1], bool)
    assert expected_calibration_error(probs, labels, bins=10) == pytest.approx(0.125)
    assert expected_calibration_error(np.array([0.0, 1.0]), np.array([0, 1], bool)) == 0.0


def test_split_is_by_episode_and_keeps_each_outcome_on_both_sides():
    episodes = [f"e{i // 3}" for i in range(24)]  # 8 episodes of 3 frames
    labels = [i % 3 == 2 and i < 12 for i in range(24)]  # e0-e3 succeed at their last frame
    data = _frames(24, episodes, ["libero_goal/1"] * 24, labels)
    train, held = split_episodes(data, held_out=0.25, seed=0)
    assert not set(data.episode[train]) & set(data.episode[held])
    assert (train | held).all() and len(set(data.episode[held])) == 2
    assert data.labels[held].any() and data.labels[train].any()  # one success episode each side


# -- the judge object -----------------------------------------------------------------------------
def _random_judge(tasks=("libero_goal/1", "libero_goal/4"), size: int = 32) -> SuccessJudge:
    torch.manual_seed(0)
    return SuccessJudge(JudgeNet(len(tasks), size).eval(), list(tasks), size,
                        metrics={"final": {"n": 3}}, provenance={"runs": {"a": "expert"}})


def test_checkpoint_round_trip_gives_identical_probabilities(tmp_path):
    judge = _random_judge()
    frames = np.random.default_rng(1).integers(0, 255, (5, 64, 64, 3), dtype=np.uint8)
    judge.save(tmp_path / "judge.pt")
    loaded = load_judge(tmp_path / "judge.pt")
    for task in (1, 4):
        a = judge.success_probability(frames, "libero_goal", task)
        np.testing.assert_array_equal(a, loaded.success_probability(frames, "libero_goal", task))
        assert a.shape == (5,) and np.all((a > 0) & (a < 1))
    assert loaded.tasks == judge.tasks and loaded.metrics == judge.metrics
    assert loaded.provenance == judge.provenance


def test_judge_refuses_unknown_tasks_bad_frames_and_non_checkpoints(tmp_path):
    judge = _random_judge()
    frames = np.zeros((2, 32, 32, 3), np.uint8)
    with pytest.raises(BenchError, match="not trained on task libero_goal/2"):
        judge.success_probability(frames, "libero_goal", 2)
    with pytest.raises(BenchError, match="uint8 frames"):
        judge.success_probability(frames.astype(np.float32), "libero_goal", 1)
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(BenchError, match="not a success-judge checkpoint"):
        load_judge(tmp_path / "other.pt")
    with pytest.raises(BenchError, match="no judge checkpoint"):
        load_judge(tmp_path / "missing.pt")


# -- trained on committed real frames ---------------------------------------------------------
@pytest.fixture
def one_torch_thread():
    """A tiny net trains faster on one thread; two fight the simulators for a 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_judge_trained_in_seconds_beats_chance_on_held_out_real_frames(one_torch_thread,
                                                                         tmp_path):
    data = LabelledFrames.load(FIXTURE)
    started = time.perf_counter()
    # ~100 training frames: no augmentation, more epochs (augmentation helps at scale only)
    config = TrainConfig(epochs=40, image_size=32, batch_size=32, shift=0, brightness=0, seed=0)
    judge, rows = train_judge(data, config, progress=False)
    assert time.perf_counter() - started < 60
    frames = next(r for r in rows if r["scope"] == "frames" and r["task"] == "all")
    assert frames["positives"] >= 5 and frames["n"] - frames["positives"] >= 5
    assert frames["balanced_accuracy"] > 0.75, frames
    assert frames["recall"] > 0.5 and frames["specificity"] > 0.7, frames
    held = np.isin(data.episode, judge.provenance["held_out_episodes"])
    assert not set(data.episode[held]) & set(data.episode[~held])
    # its stored metrics are those of the held-out frames
    probs = judge_probabilities(judge, data.subset(held))
    np.testing.assert_allclose(binary_metrics(probs, data.labels[held])["balanced_accuracy"],
                               judge.metrics["frames"]["balanced_accuracy"])
    assert "judge error on held-out real final frames" in judge.error_line()
    # the trained judge saved and loaded: the same probabilities, metrics and provenance
    judge.save(tmp_path / "judge.pt")
    loaded = load_judge(tmp_path / "judge.pt")
    np.testing.assert_array_equal(judge_probabilities(loaded, data),
                                  judge_probabilities(judge, data))
    assert loaded.error_line() == judge.error_line()
    assert loaded.provenance["held_out_episodes"] == judge.provenance["held_out_episodes"]
    assert json.dumps(loaded.metrics["table"]) == json.dumps(rows)  # NaN where undefined


# -- labels of a real run against the simulator ------------------------------------------------
@pytest.fixture(scope="module")
def expert_run(tmp_path_factory) -> Path:
    """One real expert episode that succeeds: libero_goal task 1, trial 0, 48 px, frames saved."""
    from worldvla_bench.rollout import run_evaluation

    run_dir = tmp_path_factory.mktemp("judge") / "expert"
    run_evaluation(*split_config(suite="libero_goal", policy="expert", tasks="1", trials=1,
                                 run_dir=run_dir, workers=1, image_size=48, save_frames=True,
                                 progress=False))
    return run_dir


def test_labels_of_a_real_run_match_the_simulator_success_check(expert_run):
    from worldvla_bench.envs.libero_env import LiberoEnv
    from worldvla_bench.envs.seeding import scene_of
    from worldvla_bench.worldmodel.data import read_run

    data = read_labelled_runs([expert_run], hold_steps=3, progress=False)
    episode = next(read_run(expert_run))
    recorded = ~data.hold
    assert recorded.sum() == len(episode.frames) and data.labels[recorded][-1]
    env = LiberoEnv("libero_goal", 1, image_size=48, cameras=("agentview",), wait_steps=0,
                    max_steps=10**9)
    try:
        env.reset(options={"init_state": 0, "scene": scene_of(episode.meta)})
        env.set_render_cameras(())  # the check needs no pixels (a restore may take a step)
        checked = []
        for state, control in zip(episode.states, episode.control_states, strict=True):
            env.restore_sim_state(state, control)
            checked.append(bool(env._sim.check_success()))  # as LiberoEnv.step checks
    finally:
        env.close()
    np.testing.assert_array_equal(data.labels[recorded], checked)
    assert sum(checked) == 1
    # hold frames: the simulator's check after the success (it may flicker while an object
    # settles), cached beside the run: a fresh env gives the same frames and labels
    holder = LiberoEnv("libero_goal", 1, image_size=episode.frames.shape[1],
                       cameras=("agentview",), wait_steps=0, max_steps=10**9)
    try:
        frames, labels = hold_frames(holder, episode, 3)
    finally:
        holder.close()
    assert data.hold.sum() == 3 and labels.any()
    np.testing.assert_array_equal(data.labels[data.hold], labels)
    np.testing.assert_array_equal(data.frames[data.hold], frames)
    assert len(list((expert_run / "judge_hold").glob("*_hold3_still3.npz"))) == 1
    again = read_labelled_runs([expert_run], hold_steps=3, progress=False)
    np.testing.assert_array_equal(again.frames, data.frames)


def test_train_judge_command_refuses_to_train_without_held_out_episodes(expert_run, tmp_path,
                                                                        capsys):
    from worldvla_bench.cli import main

    code = main(["train-judge", "--runs", str(expert_run), "--out", str(tmp_path / "j.pt"),
                 "--hold-steps", "3", "--epochs", "1", "--no-progress"])
    assert code == 2 and "no episode held out" in capsys.readouterr().err
    assert not (tmp_path / "j.pt").exists()
