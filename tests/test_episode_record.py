"""`EpisodeRecord.build`: the one place an episode's record is built."""

from __future__ import annotations

import numpy as np

from worldvla_bench.policy import EpisodeContext
from worldvla_bench.records import EpisodeRecord, at_bound_fraction

CONTEXT = EpisodeContext("libero_goal", 4, "open_drawer", "open the drawer", 7, 1234, 300)


def test_build_takes_the_context_and_derives_the_rest():
    actions = np.array([[1.0, 0, 0, 0, 0, -1.0, 1.0], [0.5, 0, 0, 0, 0, 0, -1.0]])
    record = EpisodeRecord.build(CONTEXT, "expert", steps=2, actions=actions, success=True,
                                 policy_calls=1, env_time_s=0.25, seeding="hashed")
    assert (record.suite, record.task_id, record.task_name, record.instruction) == (
        "libero_goal", 4, "open_drawer", "open the drawer")
    assert (record.trial, record.init_state, record.seed, record.max_steps) == (7, 7, 1234, 300)
    assert (record.policy, record.success, record.steps, record.error) == ("expert", True, 2, None)
    assert record.actions_at_bound_frac == round(2 / 12, 4)  # gripper column not counted
    assert (record.policy_calls, record.env_time_s, record.seeding) == (1, 0.25, "hashed")
    assert (record.wall_time_s, record.policy_time_s, record.reset_time_s) == (0.0, 0.0, 0.0)


def test_an_error_is_never_a_success():
    record = EpisodeRecord.build(CONTEXT, "expert", success=True, error="BenchError: boom")
    assert record.success is False and record.error == "BenchError: boom"
    assert record.steps == 0 and record.actions_at_bound_frac == 0.0


def test_at_bound_fraction_without_actions_is_zero():
    assert at_bound_fraction(None) == 0.0
    assert at_bound_fraction(np.zeros((0, 7))) == 0.0
    assert at_bound_fraction(np.full((3, 7), -1.0)) == 1.0
