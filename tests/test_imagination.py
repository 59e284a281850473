"""The imagined episode runs the simulated one's loop (`episode_loop.play_episode`): the
policy's `EndEpisode` ends it as a failure with its reason, an unreachable policy server stops
the run instead of becoming an error record, and its slowest policy call is recorded. Cheap:
copy-last imagines (it repeats the first frame), a judge fires at a chosen step (a stand-in for
the learned one; the loop, the world model and the policies are real), no simulator."""

from __future__ import annotations

import time

import numpy as np
import pytest
from policies_for_tests import EndsOnSecondCallPolicy, ServerGoneOnTrialOnePolicy

from worldvla_bench.errors import ServerUnreachableError
from worldvla_bench.policy import EpisodeContext
from worldvla_bench.records import EpisodeRecord
from worldvla_bench.worldmodel.imagination import imagine_episode
from worldvla_bench.worldmodel.models import CopyLast

CONTEXT = EpisodeContext("libero_goal", 1, "task", "open the drawer", trial=1, seed=0,
                         max_steps=20)
FIRST = {"agentview_image": np.full((16, 16, 3), 90, dtype=np.uint8)}


class FiresAtStep:
    """A judge: P(success) 1 at the episode's `step`-th imagined frame (1-based), else 0."""

    def __init__(self, step: int | None = None) -> None:
        self.step, self.seen = step, 0

    def success_probability(self, frames, suite, task_id):
        index = self.seen + np.arange(1, len(frames) + 1)
        self.seen += len(frames)
        return (index == self.step).astype(float)


class EndsOnSecondCallCamera(EndsOnSecondCallPolicy):
    """Ends the episode at its second call with one more action; reads the imagined camera."""

    cameras = ("agentview",)


class ServerGoneCamera(ServerGoneOnTrialOnePolicy):
    """Its server is gone for good at its second call of trial 1; reads the imagined camera."""

    cameras = ("agentview",)


class SlowSecondCall(EndsOnSecondCallCamera):
    """Chunks of 2 zero actions, its second call 0.2 s long; reads the imagined camera."""

    def act(self, observation):
        self.calls += 1
        if self.calls == 2:
            time.sleep(0.2)
        return np.zeros((2, 7))


def _imagine(policy, judge, actions=None) -> EpisodeRecord:
    return imagine_episode(CopyLast(), policy, CONTEXT, FIRST, None, judge, policy_name="p",
                           world_model_name="copy-last", actions=actions)


def test_an_imagined_episode_ends_where_the_policy_ends_it():
    record = _imagine(EndsOnSecondCallCamera(), FiresAtStep(None))
    assert record.error is None and record.success is False
    assert record.extra["ended_by_policy"] == "broken answer: no action block"
    assert record.steps == 3 and record.policy_calls == 2  # 2 actions, then the 1 handed over
    assert record.extra["actions"].shape == (3, 7)


def test_the_actions_a_policy_ends_with_can_still_succeed_in_imagination():
    record = _imagine(EndsOnSecondCallCamera(), FiresAtStep(3))
    assert record.error is None and record.success is True and record.steps == 3
    assert "ended_by_policy" not in record.extra


def test_an_unreachable_policy_server_stops_an_imagined_run():
    # trial 1's second call finds the server gone: raised, not recorded as an episode error
    with pytest.raises(ServerUnreachableError, match="policy server at 127.0.0.1:9"):
        _imagine(ServerGoneCamera(), FiresAtStep(None))


def test_imagined_records_carry_the_slowest_policy_call():
    record = _imagine(SlowSecondCall(), FiresAtStep(None))
    assert record.error is None and record.steps == CONTEXT.max_steps
    assert record.policy_calls == CONTEXT.max_steps // 2
    assert 0.2 <= record.slowest_call_s <= record.policy_time_s
    assert record.to_dict()["slowest_call_s"] == record.slowest_call_s


def test_open_loop_imagination_replays_without_calling_the_policy():
    actions = np.zeros((5, 7))
    blind = ServerGoneOnTrialOnePolicy()  # it would stop the run at its second call
    blind.cameras = ()
    record = _imagine(blind, FiresAtStep(None), actions=actions)
    assert record.extra["mode"] == "open" and record.error is None and record.success is False
    assert record.steps == 5 and record.policy_calls == 0 and record.slowest_call_s == 0.0
    assert "ended_by_policy" not in record.extra
    record = _imagine(blind, FiresAtStep(4), actions=actions)
    assert record.success is True and record.steps == 4
