"""The one episode loop: a policy's chunks, played by a `Stepper` until the episode is over.

The simulated episode (`episode.run_episode`: LIBERO steps each action, and says when the task
succeeded or the step limit came) and the imagined one (`worldmodel.imagination.imagine_episode`:
a world model imagines the frames after each chunk, a judge says when they show a success) differ
only in their stepper. The loop owns what they share:
- the policy's calls through its observation profile (`ObservationPipeline`: the frames it reads,
  `observe` before `act`, the gripper mapped after it), timed (`reset` and `act`, the profile
  included, each call and the slowest);
- the actions the policy meant, where it says they differ from those it returned
  (`Policy.intended_actions`: an expert with injected noise), in `Played.intended_array`;
- `EndEpisode`: the policy hands over its last actions (maybe none) and the episode ends after
  them as a failure with its reason, unless they succeed;
- what ends an episode as an error (any exception of the policy, the profile or the stepper)
  and what stops the run (`ServerUnreachableError`: raised, every next episode would fail
  the same);
- the record's shared fields (`Played.record`, through `EpisodeRecord.build`).
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from worldvla_bench.errors import PolicyOutputError, ServerUnreachableError
from worldvla_bench.observation_pipeline import ObservationPipeline
from worldvla_bench.policy import EndEpisode, EpisodeContext, Policy, validate_chunk
from worldvla_bench.records import EpisodeRecord


class Stepper(abc.ABC):
    """Where an episode's actions go. `obs` is the observation after the last step played (at
    first: after the reset); `over` turns True when the episode ends by itself, a success
    (`success`) or the step limit."""

    obs: dict[str, Any]
    over: bool = False
    success: bool = False

    def observation(self) -> dict[str, Any]:
        """What the policy acts on now, before its observation profile (default: `obs`)."""
        return self.obs

    @abc.abstractmethod
    def play(self, chunk: np.ndarray, read: frozenset[int],
             actions: list[np.ndarray]) -> Iterator[dict[str, Any]]:
        """Play `chunk`'s (K, 7) actions in order until the episode is over, appending each
        one played to `actions` (an action the stepper fails on is not appended); yield the
        observation after each step whose index in the chunk is in `read`, in order, with the
        policy's cameras rendered."""


@dataclass
class Played:
    """What an episode's loop did: the actions played (each (7,)), the outcome, the policy's
    time (s: `reset` and `act` calls, their observation profile included) and its longest call
    (s), and how many `act` calls."""

    actions: list[np.ndarray] = field(default_factory=list)
    success: bool = False
    error: str | None = None
    #: the policy's reason when it ended the episode (`EndEpisode`)
    ended_by_policy: str | None = None
    policy_time: float = 0.0
    slowest: float = 0.0
    calls: int = 0
    #: (index in `actions` of a chunk's first action, the (K, 7) actions the policy meant for
    #: it) for each chunk whose intended actions differ from those returned
    intended: list[tuple[int, np.ndarray]] = field(default_factory=list)

    @property
    def action_array(self) -> np.ndarray:
        """The actions played, (N, 7) float64."""
        return np.asarray(self.actions, dtype=np.float64).reshape(-1, 7)

    @property
    def intended_array(self) -> np.ndarray | None:
        """The actions the policy meant, (N, 7) float64, row for row with `action_array` (the
        executed action where the policy reported none); None when it reported none at all."""
        if not self.intended:
            return None
        meant = self.action_array.copy()
        for start, chunk in self.intended:
            rows = meant[start : start + len(chunk)]
            rows[:] = chunk[: len(rows)]
        return meant

    def timed(self, call: Callable[..., Any], *args: Any) -> Any:
        """`call(*args)`, a policy call: its time counts (only when it returns)."""
        t0 = time.perf_counter()
        out = call(*args)
        took = time.perf_counter() - t0
        self.policy_time += took
        self.slowest = max(self.slowest, took)
        return out

    def record(self, context: EpisodeContext, policy_name: str, **fields: Any) -> EpisodeRecord:
        """The episode's record (`EpisodeRecord.build`): steps, actions at the bound, outcome,
        policy time, calls and slowest call from the loop, `fields` from the stepper;
        `extra['ended_by_policy']` when the policy ended an episode that raised nothing."""
        record = EpisodeRecord.build(
            context, policy_name, steps=len(self.actions), actions=self.action_array,
            success=self.success, error=self.error, policy_time_s=round(self.policy_time, 4),
            policy_calls=self.calls, slowest_call_s=round(self.slowest, 4), **fields)
        if self.ended_by_policy is not None and self.error is None:
            record.extra["ended_by_policy"] = self.ended_by_policy
        return record


def play_episode(stepper: Stepper, context: EpisodeContext, policy: Policy | None,
                 pipeline: ObservationPipeline | None = None,
                 replay: np.ndarray | None = None) -> Played:
    """Play one episode on `stepper`; see the module docstring. `policy` acts through
    `pipeline` (built for it); with `policy` None, `replay`'s (N, 7) actions are played instead,
    open loop, in one chunk (the actions a policy executed elsewhere): the episode ends after
    them. Never raises but `ServerUnreachableError`: an error ends the episode, in `error`."""
    played = Played()
    try:
        if policy is not None:
            pipeline.log_frame(stepper.obs)
            played.timed(policy.reset, context)
        while not stepper.over:
            if policy is None:
                chunk, ending, read = np.asarray(replay, dtype=np.float64), None, frozenset()
            else:
                chunk, ending = played.timed(_ask, policy, pipeline, stepper.observation())
                played.calls += 1
                if ending is None:
                    _note_intended(played, policy, pipeline, chunk)
                # no call follows a chunk the policy ends the episode with: no frame to read
                read = pipeline.render_steps(len(chunk)) if ending is None else frozenset()
            for obs in stepper.play(chunk, read, played.actions):
                pipeline.log_frame(obs)
            if stepper.over:
                break
            if ending is not None:
                played.ended_by_policy = ending
                break
            if policy is None:
                break  # every replayed action was played
    except ServerUnreachableError:
        raise  # not the episode's fault, and every next one would fail the same: the run stops
    except Exception as exc:  # a BenchError, or anything a user's policy (or world model) raises:
        played.error = f"{type(exc).__name__}: {exc}"  # the episode's error; the run goes on
    played.success = stepper.success
    return played


def _note_intended(played: Played, policy: Policy, pipeline: ObservationPipeline,
                   chunk: np.ndarray) -> None:
    """Keep the actions `policy` meant for `chunk` (about to be played), when it reports them
    (`Policy.intended_actions`), checked and in the env's gripper convention as `chunk` is."""
    meant = getattr(policy, "intended_actions", lambda: None)()
    if meant is None:
        return
    meant = pipeline.to_env(validate_chunk(meant))
    if meant.shape != chunk.shape:
        raise PolicyOutputError(f"policy meant actions of shape {meant.shape} for a chunk of "
                                f"shape {chunk.shape}")
    played.intended.append((len(played.actions), meant.copy()))


def _ask(policy: Policy, pipeline: ObservationPipeline,
         observation: dict[str, Any]) -> tuple[np.ndarray, str | None]:
    """The policy's chunk (K, 7) on `observation` through its profile, checked, in the env's
    gripper convention, and None; or, when it ends the episode, the actions it hands over
    (maybe none) and its reason."""
    try:
        chunk, reason = validate_chunk(policy.act(pipeline.observe(observation))), None
    except EndEpisode as end:
        if np.asarray(end.actions).size == 0:
            return np.zeros((0, 7)), end.reason
        chunk, reason = validate_chunk(end.actions), end.reason
    return pipeline.to_env(chunk), reason
