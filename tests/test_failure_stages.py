"""benchmarks/failure_stages.py: the target of a goal, the per-episode figures and the stages,
on synthetic scene logs with known answers (the replay itself checks its episodes end as
recorded)."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.failure_stages import episode_row, goal_target, stage

SCENE = {
    "objects": {"akita_black_bowl_1": {}, "plate_1": {}},
    "fixtures": {"wooden_cabinet_1": {"joints": {"wooden_cabinet_1_middle_level": {}}},
                 "flat_stove_1": {"joints": {"flat_stove_1_button": {}}}},
}


@pytest.mark.parametrize("goal, expected", [
    (["on", "akita_black_bowl_1", "plate_1"], ("object", "akita_black_bowl_1")),
    (["open", "wooden_cabinet_1_middle_region"],
     ("joint", "wooden_cabinet_1/wooden_cabinet_1_middle_level")),
    (["turnon", "flat_stove_1"], ("joint", "flat_stove_1/flat_stove_1_button")),
])
def test_goal_target_reads_the_first_predicate(goal, expected):
    assert goal_target({**SCENE, "goal": [goal]}) == expected
    with pytest.raises(ValueError, match="no target rule"):
        goal_target({**SCENE, "goal": [["close", "wooden_cabinet_1_middle_region"]]})


def test_episode_figures_and_stages():
    """An end effector that descends onto an object, closes at step 3 and lifts it 10 cm."""
    eef = np.array([[0, 0, 0.3], [0, 0, 0.2], [0, 0, 0.12], [0, 0, 0.11], [0, 0, 0.2]])
    obj = np.array([[0, 0, 0.1]] * 4 + [[0, 0, 0.2]])
    actions = np.zeros((5, 7))
    actions[:, 6] = [-1, -1, -1, 1, 1]
    row = episode_row({"kind": np.array("object"), "eef": eef, "target": obj,
                       "joint": np.full(5, np.nan)}, actions)
    assert row["min_dist"] == pytest.approx(0.0) and row["lift"] == pytest.approx(10.0)
    assert row["close_step"] == 3 and not row["reopened"]
    np.testing.assert_allclose(row["close_offset"], [0, 0, 1.0])  # cm above the object
    actions[4, 6] = -1
    assert episode_row({"kind": np.array("object"), "eef": eef, "target": obj,
                        "joint": np.full(5, np.nan)}, actions)["reopened"]

    base = {"success": False, "kind": "object", "reach_gap": 0.5, "lift": 10.0}
    assert stage({**base, "success": True}) == "success"
    assert stage({**base, "reach_gap": 2.5}) == "never reached"
    assert stage(base) == "lifted, not placed"
    assert stage({**base, "lift": 1.0}) == "reached, never lifted"
    drawer = {"success": False, "kind": "joint", "reach_gap": 1.0}
    assert stage({**drawer, "joint": 0.0}) == "reached, not actuated"
    assert stage({**drawer, "joint": 0.05}) == "moved, not enough"
