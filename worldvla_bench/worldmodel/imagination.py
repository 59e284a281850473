"""One policy episode in imagination: the first frame is real, the world model makes the rest.

Two modes, by what the policy reads:
- closed loop, for policies that read the third-person camera only (`cameras == ("agentview",)`,
  e.g. WorldVLA): the policy acts on imagined frames, prepared by its observation profile as the
  engine does in the simulator (`ObservationPipeline`: history frames, resize, gripper mapping);
  the world model imagines the frames after each chunk. The proprioceptive `state` is not
  imagined: policies get NaN there.
- open loop, for blind or privileged policies (the scripted expert and its variants, random,
  noop, replay): they cannot act on imagined frames, so the world model imagines the actions
  they executed in the simulator, in order.

Success is decided as the env decides it, after every step: the episode ends at the first
imagined frame the judge calls a success (P >= `threshold`), else at the step limit. A judge is
any object with `success_probability(frames, suite, task_id)` (see `worldmodel.judge`);
`judge=None` takes the simulator's own check instead, which only a simulator-backed rollout
(sim-oracle) has: with it, imagined outcomes must equal simulated ones episode by episode.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import numpy as np

from worldvla_bench.episode_loop import Stepper, play_episode
from worldvla_bench.errors import BenchError
from worldvla_bench.observation_pipeline import ObservationPipeline
from worldvla_bench.policy import EpisodeContext, Policy
from worldvla_bench.records import EpisodeRecord
from worldvla_bench.worldmodel.models import PredictionContext, WorldModel

#: the camera world models imagine
IMAGINED_CAMERA = "agentview"
STATE_DIM = 8


def imagination_mode(policy: Policy) -> str:
    """'closed' when the policy reads only the imagined camera, 'open' when it reads no image."""
    if getattr(policy, "requires_privileged_state", False) or policy.cameras == ():
        return "open"
    if policy.cameras is not None and tuple(policy.cameras) == (IMAGINED_CAMERA,):
        return "closed"
    raise BenchError(f"policy reads cameras {policy.cameras or 'all'}; world models imagine "
                     f"only {IMAGINED_CAMERA!r}")


def _imagined_obs(frame: np.ndarray, instruction: str) -> dict[str, Any]:
    return {f"{IMAGINED_CAMERA}_image": frame, "state": np.full(STATE_DIM, np.nan),
            "instruction": instruction}


class _Verdict:
    """Success after each imagined step: the judge's probability, or the simulator's check."""

    def __init__(self, judge: Any, threshold: float, suite: str, task_id: int) -> None:
        self.judge, self.threshold = judge, float(threshold)
        self.suite, self.task_id = suite, int(task_id)
        self.p_max = 0.0
        self.time = 0.0

    def first_success(self, frames: np.ndarray, rollout: Any) -> int | None:
        """Index of the first successful frame among the rollout's latest `frames`, or None."""
        started = time.perf_counter()
        if self.judge is None:
            if not getattr(rollout, "simulator_success", None):
                raise BenchError("judge=None needs a simulator-backed world model (sim-oracle)")
            flags = np.asarray(rollout.simulator_success[-len(frames):], dtype=bool)
            probs = flags.astype(float)
        else:
            probs = np.asarray(self.judge.success_probability(frames, self.suite, self.task_id))
            flags = probs >= self.threshold
        self.p_max = max(self.p_max, float(probs.max(initial=0.0)))
        self.time += time.perf_counter() - started
        hits = np.flatnonzero(flags)
        return int(hits[0]) if len(hits) else None


class _Imagined(Stepper):
    """A world model imagines the frames after each chunk (`rollout`), the verdict says after
    each frame whether it shows a success; the episode ends there or at `max_steps`. Policies
    read the imagined frame of the steps they read (`_imagined_obs`). `kept`: the first frame
    and one per step played with `keep_frames`."""

    def __init__(self, rollout: Any, frame0: np.ndarray, instruction: str, verdict: _Verdict,
                 max_steps: int, keep_frames: bool, model_time: float) -> None:
        self.rollout, self.frame0, self.instruction = rollout, frame0, instruction
        self.verdict, self.max_steps, self.keep_frames = verdict, int(max_steps), keep_frames
        self.obs = _imagined_obs(frame0, instruction)
        self.kept: list[np.ndarray] = [frame0] if keep_frames else []
        self.model_time = model_time  # s, in the world model
        self.steps = 0
        self.over = self.max_steps <= 0

    def play(self, chunk: np.ndarray, read: frozenset[int],
             actions: list[np.ndarray]) -> Iterator[dict[str, Any]]:
        chunk = chunk[: self.max_steps - self.steps]
        if not len(chunk):
            return
        t0 = time.perf_counter()
        frames = np.asarray(self.rollout.step(chunk))
        self.model_time += time.perf_counter() - t0
        if frames.shape != (len(chunk), *self.frame0.shape) or frames.dtype != np.uint8:
            raise BenchError(f"world model returned {frames.dtype} {frames.shape}; expected "
                             f"uint8 {(len(chunk), *self.frame0.shape)}")
        hit = self.verdict.first_success(frames, self.rollout)
        used = len(chunk) if hit is None else hit + 1
        self.success = hit is not None
        self.steps += used
        self.over = self.success or self.steps >= self.max_steps
        actions.extend(chunk[:used])
        self.kept.extend(frames[:used] if self.keep_frames else [])
        for index in sorted(i for i in read if i < used):
            self.obs = _imagined_obs(frames[index], self.instruction)
            yield self.obs


def imagine_episode(model: WorldModel, policy: Policy, context: EpisodeContext,
                    first_obs: dict[str, Any], first: PredictionContext, judge: Any,
                    policy_name: str, world_model_name: str, actions: np.ndarray | None = None,
                    threshold: float = 0.5, keep_frames: bool = False) -> EpisodeRecord:
    """Imagine one episode; see the module docstring. `first_obs` is the real observation after
    the reset and wait steps, `first` its simulator state and episode metadata (for
    simulator-backed models). Open-loop policies need `actions`, those they executed in the
    simulator. The record has `extra['imagined'] = True`, the executed `extra['actions']` (an
    array: pop it before writing the record) and `extra['frames']` with `keep_frames`; times:
    `policy_time_s`, `slowest_call_s`, `env_time_s` (the world model), `extra['judge_s']` (the
    judge).

    The loop is the simulated episode's (`episode_loop.play_episode`, the world model and the
    judge its stepper): `EndEpisode` ends the episode as there (`extra['ended_by_policy']`), an
    unreachable policy server stops the run (`ServerUnreachableError` raised), any other error
    ends the episode as an error record. One difference: no policy acting here reads the
    simulator's privileged state (`requires_privileged_state`), which the simulated loop hands
    over: an imagined world has frames only, no object poses to read, so such policies are
    imagined open loop, on the actions they executed in the simulator."""
    started = time.perf_counter()
    mode = imagination_mode(policy)
    if mode == "open" and actions is None:
        raise BenchError(f"policy {policy_name!r} reads no image: imagine the actions it "
                         "executed in the simulator (pass `actions`)")
    frame0 = np.asarray(first_obs[f"{IMAGINED_CAMERA}_image"])
    verdict = _Verdict(judge, threshold, context.suite, context.task_id)
    t0 = time.perf_counter()
    rollout = model.start_rollout(frame0, context.instruction, first)
    imagined = _Imagined(rollout, frame0, context.instruction, verdict, context.max_steps,
                         keep_frames, model_time=time.perf_counter() - t0)
    if mode == "closed":
        pipeline = ObservationPipeline(policy.observation_profile, (IMAGINED_CAMERA,),
                                       getattr(policy, "image_size", None))
        played = play_episode(imagined, context, policy, pipeline)
    else:
        played = play_episode(imagined, context, None, replay=actions)
    record = played.record(context, policy_name,
                           wall_time_s=round(time.perf_counter() - started, 4),
                           env_time_s=round(imagined.model_time, 4))
    record.extra["actions"] = played.action_array
    record.extra.update({"imagined": True, "world_model": world_model_name, "mode": mode,
                         "judge": "simulator" if judge is None else "judge",
                         "p_success_max": round(verdict.p_max, 4),
                         "judge_s": round(verdict.time, 4)})
    if keep_frames:
        record.extra["frames"] = np.stack(imagined.kept)
    record.finished_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return record
