"""The loop keeps the actions a policy meant (`Policy.intended_actions`) row for row with the
actions played: per chunk where the policy reports them, the played action elsewhere, cut where
the episode ends mid-chunk; a policy that reports none leaves None; a wrong shape is an error."""

from __future__ import annotations

import numpy as np

from worldvla_bench.episode_loop import Stepper, play_episode
from worldvla_bench.observation_pipeline import ObservationPipeline
from worldvla_bench.policy import EpisodeContext, Policy

CONTEXT = EpisodeContext("libero_goal", 0, "task", "open the drawer", trial=0, seed=0,
                         max_steps=20)


class StopsAfter(Stepper):
    """Plays actions until `limit` of them were played (the episode's end, mid-chunk)."""

    def __init__(self, limit: int) -> None:
        self.obs, self.limit = {}, limit

    def play(self, chunk, read, actions):
        for action in chunk:
            actions.append(action)
            if len(actions) == self.limit:
                self.over = True
                return
        yield from ()


class MeansOtherOnOddCalls(Policy):
    """Chunks of 3; on its 1st, 3rd, ... call it says it meant the chunk + 0.5 (`meant_shape`
    rows of it)."""

    cameras = ()

    def __init__(self, meant_rows: int = 3) -> None:
        self.calls, self.meant_rows, self.meant = 0, meant_rows, None

    def act(self, observation):
        self.calls += 1
        chunk = np.full((3, 7), 0.01 * self.calls)
        self.meant = (chunk + 0.5)[: self.meant_rows] if self.calls % 2 else None
        return chunk

    def intended_actions(self):
        return self.meant


def _play(policy: Policy, limit: int):
    pipeline = ObservationPipeline(policy.observation_profile, ())
    return play_episode(StopsAfter(limit), CONTEXT, policy, pipeline)


def test_intended_actions_follow_the_played_ones_row_for_row():
    played = _play(MeansOtherOnOddCalls(), limit=8)  # calls 1, 2, 3 (cut after 2 of 3)
    executed = played.action_array
    assert played.error is None and executed.shape == (8, 7)
    expected = executed.copy()
    expected[0:3] += 0.5  # call 1 meant others
    expected[6:8] += 0.5  # call 3, cut by the episode's end
    np.testing.assert_allclose(played.intended_array, expected)


def test_no_intended_actions_reported_gives_none_and_a_wrong_shape_an_error():
    class Plain(MeansOtherOnOddCalls):
        def intended_actions(self):
            return None

    assert _play(Plain(), limit=5).intended_array is None
    played = _play(MeansOtherOnOddCalls(meant_rows=2), limit=5)
    assert "meant actions of shape (2, 7) for a chunk of shape (3, 7)" in played.error
