import json

import numpy as np
import pytest

from worldvla_bench.errors import RunDirectoryError
from worldvla_bench.records import (
    append_episode,
    load_episode_arrays,
    prepare_run_dir,
    read_episodes,
    save_episode_arrays,
)
from worldvla_bench.rollout import episode_seed


def test_a_torn_last_line_is_dropped_and_repaired(tmp_path):
    append_episode(tmp_path, {"suite": "s", "task_id": 0, "trial": 0, "success": True})
    with (tmp_path / "episodes.jsonl").open("a") as stream:
        stream.write('{"suite": "s", "task_id": 0, "tri')  # killed mid-write
    assert len(read_episodes(tmp_path)) == 1
    read_episodes(tmp_path, repair=True)
    append_episode(tmp_path, {"suite": "s", "task_id": 0, "trial": 1, "success": False})
    lines = (tmp_path / "episodes.jsonl").read_text().splitlines()
    assert [json.loads(line)["trial"] for line in lines] == [0, 1]


def test_episode_arrays_round_trip(tmp_path):
    actions = np.random.default_rng(0).normal(size=(7, 7))
    save_episode_arrays(tmp_path / "e.npz", actions=actions, final_state=np.arange(3.0))
    loaded = load_episode_arrays(tmp_path / "e.npz")
    np.testing.assert_array_equal(loaded["actions"], actions)
    assert list(tmp_path.iterdir()) == [tmp_path / "e.npz"]  # no temporary left behind


def test_unusable_results_directory_is_reported(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(RunDirectoryError, match="not a directory"):
        prepare_run_dir(blocker)
    with pytest.raises(RunDirectoryError, match="cannot write"):
        prepare_run_dir(blocker / "sub")


def test_episode_seeds_are_a_pure_function_of_run_seed_suite_task_trial():
    assert episode_seed(7, "libero_goal", 3, 4) == episode_seed(7, "libero_goal", 3, 4)
    seeds = {episode_seed(7, "libero_goal", t, i) for t in range(10) for i in range(50)}
    assert len(seeds) == 500
    assert episode_seed(8, "libero_goal", 3, 4) != episode_seed(7, "libero_goal", 3, 4)
    assert 0 <= episode_seed(7, "x", 0, 0) < 2**31
